// RegistryView: what the encoders read besides the Snapshot, the decoded registry the
// RegionReader keeps in gateway memory (families, series, exposition order). The encoders never
// read the region itself, so a body can be rendered after the region is gone: the Gateway serving
// its last snapshot passes a view whose families list only the series that snapshot holds.
//
// Thread-safety: a view borrows its vectors; they must outlive it and not change under it.
#pragma once

#include <cstdint>
#include <vector>

#include "region_reader.h"

namespace shmetrics::gateway {

struct RegistryView {
  // Implicit on purpose: a RegionReader is what nearly every caller has.
  RegistryView(const RegionReader& reader)  // NOLINT(google-explicit-constructor)
      : families(reader.families()), series(reader.series()), family_order(reader.family_order()) {}
  RegistryView(const std::vector<FamilyInfo>& families_in, const std::vector<SeriesInfo>& series_in,
               const std::vector<uint32_t>& family_order_in)
      : families(families_in), series(series_in), family_order(family_order_in) {}

  const std::vector<FamilyInfo>& families;  // FamilyInfo::series index `series`
  const std::vector<SeriesInfo>& series;
  const std::vector<uint32_t>& family_order;  // indices into `families`, by name
};

}  // namespace shmetrics::gateway
