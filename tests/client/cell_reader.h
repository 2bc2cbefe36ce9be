// The client tests' own view of a region, read through shm/ alone (no gateway): a series' cells
// summed over every writer slot and the active accumulator bank. It folds nothing and merges no
// gauges, native blocks or exemplars; tests of that live beside the gateway.
#pragma once

#include <bit>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "shmetrics/shm/layout.h"
#include "shmetrics/shm/region.h"
#include "shmetrics/shm/registry_reader.h"

namespace shmetrics::testing {

class CellReader {
 public:
  explicit CellReader(const std::string& name) : region_(shm::Region::Open(name)) {}

  // Cell `offset` of the series of `family` with these label values, summed over writers and
  // decoded as the family stores it there; -1 when there is no such series. Counters, histograms
  // (bucket counts, then the sum) and summaries (count, sum) only.
  double Cell(const std::string& family, const std::vector<std::string>& labels,
              uint32_t offset = 0) const {
    std::vector<std::optional<shm::FamilyView>> families = Families();
    const uint32_t count = region_->header().series_count.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < count; ++i) {
      const std::optional<shm::SeriesView> s = shm::ReadSeries(*region_, i, families, nullptr);
      if (!s) continue;
      const shm::FamilyView& f = *families[s->family];
      if (f.name == family && s->label_values == labels)
        return Sum(s->cell_base + offset, KindOf(f, offset));
    }
    return -1;
  }

  // A family's drop counter (reason shm::kDrop*), summed over writers; -1 without the family.
  double FamilyDrops(const std::string& family, uint32_t reason) const {
    for (const auto& f : Families()) {
      if (f && f->name == family) return Sum(f->drop_cell + reason, Kind::kCount);
    }
    return -1;
  }

  const shm::Region& region() const { return *region_; }

 private:
  enum class Kind { kCounter, kCount, kSum };

  static Kind KindOf(const shm::FamilyView& f, uint32_t offset) {
    switch (f.type) {
      case shm::MetricType::kCounter:
        return Kind::kCounter;
      case shm::MetricType::kHistogram:
        return offset <= f.bounds.size() ? Kind::kCount : Kind::kSum;
      case shm::MetricType::kSummary:
        return offset == 0 ? Kind::kCount : Kind::kSum;
      default:
        throw std::logic_error("CellReader reads no gauges: their merge is the gateway's");
    }
  }

  std::vector<std::optional<shm::FamilyView>> Families() const {
    std::vector<std::optional<shm::FamilyView>> out;
    const uint32_t n = region_->header().family_count.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < n; ++i) out.push_back(shm::ReadFamily(*region_, i, nullptr));
    return out;
  }

  // This slot's copy of `cell`, or 0 when the slot never touched its page.
  uint64_t SlotCell(uint32_t slot, uint32_t cell) const {
    const uint32_t page_no = cell / shm::kCellsPerPage;
    if (page_no >= region_->layout().pages_per_slot) return 0;
    const uint32_t page = region_->directory(slot)[page_no].load(std::memory_order_acquire);
    if (page == shm::kNoPage) return 0;
    const shm::Cell* cells = region_->page(page);
    return cells ? cells[cell % shm::kCellsPerPage].load(std::memory_order_relaxed) : 0;
  }

  double Sum(uint32_t cell, Kind kind) const {
    const shm::Layout& l = region_->layout();
    const uint32_t active_bank =
        static_cast<uint32_t>(region_->header().fold_commit.load(std::memory_order_acquire) & 1);
    std::vector<uint32_t> slots;
    for (uint32_t s = 0; s < l.max_slots; ++s) slots.push_back(s);  // every state: nothing folds
    slots.push_back(l.bank_slot(active_bank));
    double sum = 0;
    for (uint32_t s : slots) {
      const uint64_t v = SlotCell(s, cell);
      if (kind == Kind::kCounter)
        sum += shm::DecodeCounterCell(v);
      else if (kind == Kind::kCount)
        sum += static_cast<double>(v);
      else
        sum += std::bit_cast<double>(v);
    }
    return sum;
  }

  std::unique_ptr<shm::Region> region_;
};

}  // namespace shmetrics::testing
