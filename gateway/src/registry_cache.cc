#include "registry_cache.h"

#include <algorithm>
#include <string_view>

namespace shmetrics::gateway {

GaugeCombine CombineOf(shm::GaugeMode mode) {
  switch (mode) {
    case shm::GaugeMode::kAll:
    case shm::GaugeMode::kLiveAll:
      return GaugeCombine::kPerWorker;
    case shm::GaugeMode::kSum:
    case shm::GaugeMode::kLiveSum:
      return GaugeCombine::kSum;
    case shm::GaugeMode::kMax:
    case shm::GaugeMode::kLiveMax:
      return GaugeCombine::kMax;
    case shm::GaugeMode::kMin:
    case shm::GaugeMode::kLiveMin:
      return GaugeCombine::kMin;
    case shm::GaugeMode::kMostRecent:
    case shm::GaugeMode::kLiveMostRecent:
      return GaugeCombine::kMostRecent;
  }
  return GaugeCombine::kSum;  // unreachable: ReadFamily accepts only the modes above
}

void RegistryCache::RefreshLocked() {
  shm::Region& region = access_.region();
  ReaderStats& stats = access_.stats();
  const shm::RegionHeader& h = region.header();
  const shm::Layout& l = region.layout();
  const uint32_t family_count =
      std::min(h.family_count.load(std::memory_order_acquire), l.max_families);
  bool new_families = false;
  for (; families_seen_ < family_count; ++families_seen_) {
    shm::ReadProblem problem;
    auto f = shm::ReadFamily(region, families_seen_, &problem);
    std::vector<std::string> exposed;
    if (f) {
      // Every name a family exposes must be its own (a gauge "x_total" beside a counter "x" would
      // be one series twice): only a hostile writer makes a clash, skipped like any invalid record.
      exposed = shm::ExposedNames(f->name, f->type);
      for (const std::string& name : exposed) {
        if (exposed_names_.contains(name)) {
          problem.what = "family #" + std::to_string(families_seen_) + " (" + f->name +
                         "): another family already exposes " + name;
          f.reset();
          break;
        }
      }
    }
    if (f) {
      for (uint32_t c = 0; c < shm::kFamilyDropCells; ++c) {
        if (f->drop_cell + c < kinds_.size() && kinds_[f->drop_cell + c] != CellKind::kUnknown) {
          problem.what = "family #" + std::to_string(families_seen_) + " (" + f->name +
                         "): drop cells overlap another family or series";
          f.reset();
          break;
        }
      }
    }
    decoded_families_.push_back(f);
    family_position_.push_back(kNotAccepted);
    if (!f) {
      ++stats.corrupt_records;
      access_.LogSkipped(problem.what);
      continue;
    }
    if (kinds_.size() < f->drop_cell + shm::kFamilyDropCells) {
      kinds_.resize(f->drop_cell + shm::kFamilyDropCells, CellKind::kUnknown);
    }
    for (uint32_t c = 0; c < shm::kFamilyDropCells; ++c)
      kinds_[f->drop_cell + c] = CellKind::kCount;
    exposed_names_.insert(exposed.begin(), exposed.end());
    family_position_[families_seen_] = static_cast<uint32_t>(families_.size());
    families_.push_back(FamilyInfo{std::move(*f), {}});
    new_families = true;
  }
  if (new_families) {
    family_order_.resize(families_.size());
    for (uint32_t i = 0; i < families_.size(); ++i) family_order_[i] = i;
    std::sort(family_order_.begin(), family_order_.end(), [&](uint32_t a, uint32_t b) {
      return families_[a].view.name < families_[b].view.name;
    });
  }

  const uint32_t series_count =
      std::min(h.series_count.load(std::memory_order_acquire), l.max_series);
  for (; series_seen_ < series_count; ++series_seen_) {
    shm::ReadProblem problem;
    auto s = shm::ReadSeries(region, series_seen_, decoded_families_, &problem);
    if (!s) {
      ++stats.corrupt_records;
      access_.LogSkipped(problem.what);
      continue;
    }
    FamilyInfo& f = families_[family_position_[s->family]];
    const uint32_t k = f.view.cells_per_series;
    if (kinds_.size() < s->cell_base + k) kinds_.resize(s->cell_base + k, CellKind::kUnknown);
    bool overlaps = false;
    for (uint32_t c = 0; c < k; ++c) overlaps |= kinds_[s->cell_base + c] != CellKind::kUnknown;
    if (overlaps) {  // two series claiming one cell: only a hostile writer does that
      ++stats.corrupt_records;
      access_.LogSkipped("series #" + std::to_string(series_seen_) +
                         ": cells overlap another series");
      continue;
    }
    // One label set once per family: a second record of it would be a duplicate sample.
    std::vector<std::string_view> values(s->label_values.begin(), s->label_values.end());
    const uint32_t hash = shm::HashSeries(s->family, values);
    bool duplicate = false;
    for (auto [it, end] = series_by_hash_.equal_range(hash); it != end && !duplicate; ++it) {
      const shm::SeriesView& other = series_[it->second].view;
      duplicate = other.family == s->family && other.label_values == s->label_values;
    }
    if (duplicate) {
      ++stats.corrupt_records;
      access_.LogSkipped("series #" + std::to_string(series_seen_) +
                         ": same labels as an earlier series of " + f.view.name);
      continue;
    }
    // Cell encodings (shm/layout.h): counter values, integer counts, double sums, gauges.
    CellKind* kind = kinds_.data() + s->cell_base;
    const bool gauge = f.view.type == shm::MetricType::kGauge;
    std::fill(kind, kind + k, gauge ? CellKind::kGauge : CellKind::kSum);
    switch (f.view.type) {
      case shm::MetricType::kCounter:
        kind[0] = CellKind::kCounter;
        break;
      case shm::MetricType::kHistogram:
        std::fill(kind, kind + f.view.bounds.size() + 1, CellKind::kCount);
        break;
      case shm::MetricType::kSummary:
        kind[0] = CellKind::kCount;
        break;
      case shm::MetricType::kGauge:
        break;
    }
    // Blocks run from the first of native/exemplar offsets to the end of the series.
    const uint32_t first_block =
        f.view.native_offset ? f.view.native_offset : f.view.exemplar_offset;
    if (first_block != 0) std::fill(kind + first_block, kind + k, CellKind::kBlock);

    const auto index = static_cast<uint32_t>(series_.size());
    if (gauge) gauge_series_.push_back(index);
    if (first_block != 0) block_series_.push_back(index);
    f.series.push_back(index);
    series_by_hash_.emplace(hash, index);
    series_.push_back(SeriesInfo{std::move(*s)});
  }
}

}  // namespace shmetrics::gateway
