// RegionReader: the gateway's view of one region. It caches the decoded registry, finds dead
// writers and folds them into the accumulator exactly once, and merges everything into a
// Snapshot that the encoders turn into an exposition.
//
// Fold protocol (crash-safe; the gateway may be SIGKILLed at any instruction):
//   1. The slot's process is dead: the gateway acquires the slot's OFD lock (only possible once
//      the kernel released the owner's) or finds the slot kReleased by its exiting thread.
//   2. Every slot to fold gets fold_epoch = committed epoch + 1 and state kFolding.
//   3. The inactive accumulator bank is rebuilt as active bank + the folded slots' cells.
//   4. One release store of the commit word flips the active bank and commits the epoch.
//   5. The slots' pages are zeroed (kept for their next occupant) and the slots set kFree.
// After a crash before 4 the slots are still kFolding with an uncommitted epoch and are folded
// again from the untouched active bank; after 4 their epoch is committed and they are only
// zeroed. Either way each slot is counted exactly once and counters never go backwards.
//
// The region is untrusted: every index and offset is checked (shm::Region accessors), invalid
// records are skipped, counted and logged once.
//
// Thread-safety: all public methods lock an internal mutex; one reader per region and process.
// Cross-process: at most one gateway per region (OFD lock on kGatewayLockByte).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "shmetrics/shm/native_histogram.h"
#include "shmetrics/shm/region.h"
#include "shmetrics/shm/registry_reader.h"

namespace shmetrics::gateway {

// A series as the encoders need it: the registry record plus label text rendered once.
struct SeriesInfo {
  shm::SeriesView view;
  std::string text_labels;  // `a="x",b="y"` escaped for text formats, no braces
};

struct FamilyInfo {
  shm::FamilyView view;
  std::vector<uint32_t> series;  // indices into RegionReader::series()
};

// One per-worker gauge value (modes all / liveall).
struct WorkerGauge {
  uint32_t series;
  std::string pid;  // label value, unique within the series
  double value;
};

// The most recent exemplar over all writers for one counter or classic bucket.
struct ExemplarValue {
  bool present = false;
  double value = 0;
  uint64_t unix_ns = 0;
  std::vector<std::pair<std::string, std::string>> labels;
};

// The merged values of one scrape.
struct Snapshot {
  // Per cell: accumulator + live writers, as doubles. Meaningful for counter, histogram and drop
  // cells; gauge cells are merged into `gauge` instead.
  std::vector<double> sums;
  // Per series (gauges in aggregate modes): merged value, absent when no worker set it.
  std::vector<std::optional<double>> gauge;
  std::vector<WorkerGauge> worker_gauges;  // sorted by series
  // The per-worker values of one series (modes all / liveall).
  std::span<const WorkerGauge> WorkerGaugesOf(uint32_t series) const {
    auto [lo, hi] = std::equal_range(
        worker_gauges.begin(), worker_gauges.end(), WorkerGauge{series, {}, 0},
        [](const WorkerGauge& a, const WorkerGauge& b) { return a.series < b.series; });
    return {lo, hi};
  }
  // Calls f(pid, value) for each gauge sample a series serves: one per worker (pid set) in the
  // per-worker modes, else the merged value (pid nullptr) when some worker set it.
  template <typename F>
  void ForEachGaugeSample(uint32_t series, shm::GaugeMode mode, F&& f) const {
    if (shm::IsPerWorkerMode(mode)) {
      for (const WorkerGauge& w : WorkerGaugesOf(series)) f(&w.pid, w.value);
    } else if (gauge[series]) {
      f(static_cast<const std::string*>(nullptr), *gauge[series]);
    }
  }
  // Per series of native histogram families (empty optional otherwise): buckets merged over the
  // accumulator and live writers at the lowest schema any of them uses.
  std::vector<std::optional<shm::native::Sparse>> native;
  // Per series of families with exemplars: one per counter, or per classic bucket (+Inf last).
  std::vector<std::vector<ExemplarValue>> exemplars;
  uint64_t live_workers = 0;  // processes with a live primary slot
  uint64_t live_writers = 0;  // live slots
  uint64_t folded_workers = 0;
  uint64_t folded_writers = 0;
  uint64_t pages_used = 0;
  // Footprint of live writers: pages they hold and cells they have written (non-zero). Their
  // ratio is the region bytes per (cell, writer that touched it): per series for counters.
  uint64_t writer_pages = 0;
  uint64_t writer_cells_touched = 0;
  uint64_t dropped_no_slot = 0, dropped_no_page = 0, dropped_region_full = 0;
  uint64_t registration_errors = 0;
  uint64_t dropped_exemplars = 0;
};

struct ReaderStats {
  uint64_t corrupt_records = 0;  // registry records skipped as invalid
  uint64_t corrupt_slots = 0;    // slot headers or directories skipped as invalid
  uint64_t fold_rounds = 0;
  uint64_t fold_failures = 0;  // rounds abandoned (no room for accumulator pages)
  uint64_t torn_reads = 0;     // native or exemplar blocks still torn after many retries: skipped
};

struct ReaderOptions {
  std::chrono::seconds dead_gauge_retention{
      300};  // mode `all`: how long a dead worker's value shows
  // Tests only: runs in every reap after the registry refresh and before the slots' liveness
  // probe, where a writer can still register new series, write them and die.
  std::function<void()> before_liveness_probe;
};

class RegionReader {
 public:
  // Takes the gateway lock; throws shm::RegionError if another gateway serves the region.
  RegionReader(std::unique_ptr<shm::Region> region, ReaderOptions options = {});
  ~RegionReader();

