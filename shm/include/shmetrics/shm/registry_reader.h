// The reader half of the registry inside a region: published records, validated and copied out.
// Gateway (and tests) only. Every offset, length and index is checked against the region's
// layout: the gateway treats the region as untrusted input. Reads take no lock.
//
// Invariants: see layout.h (append-only, published by release stores of the counts).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shmetrics/shm/family_spec.h"
#include "shmetrics/shm/layout.h"
#include "shmetrics/shm/region.h"

namespace shmetrics::shm {

struct FamilyView {
  uint32_t index = 0;
  std::string name;
  std::string help;
  std::string unit;
  MetricType type = MetricType::kCounter;
  GaugeMode gauge_mode = GaugeMode::kLiveSum;
  std::vector<std::string> label_names;
  std::vector<double> bounds;
  uint32_t cells_per_series = 0;
  uint32_t drop_cell = 0;
  uint64_t created_unix_ns = 0;
  bool native = false;
  int32_t native_schema = 0;
  uint32_t native_window = 0;
  double native_zero_threshold = 0;
  uint32_t native_offset = 0;
  uint32_t exemplar_offset = 0;  // 0: no exemplars
};

struct SeriesView {
  uint32_t index = 0;
  uint32_t family = 0;
  uint32_t cell_base = 0;
  std::vector<std::string> label_values;
  uint64_t created_unix_ns = 0;
};

// Why a published record was not decoded (the caller skips and counts it).
struct ReadProblem {
  std::string what;
};
// Decode one published record, or return nullopt and say why in `problem`.
std::optional<FamilyView> ReadFamily(const Region& region, uint32_t index, ReadProblem* problem);
// `families` are the families already decoded, indexed by family index.
std::optional<SeriesView> ReadSeries(const Region& region, uint32_t index,
                                     std::span<const std::optional<FamilyView>> families,
                                     ReadProblem* problem);

}  // namespace shmetrics::shm
