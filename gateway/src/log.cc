#include "log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace shmetrics::gateway {
namespace {

void Log(const char* level, std::string_view message) {
  static std::mutex mu;
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::lock_guard lock(mu);
  std::fprintf(stderr, "%s.%03dZ %s %.*s\n", stamp, static_cast<int>(ms), level,
               static_cast<int>(message.size()), message.data());
}

}  // namespace

void LogInfo(std::string_view message) { Log("info", message); }
void LogWarn(std::string_view message) { Log("warn", message); }
void LogError(std::string_view message) { Log("error", message); }

}  // namespace shmetrics::gateway
