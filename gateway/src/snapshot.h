// Snapshot: the merged values of one scrape, as the merger produces them and the encoders read
// them. Indices are those of the registry cache (RegionReader::series(), families()).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "shmetrics/shm/layout.h"
#include "shmetrics/shm/native_histogram.h"

namespace shmetrics::gateway {

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

struct Snapshot {
  // Per cell: accumulator + live writers, as doubles (counter values, counts and sums alike).
  // Meaningful for counter, histogram, summary and drop cells; gauge cells are merged into
  // `gauge` instead.
  std::vector<double> cells;
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

}  // namespace shmetrics::gateway
