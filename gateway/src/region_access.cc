#include "region_access.h"

#include "log.h"

namespace shmetrics::gateway {

void RegionAccess::LogSkipped(const std::string& what) {
  if (recorded_ != nullptr) {
    recorded_->push_back(what);
    return;
  }
  ++skipped_reports_;
  if (!LogThisOccurrence(skipped_reports_)) return;
  LogWarn(
      "region \"" + region_.name() + "\": skipping invalid data: " + what +
      (skipped_reports_ == 10 ? " (from now on, only the 16th, 32nd, 64th... are logged)" : ""));
}

void RegionAccess::ResolvePages(uint32_t slot, std::vector<shm::Cell*>& pages) {
  const uint32_t n = region_.layout().pages_per_slot;
  pages.assign(n, nullptr);
  const shm::DirectoryEntry* dir = region_.directory(slot);
  if (dir == nullptr) return;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t p = dir[i].load(std::memory_order_acquire);
    if (p == shm::kNoPage) continue;
    pages[i] = region_.page(p);  // nullptr when out of range: a corrupt entry reads as absent
    if (pages[i] == nullptr) {
      ++stats_.corrupt_slots;
      LogSkipped("slot " + std::to_string(slot) + ": directory entry " + std::to_string(i) +
                 " points outside the page pool");
    }
  }
}

}  // namespace shmetrics::gateway
