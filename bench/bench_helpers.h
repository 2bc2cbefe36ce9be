// The helper modes of shmetrics_bench (bench_helpers.cc).
#pragma once

namespace shmetrics::bench {

// Runs the mode named by --helper=MODE among argv; returns the process exit status (2: usage).
int RunHelper(int argc, char** argv);

}  // namespace shmetrics::bench
