// Process-local state behind the write path: per attached region, the lock descriptor, this
// process's primary slot and the slow-path mutex. Private to the client library.
#pragma once

#include <cstdint>
#include <mutex>

#include "shmetrics/detail/writer.h"
#include "shmetrics/shm/region.h"

namespace shmetrics::detail {

inline constexpr uint32_t kNoSlot = 0xffffffffu;

// One slot this process writes: the process-local page table the hot path reads.
struct OwnedWriter {
  PageEntry* pages = nullptr;  // pages_per_slot entries; freed with a thread's slot (~ThreadSlots)
  uint32_t slot = kNoSlot;
};

struct RegionState {
  const shm::Region* region = nullptr;
  // Guards slot claims, page mapping and lock_fd. Held only on slow paths, never across a wait
  // on another process.
  std::mutex mu;
  // Guards registration in this process, the Client's family map included (the OFD registry
  // lock does not exclude our own threads).
  std::mutex registry_mu;
  int lock_fd = -1;                 // this process's own open file description; -1 after fork
  OwnedWriter* primary = nullptr;   // the process slot (gauges; counters of its first thread)
  bool primary_has_thread = false;  // a thread writes its counters into the primary slot
};

RegionState& StateOf(uint32_t region);
// Registers a newly attached region; returns its id. Throws RegionError past kMaxRegions.
uint32_t AddRegionState(const shm::Region* region);
// This process's lock descriptor for the region, opened on first use (and again after fork).
// Caller holds state.mu. The control plane's form throws RegionError naming the region and the
// operating system's reason; the slow path's returns -1 instead (its caller counts a drop).
int OpenLockFdLocked(RegionState& state);
int LockFdLocked(RegionState& state) noexcept;
// Claims this thread's slot now (normally done by the first update). False if none is free.
bool ClaimThreadSlot(uint32_t region) noexcept;

}  // namespace shmetrics::detail
