// Open-file-description record locks on one byte of the region file.
//
// Why these and not mutexes in the region: the kernel releases an OFD lock when the last
// descriptor of its open file description is closed, which includes the death of the process,
// however it dies. Nothing can hold one forever, no pid is involved (pid reuse and pid namespaces
// do not matter), and two descriptors in one process conflict with each other, so a gateway and a
// writer in the same process still see each other.
//
// Threads of one process share a descriptor and do not exclude each other: callers pair these
// with a process-local mutex where that matters.
#pragma once

#include <chrono>
#include <cstdint>

namespace shmetrics::shm {

enum class LockResult { kAcquired, kBusy, kError };

// Non-blocking exclusive lock of byte `offset` through `fd`. kError leaves errno set. As a
// liveness probe only kAcquired means the holder is gone: kBusy and kError must read as alive.
LockResult TryLockByte(int fd, int64_t offset) noexcept;
// Releases the lock on `offset` held through `fd`.
void UnlockByte(int fd, int64_t offset) noexcept;
// Retries TryLockByte with backoff until `timeout` passes.
LockResult LockByteWithin(int fd, int64_t offset, std::chrono::milliseconds timeout) noexcept;

}  // namespace shmetrics::shm
