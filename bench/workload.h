// Inputs shared by shmetrics_bench and shmetrics-loadgen, so that every side of a comparison
// observes the same values into the same buckets.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace shmetrics::bench {

// The ten histogram bounds of the write-path benchmarks and the load generator.
inline std::vector<double> TenBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
}

inline constexpr uint32_t kObservations =
    1024;  // a power of two: index with i & (kObservations - 1)

// A fixed stream of observations, log-uniform over [1 ms, 10 s] from a fixed LCG: every bucket
// and +Inf get hits, in an order the branch predictor cannot learn.
inline const std::vector<double>& ObservationStream() {
  static const std::vector<double> values = [] {
    std::vector<double> v(kObservations);
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (double& d : v) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      const double u = static_cast<double>(x >> 11) / 9007199254740992.0;  // [0, 1)
      d = 0.001 * std::pow(10.0, 4.0 * u);
    }
    return v;
  }();
  return values;
}

}  // namespace shmetrics::bench
