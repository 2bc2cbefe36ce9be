#include "region_reader.h"

#include <unistd.h>

#include <chrono>

#include "shmetrics/shm/ofd_lock.h"

namespace shmetrics::gateway {

int RegionReader::TakeGatewayLock(const shm::Region& region) {
  const int fd = region.OpenLockDescriptor();
  if (shm::TryLockByte(fd, shm::kGatewayLockByte) != shm::LockResult::kAcquired) {
    ::close(fd);
    throw shm::RegionError("region \"" + region.name() +
                           "\" is already served by another shmetrics-gateway (its lock is held)");
  }
  return fd;
}

RegionReader::RegionReader(std::unique_ptr<shm::Region> region, ReaderOptions options)
    : region_(std::move(region)),
      options_(std::move(options)),
      lock_fd_(TakeGatewayLock(*region_)),
      access_(*region_),
      registry_(access_),
      folder_(access_, registry_, options_, lock_fd_),
      merger_(access_, registry_) {
  std::lock_guard lock(mu_);
  registry_.RefreshLocked();
  folder_.ReapLocked();  // finish whatever a killed predecessor left half done, before serving
}

RegionReader::~RegionReader() {
  ::close(lock_fd_);  // releases the gateway lock and any slot locks we hold
}

ReaderStats RegionReader::stats() const {
  std::lock_guard lock(mu_);
  return access_.stats();
}

uint32_t RegionReader::Reap() {
  std::lock_guard lock(mu_);
  registry_.RefreshLocked();
  return folder_.ReapLocked();
}

void RegionReader::Collect(Snapshot& out) {
  std::lock_guard lock(mu_);
  registry_.RefreshLocked();
  folder_.ReapLocked();
  merger_.MergeLocked(folder_.RetainedGaugesLocked(std::chrono::steady_clock::now()), out);
}

}  // namespace shmetrics::gateway
