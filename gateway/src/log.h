// Gateway logging: one line per event on stderr, with a UTC timestamp and a level. Degraded
// states are logged at warn *and* counted in a self-metric by the caller.
#pragma once

#include <cstdint>
#include <string_view>

namespace shmetrics::gateway {

void LogInfo(std::string_view message);
void LogWarn(std::string_view message);
void LogError(std::string_view message);

// Rate limit for a warning that can repeat without end (a fault that persists, a hostile region):
// true for the `n`th occurrence (counted from 1) when n <= first_n or n is a power of two, so the
// log shows the start of a fault and then ever more sparsely that it lasts.
constexpr bool LogThisOccurrence(uint64_t n, uint64_t first_n = 10) {
  return n <= first_n || (n & (n - 1)) == 0;
}

}  // namespace shmetrics::gateway
