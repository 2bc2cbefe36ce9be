// One C++ worker of the cross-language test: registers the families the Python and Node workers
// register too, writes once and exits. Usage: crosslang_cpp_worker REGION
#include <shmetrics/shmetrics.h>

#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: crosslang_cpp_worker REGION\n");
    return 2;
  }
  try {
    shmetrics::Client& client = shmetrics::Client::Attach(argv[1]);
    shmetrics::BuildCounter()
        .Name("xlang_requests_total")
        .Help("Requests, by path.")
        .Labels({"path"})
        .Register(client)
        .Add({"/a"})
        .Add(3);
    shmetrics::BuildHistogram()
        .Name("xlang_latency_seconds")
        .Help("Latency.")
        .Buckets({0.1, 1.0})
        .Register(client)
        .Get()
        .Observe(0.05);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "crosslang_cpp_worker: %s\n", e.what());
    return 1;
  }
  return 0;
}