  // Reap dead writers (fold them), then merge. Fills `out`; returns the registry view to encode.
  void Collect(Snapshot& out);
  // Only the reaping half (the periodic timer calls it). Returns the number of slots folded.
  uint32_t Reap();

  const shm::Region& region() const { return *region_; }
  ReaderStats stats() const;

  // Registry cache, valid until the next Collect/Reap (append-only: indices stay valid).
  const std::vector<FamilyInfo>& families() const { return families_; }
  const std::vector<SeriesInfo>& series() const { return series_; }
  // Families in exposition order (by name).
  const std::vector<uint32_t>& family_order() const { return family_order_; }

 private:
  enum class CellKind : uint8_t {
    kUnknown,
    kSum,
    kGaugeSum,
    kGaugeMax,
    kGaugeMin,
    kGaugeMostRecent,
    kGaugeTimestamp,
    kGaugeLive,
    kGaugeAll,
    kBlock,    // native histogram or exemplar block: folded and merged per series, not per cell
    kCounter,  // counter value: integer, or double tagged (shm::DecodeCounterCell)
    kCount,    // bucket count, summary count, drop counter: integer
  };
  struct Retained {
    uint32_t series;
    std::string pid;
    double value;
    std::chrono::steady_clock::time_point expires;
  };

  void RefreshLocked();
  uint32_t ReapLocked();
  bool PrepareBankLocked(uint32_t inactive, uint32_t active, const std::vector<uint32_t>& dead);
  void FoldSlotLocked(uint32_t slot, uint32_t bank);
  // Native and exemplar blocks of `from` into `to` (both quiescent: dead slot, inactive bank).
  void FoldBlocksLocked(const std::vector<shm::Cell*>& from, const std::vector<shm::Cell*>& to);
  // Native and exemplar blocks of one source (bank or live slot) into the snapshot.
  void MergeBlocksLocked(const std::vector<shm::Cell*>& pages, bool live, Snapshot& out);
  void ZeroSlotLocked(uint32_t slot);
  void MergeLocked(Snapshot& out);
  // Page pointers of a slot's directory (nullptr where absent or invalid).
  void ResolvePages(uint32_t slot, std::vector<shm::Cell*>& pages);
  shm::Cell* CellPtr(const std::vector<shm::Cell*>& pages, uint32_t cell) const;
  void LogCorrupt(const std::string& what);
  // Attempts a torn seqlock block gets in this scrape (see kTornBudget).
  uint32_t TornRetriesLocked() const;

  mutable std::mutex mu_;
  std::unique_ptr<shm::Region> region_;
  ReaderOptions options_;
  int lock_fd_ = -1;
  std::vector<std::optional<shm::FamilyView>> decoded_families_;  // by family index
  std::vector<FamilyInfo> families_;
  std::vector<uint32_t> family_slot_;  // family index -> index in families_, or ~0u
  std::vector<SeriesInfo> series_;
  std::vector<uint32_t> family_order_;
  std::unordered_set<std::string> exposed_names_;  // every name the accepted families expose
  std::unordered_multimap<uint32_t, uint32_t> series_by_hash_;  // HashSeries -> series_ index
  uint32_t families_seen_ = 0, series_seen_ = 0;
  std::vector<CellKind> kinds_;                   // per cell
  std::vector<uint32_t> gauge_series_;            // indices into series_ of gauge series
  std::vector<uint32_t> block_series_;            // series with a native block or exemplars
  std::map<uint32_t, uint32_t> all_mode_series_;  // cell_base -> series, mode `all`
  std::vector<Retained> retained_;
  ReaderStats stats_;
  uint32_t corrupt_logged_ = 0;
  std::vector<shm::Cell*> pages_scratch_;
  // The active accumulator bank's cells, decoded. The bank changes only when a fold commits, so
  // a scrape copies this instead of decoding every cell that dead workers left: scrape time does
  // not grow with the dead. Valid for the fold_commit word it was decoded at (none yet: empty).
  std::vector<double> folded_sums_;
  std::optional<uint64_t> folded_commit_;
  std::chrono::steady_clock::time_point torn_deadline_;  // this scrape's budget for torn blocks
};

}  // namespace shmetrics::gateway
