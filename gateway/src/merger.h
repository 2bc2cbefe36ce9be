// Merger: builds a scrape's Snapshot from the accumulator bank and the live writers' slots.
// Counter, histogram and summary cells add up; gauges combine by their mode; native histograms
// merge at the lowest schema any writer uses; the most recent exemplar wins. Live writers' blocks
// are read under their seqlocks with one retry policy, bounded per scrape (kTornBudget). It reads
// only region encodings (shm/layout.h), never an exposition format.
//
// Not thread-safe: RegionReader's mutex serialises every caller (hence the `Locked` suffix).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "region_access.h"
#include "registry_cache.h"
#include "shmetrics/shm/native_histogram.h"
#include "snapshot.h"

namespace shmetrics::gateway {

class Merger {
 public:
  Merger(RegionAccess& access, const RegistryCache& registry)
      : access_(access), registry_(registry) {}

  // Fills `out`; `retained` are dead workers' mode `all` gauge values still shown.
  void MergeLocked(std::span<const WorkerGauge> retained, Snapshot& out);

 private:
  // Native and exemplar blocks of one source (bank or live slot) into the snapshot.
  void MergeBlocksLocked(const std::vector<shm::Cell*>& pages, bool live, Snapshot& out);
  // The latest exemplar of one block into `best`, unless the block is torn or invalid.
  void MergeExemplarLocked(const shm::Cell* block, bool live, uint32_t series, ExemplarValue& best);
  // The one retry policy for seqlocked blocks: `read(attempts)` once, and if the block was torn
  // again with kTornRetries attempts while this scrape's torn budget lasts, else once more.
  template <typename Read>
  shm::native::LiveRead ReadWithTornBudgetLocked(Read&& read) const;

  RegionAccess& access_;
  const RegistryCache& registry_;
  std::vector<shm::Cell*> pages_scratch_;
  // The active accumulator bank's cells, decoded. The bank changes only when a fold commits, so
  // a scrape copies this instead of decoding every cell that dead workers left: scrape time does
  // not grow with the dead. Valid for the fold_commit word it was decoded at (none yet: empty).
  std::vector<double> folded_cells_;
  std::optional<uint64_t> folded_commit_;
  std::chrono::steady_clock::time_point torn_deadline_;  // this scrape's budget for torn blocks
};

}  // namespace shmetrics::gateway
