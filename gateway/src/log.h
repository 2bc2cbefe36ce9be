// Gateway logging: one line per event on stderr, as Prometheus exporters log (go-kit's logfmt by
// default: `ts=... level=info msg="..."`, or one JSON object per line). Degraded states are
// logged at warn *and* counted in a self-metric by the caller.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace shmetrics::gateway {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
enum class LogFormat { kLogfmt, kJson };

// --log.level and --log.format values ("debug", "info", "warn", "error"; "logfmt", "json").
std::optional<LogLevel> ParseLogLevel(std::string_view name);
std::optional<LogFormat> ParseLogFormat(std::string_view name);

// Set once at startup, before other threads log (defaults: info, logfmt).
void SetLogOptions(LogLevel level, LogFormat format);

void LogDebug(std::string_view message);
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
