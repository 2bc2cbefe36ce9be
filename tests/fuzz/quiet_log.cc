// The gateway's log, replaced for the fuzz targets: the region reader warns about every corrupt
// record, and a line per input on stderr would slow the fuzzer and bury its reports. Linked before
// shmetrics_gateway_lib, these definitions keep log.cc's object out of the link. Set
// SHMETRICS_FUZZ_LOG=1 to see the lines.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "log.h"

namespace shmetrics::gateway {
namespace {

void Log(const char* level, std::string_view message) {
  static const bool enabled = std::getenv("SHMETRICS_FUZZ_LOG") != nullptr;
  if (enabled) {
    std::fprintf(stderr, "%s %.*s\n", level, static_cast<int>(message.size()), message.data());
  }
}

}  // namespace

void LogInfo(std::string_view message) { Log("info", message); }
void LogWarn(std::string_view message) { Log("warn", message); }
void LogError(std::string_view message) { Log("error", message); }

}  // namespace shmetrics::gateway
