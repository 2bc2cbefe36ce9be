// What the registry cache, the folder and the merger share when they read the untrusted region:
// the reader's statistics, the rate-limited report of skipped data, and page lookups that check
// every directory entry. Nothing here knows the registry, the fold or any exposition format.
//
// Not thread-safe: RegionReader's mutex serialises every caller.
#pragma once

#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "shmetrics/shm/region.h"

namespace shmetrics::gateway {

struct ReaderStats {
  uint64_t corrupt_records = 0;  // registry records skipped as invalid
  uint64_t corrupt_slots = 0;    // slot headers or directory entries skipped as invalid
  uint64_t corrupt_blocks = 0;   // native histogram blocks or exemplar labels skipped as invalid
  uint64_t probe_errors = 0;     // slot liveness probes that failed (the slot is kept as live)
  uint64_t fold_rounds = 0;
  uint64_t fold_failures = 0;  // rounds abandoned (no room for accumulator pages)
  uint64_t torn_reads = 0;     // native or exemplar blocks still torn after many retries: skipped
};

// Everything the three parts need to read the region and report what they skip.
class RegionAccess {
 public:
  explicit RegionAccess(shm::Region& region) : region_(region) {}

  shm::Region& region() { return region_; }
  const shm::Region& region() const { return region_; }
  ReaderStats& stats() { return stats_; }
  const ReaderStats& stats() const { return stats_; }

  // Warns that invalid data was skipped; the caller counts it in stats(). Rate-limited: a hostile
  // region would otherwise log on every scrape.
  void LogSkipped(const std::string& what);
  // From now on every skip report is appended to `out` (all of them) instead of logged: for
  // shmetrics-inspect, which lists what the reader rejected. nullptr: log again.
  void RecordSkippedIn(std::vector<std::string>* out) { recorded_ = out; }
  // Page pointers of a slot's directory (nullptr where absent or invalid; invalid ones counted).
  void ResolvePages(uint32_t slot, std::vector<shm::Cell*>& pages);
  static shm::Cell* CellPtr(const std::vector<shm::Cell*>& pages, uint32_t cell) {
    const uint32_t page = cell / shm::kCellsPerPage;
    if (page >= pages.size() || pages[page] == nullptr) return nullptr;
    return pages[page] + cell % shm::kCellsPerPage;
  }

 private:
  shm::Region& region_;
  ReaderStats stats_;
  uint64_t skipped_reports_ = 0;
  std::vector<std::string>* recorded_ = nullptr;
};

inline double AsDouble(uint64_t bits) { return std::bit_cast<double>(bits); }
inline uint64_t AsBits(double v) { return std::bit_cast<uint64_t>(v); }
using shm::DecodeGauge;
using shm::EncodeGauge;
using shm::kGaugeNeverSet;

}  // namespace shmetrics::gateway
