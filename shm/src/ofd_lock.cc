#include "shmetrics/shm/ofd_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace shmetrics::shm {
namespace {

struct flock ByteLock(short type, int64_t offset) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = offset;
  fl.l_len = 1;
  fl.l_pid = 0;  // required for OFD locks
  return fl;
}

}  // namespace

LockResult TryLockByte(int fd, int64_t offset) noexcept {
  struct flock fl = ByteLock(F_WRLCK, offset);
  if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) return LockResult::kAcquired;
  if (errno == EAGAIN || errno == EACCES) return LockResult::kBusy;
  return LockResult::kError;
}

void UnlockByte(int fd, int64_t offset) noexcept {
  struct flock fl = ByteLock(F_UNLCK, offset);
  ::fcntl(fd, F_OFD_SETLK, &fl);
}

LockResult LockByteWithin(int fd, int64_t offset, std::chrono::milliseconds timeout) noexcept {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::microseconds(20);
  for (;;) {
    const LockResult r = TryLockByte(fd, offset);
    if (r != LockResult::kBusy || std::chrono::steady_clock::now() >= deadline) return r;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(5000));
  }
}

}  // namespace shmetrics::shm
