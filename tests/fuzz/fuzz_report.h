// How the fuzz targets report a finding: the violation, the offending body, then abort() so that
// libFuzzer saves the input. SHMETRICS_FUZZ_SKIP=<category>,... (the categories of
// exposition_checker.h, or "exception") lets a development run look past a class of known findings
// while they are being fixed; CI never sets it.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace shmetrics::fuzz {

inline bool SkippedCategory(std::string_view problem) {
  static const std::string skip = [] {
    const char* s = std::getenv("SHMETRICS_FUZZ_SKIP");
    return s ? "," + std::string(s) + "," : std::string();
  }();
  if (skip.empty()) return false;
  const size_t colon = problem.find(':');
  const std::string category(problem.substr(0, colon));
  return skip.find("," + category + ",") != std::string::npos;
}

// Prints the body with non-printable bytes as \xNN (protobuf bodies are binary), at most 16 KiB.
inline void PrintBody(std::string_view body) {
  std::fprintf(stderr, "--- body (%zu bytes) ---\n", body.size());
  const size_t n = body.size() < 16384 ? body.size() : 16384;
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(body[i]);
    if (c == '\n' || (c >= 0x20 && c < 0x7f)) {
      std::fputc(c, stderr);
    } else {
      std::fprintf(stderr, "\\x%02x", c);
    }
  }
  std::fprintf(stderr, "\n--- end of body ---\n");
}

[[noreturn]] inline void Finding(const char* target, const std::string& problem,
                                 std::string_view body = {}) {
  std::fprintf(stderr, "\n==%s== FINDING: %s\n", target, problem.c_str());
  if (!body.empty()) PrintBody(body);
  std::abort();
}

}  // namespace shmetrics::fuzz
