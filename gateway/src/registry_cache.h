// RegistryCache: the region's registry decoded into gateway memory. The registry is append-only,
// so each refresh decodes only the records published since the last one, and every index handed
// out stays valid. A record is accepted only if it is valid (shm::ReadFamily/ReadSeries), exposes
// no name another family exposes, claims no cell another series or family claims, and repeats no
// label set of its family; anything else is skipped and counted. The per-cell CellKind table it
// builds tells the folder and the merger how to read each cell.
//
// Not thread-safe: RegionReader's mutex serialises every caller (hence the `Locked` suffix).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "region_access.h"
#include "shmetrics/shm/family_spec.h"
#include "shmetrics/shm/registry_reader.h"

namespace shmetrics::gateway {

// A series as the gateway keeps it. No exposition text here: each encoder renders labels itself.
struct SeriesInfo {
  shm::SeriesView view;
};

struct FamilyInfo {
  shm::FamilyView view;
  std::vector<uint32_t> series;  // indices into RegionReader::series()
};

// How one cell is read (its encoding, shm/layout.h) and folded.
enum class CellKind : uint8_t {
  kUnknown,  // claimed by no accepted series or family
  kSum,      // double bits, added
  kCounter,  // counter value: integer, or double tagged (shm::DecodeCounterCell)
  kCount,    // bucket count, summary count, drop counter: integer
  kGauge,    // a gauge's value or timestamp: folded and merged per series, by its mode
  kBlock,    // native histogram or exemplar block: folded and merged per series
};

// How the values several workers left in one gauge series combine. A mode and its live variant
// combine alike; they differ only in whether dead workers' values are kept.
enum class GaugeCombine : uint8_t { kPerWorker, kSum, kMax, kMin, kMostRecent };
GaugeCombine CombineOf(shm::GaugeMode mode);

// A family's exemplar blocks per series: they fill the series' cells from exemplar_offset to the
// end (shm::ComputeSeriesLayout, which ReadFamily checked the record against).
inline uint32_t ExemplarBlocks(const shm::FamilyView& f) {
  return f.exemplar_offset == 0 ? 0
                                : (f.cells_per_series - f.exemplar_offset) / shm::kExemplarCells;
}

class RegistryCache {
 public:
  explicit RegistryCache(RegionAccess& access) : access_(access) {}

  // Decodes the records published since the last call.
  void RefreshLocked();

  const std::vector<FamilyInfo>& families() const { return families_; }
  const std::vector<SeriesInfo>& series() const { return series_; }
  // Families in exposition order (by name).
  const std::vector<uint32_t>& family_order() const { return family_order_; }
  const FamilyInfo& FamilyOf(const SeriesInfo& s) const {
    return families_[family_position_[s.view.family]];
  }
  const std::vector<CellKind>& kinds() const { return kinds_; }  // per cell
  const std::vector<uint32_t>& gauge_series() const { return gauge_series_; }
  // Series with a native histogram block or exemplar blocks.
  const std::vector<uint32_t>& block_series() const { return block_series_; }

 private:
  static constexpr uint32_t kNotAccepted = ~0u;

  RegionAccess& access_;
  std::vector<std::optional<shm::FamilyView>> decoded_families_;  // by family index
  std::vector<FamilyInfo> families_;
  std::vector<uint32_t> family_position_;  // family index -> position in families_, or kNotAccepted
  std::vector<SeriesInfo> series_;
  std::vector<uint32_t> family_order_;
  std::unordered_set<std::string> exposed_names_;  // every name the accepted families expose
  std::unordered_multimap<uint32_t, uint32_t> series_by_hash_;  // HashSeries -> series_ index
  uint32_t families_seen_ = 0, series_seen_ = 0;
  std::vector<CellKind> kinds_;
  std::vector<uint32_t> gauge_series_;
  std::vector<uint32_t> block_series_;
};

}  // namespace shmetrics::gateway
