// shmetrics_bench: the Google Benchmark suite (every bench/*_bench.cc). With --helper=MODE it runs
// one of the helper modes of bench_helpers.cc instead (bench/compare_python_multiprocess.py calls
// them). Every region it creates is named shmetrics-bench-<pid>-* and removed before it exits.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <string_view>
#include <vector>

#include "bench_helpers.h"
#include "bench_support.h"

namespace shmetrics::bench {
namespace {

// The console reporter, remembering whether any benchmark reported an error (SkipWithError: e.g.
// updates were dropped, or a scrape fixture's body was wrong), so that the exit status says so.
class CheckingReporter : public benchmark::ConsoleReporter {
 public:
  CheckingReporter() : ConsoleReporter(::isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) failed_ |= r.error_occurred;
    ConsoleReporter::ReportRuns(runs);
  }
  bool failed() const { return failed_; }

 private:
  bool failed_ = false;
};

}  // namespace
}  // namespace shmetrics::bench

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]).starts_with("--helper="))
      return shmetrics::bench::RunHelper(argc, argv);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  int status = 0;
  shmetrics::bench::CheckingReporter reporter;
  try {
    benchmark::RunSpecifiedBenchmarks(&reporter);
    if (reporter.failed()) {
      std::fprintf(stderr,
                   "shmetrics_bench: a benchmark reported an error (see ERROR OCCURRED above)\n");
      status = 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shmetrics_bench: %s\n", e.what());
    status = 1;
  }
  shmetrics::bench::DestroyCachedFixtures();
  shmetrics::bench::RemoveRegions();
  benchmark::Shutdown();
  return status;
}
