// Folder: finds writers that died and folds their cells into the accumulator bank exactly once,
// then zeroes and frees their slots. It implements the fold protocol defined in shm/layout.h
// ("Fold protocol"); in short:
//   1. The slot's process is dead: the gateway acquires the slot's OFD lock (only possible once
//      the kernel released the owner's) or finds the slot kReleased by its exiting thread.
//   2. Every slot to fold gets fold_epoch = committed epoch + 1 and state kFolding.
//   3. The inactive accumulator bank is rebuilt as active bank + the folded slots' cells.
//   4. One release store of the commit word flips the active bank and commits the epoch.
//   5. The slots' pages are zeroed (kept for their next occupant) and the slots set kFree.
// After a crash before 4 the slots are still kFolding with an uncommitted epoch and are folded
// again from the untouched active bank; after 4 their epoch is committed and they are only
// zeroed. Either way each slot is counted exactly once and counters never go backwards; the
// gateway may be SIGKILLed at any instruction.
//
// Not thread-safe: RegionReader's mutex serialises every caller (hence the `Locked` suffix).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "region_access.h"
#include "registry_cache.h"
#include "snapshot.h"

namespace shmetrics::gateway {

struct ReaderOptions {
  // Mode `all`: how long a dead worker's last value is still served.
  std::chrono::seconds dead_gauge_retention{300};
  // Tests only: runs in every reap after the registry refresh and before the slots' liveness
  // probe, where a writer can still register new series, write them and die.
  std::function<void()> before_liveness_probe;
};

class Folder {
 public:
  // `lock_fd` is the gateway's lock descriptor: slot locks taken through it are the liveness
  // probe, and closing it releases them.
  Folder(RegionAccess& access, RegistryCache& registry, const ReaderOptions& options, int lock_fd)
      : access_(access), registry_(registry), options_(options), lock_fd_(lock_fd) {}

  // Folds the writers that died (the caller refreshed the registry first). Returns the number
  // of slots folded or freed.
  uint32_t ReapLocked();
  // Dead workers' last values of mode `all` gauges that have not expired at `now`. They are kept
  // in gateway memory only (not crash-safe, by design: they are only gauges).
  std::span<const WorkerGauge> RetainedGaugesLocked(std::chrono::steady_clock::time_point now);

 private:
  bool PrepareBankLocked(uint32_t inactive, uint32_t active, const std::vector<uint32_t>& dead);
  void FoldSlotLocked(uint32_t slot, uint32_t bank);
  // Gauges of non-live modes into `to`, mode `all` into retained_ (`from` is a dead slot).
  void FoldGaugesLocked(const std::vector<shm::Cell*>& from, const std::vector<shm::Cell*>& to,
                        int32_t pid);
  // Native and exemplar blocks of `from` into `to` (both quiescent: dead slot, inactive bank).
  void FoldBlocksLocked(const std::vector<shm::Cell*>& from, const std::vector<shm::Cell*>& to);
  void ZeroSlotLocked(uint32_t slot);

  RegionAccess& access_;
  RegistryCache& registry_;
  const ReaderOptions& options_;
  const int lock_fd_;
  // Oldest first; all are kept equally long, so they also expire in this order.
  std::vector<WorkerGauge> retained_;
  std::vector<std::chrono::steady_clock::time_point> retained_until_;
};

}  // namespace shmetrics::gateway
