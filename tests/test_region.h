// A uniquely named region for one test, removed when the test ends (even when it fails).
#pragma once

#include <unistd.h>

#include <atomic>
#include <string>

#include "shmetrics/shm/region.h"

namespace shmetrics::testing {

inline std::string UniqueRegionName(const std::string& tag) {
  static std::atomic<int> counter{0};
  return "shmetrics-test-" + tag + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter++);
}

struct ScopedRegionName {
  explicit ScopedRegionName(const std::string& tag) : name(UniqueRegionName(tag)) {
    shm::Region::Remove(name);
  }
  ~ScopedRegionName() {
    try {
      shm::Region::Remove(name);
    } catch (const shm::RegionError&) {  // not ours to remove: leave it, never terminate
    }
  }
  std::string name;
};

// Small capacities so tests are fast and limits are reachable.
inline shm::RegionOptions SmallOptions() {
  shm::RegionOptions o;
  o.size_bytes = 4u << 20;
  o.max_families = 64;
  o.max_series = 1024;
  o.max_slots = 16;
  o.max_cells = 8192;
  o.string_bytes = 64u << 10;
  return o;
}

}  // namespace shmetrics::testing
