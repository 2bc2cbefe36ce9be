// The README example as an outside program: attach, register a counter, count, print OK.
#include <cstdio>
#include <exception>

#include "shmetrics/shmetrics.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s REGION\n", argv[0]);
    return 2;
  }
  try {
    shmetrics::Client& client = shmetrics::Client::Attach(argv[1]);
    auto& requests = shmetrics::BuildCounter()
                         .Name("http_requests_total")
                         .Help("Requests served.")
                         .Labels({"method", "code"})
                         .Register(client);
    shmetrics::Counter& ok = requests.Add({"GET", "200"});  // look up once, keep the reference
    ok.Inc();
    ok.Add(2);
    std::puts("OK");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
}
