// Gateway logging: one line per event on stderr, with a UTC timestamp and a level. Degraded
// states are logged at warn *and* counted in a self-metric by the caller.
#pragma once

#include <string_view>

namespace shmetrics::gateway {

void LogInfo(std::string_view message);
void LogWarn(std::string_view message);
void LogError(std::string_view message);

}  // namespace shmetrics::gateway
