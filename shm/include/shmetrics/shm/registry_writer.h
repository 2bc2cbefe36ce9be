// The writer half of the registry inside a region: interning families and series under the
// registry lock. Client only: the gateway reads through registry_reader.h.
//
// Invariants: see layout.h (append-only, published by release stores of the counts).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>

#include "shmetrics/shm/family_spec.h"
#include "shmetrics/shm/layout.h"
#include "shmetrics/shm/region.h"

namespace shmetrics::shm {

enum class SeriesStatus { kOk, kFamilyFull, kRegionFull };

struct SeriesResult {
  SeriesStatus status = SeriesStatus::kOk;
  uint32_t index = 0;      // valid when kOk
  uint32_t cell_base = 0;  // valid when kOk
};

enum class FamilyStatus { kOk, kRegionFull };

struct FamilyResult {
  FamilyStatus status = FamilyStatus::kRegionFull;  // kRegionFull: counted, not thrown
  uint32_t index = 0;
  uint32_t drop_cell = 0;
  uint32_t cells_per_series = 0;
  shm::SeriesLayout layout;
};

// Holds the region's registry lock: a process-local mutex (threads share the lock descriptor)
// plus the OFD lock on kRegistryLockByte. Throws RegionError if another process holds it past
// `timeout` (never blocks forever; a dead holder's lock is released by the kernel).
class RegistryLock {
 public:
  RegistryLock(const Region& region, int lock_fd, std::mutex& process_mutex,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~RegistryLock();
  RegistryLock(const RegistryLock&) = delete;
  RegistryLock& operator=(const RegistryLock&) = delete;

 private:
  std::unique_lock<std::mutex> local_;
  int fd_;
};

// Registration. Every mutating call requires the caller to hold RegistryLock.
class RegistryWriter {
 public:
  explicit RegistryWriter(const Region& region) : region_(region) {}

  // Finds the family by name or adds it. Throws RegistrationError if it exists with another
  // definition. Returns ok=false (and counts it) when the region has no room.
  FamilyResult FindOrAddFamily(const FamilySpec& normalised);

  // Finds or adds the series; never throws for capacity.
  SeriesResult FindOrAddSeries(uint32_t family, std::span<const std::string_view> values);

  // Lock-free lookup of an existing series (kOk or nullopt).
  std::optional<SeriesResult> FindSeries(uint32_t family, std::span<const std::string_view> values,
                                         uint32_t hash) const;

 private:
  std::optional<uint32_t> AllocString(std::string_view s);  // returns arena offset
  std::optional<uint32_t> AllocBytes(uint32_t bytes);       // 8-aligned
  void CopyToArena(uint32_t offset, const void* data, size_t bytes);
  bool SameDefinition(const FamilyRecord& f, const FamilySpec& spec) const;

  const Region& region_;
};

}  // namespace shmetrics::shm
