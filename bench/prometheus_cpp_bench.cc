// The peer: prometheus-cpp (Debian's 1.0.1, prometheus-cpp::core), used the way its README shows,
// with the same workloads as the shmetrics benchmarks: the same loop shape and barrier as
// write_bench.cc, the same observation stream and ten buckets, the same label values, and the
// same families and series for serialisation as the scrape benchmarks.
#include <benchmark/benchmark.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <map>
#include <memory>

#include "bench_support.h"

namespace shmetrics::bench {
namespace {

struct PeerMetrics {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>* requests = nullptr;
  prometheus::Counter* counter = nullptr;
  prometheus::Histogram* histogram = nullptr;
};

PeerMetrics& Peer() {
  static PeerMetrics* m = [] {
    auto* p = new PeerMetrics();
    p->requests = &prometheus::BuildCounter()
                       .Name("bench_http_requests_total")
                       .Help("Requests.")
                       .Register(*p->registry);
    for (const char* m : {"GET", "POST", "PUT", "DELETE"}) {
      for (const char* c : {"200", "201", "304", "404", "500", "503"})
        p->requests->Add({{"method", m}, {"code", c}});
    }
    p->counter = &p->requests->Add({{"method", "GET"}, {"code", "200"}});
    const std::vector<double> b = TenBuckets();
    p->histogram = &prometheus::BuildHistogram()
                        .Name("bench_latency_seconds")
                        .Help("Latency.")
                        .Register(*p->registry)
                        .Add({}, prometheus::Histogram::BucketBoundaries(b.begin(), b.end()));
    return p;
  }();
  return *m;
}

void BM_PrometheusCpp_CounterIncrement(benchmark::State& state) {
  prometheus::Counter& c = *Peer().counter;
  for (auto _ : state) {
    c.Increment();
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_PrometheusCpp_CounterIncrement);

void BM_PrometheusCpp_HistogramObserve(benchmark::State& state) {
  prometheus::Histogram& h = *Peer().histogram;
  const std::vector<double>& values = ObservationStream();
  size_t i = 0;
  for (auto _ : state) {
    h.Observe(values[i++ & 1023]);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_PrometheusCpp_HistogramObserve);

// Label values -> the existing child, as prometheus-cpp users write it (Labels is a std::map).
void BM_PrometheusCpp_FamilyAdd(benchmark::State& state) {
  prometheus::Family<prometheus::Counter>& f = *Peer().requests;
  for (auto _ : state) {
    prometheus::Counter& c = f.Add({{"method", "GET"}, {"code", "200"}});
    benchmark::DoNotOptimize(&c);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_PrometheusCpp_FamilyAdd);

// One process's whole /metrics body: Registry::Collect + TextSerializer, over the scrape shape.
void BM_PrometheusCpp_Serialize(benchmark::State& state) {
  const auto series = static_cast<uint32_t>(state.range(0));
  static std::map<uint32_t, std::shared_ptr<prometheus::Registry>> registries;
  auto& registry = registries[series];
  if (!registry) {
    registry = std::make_shared<prometheus::Registry>();
    for (uint32_t f = 0; f < FamilyCount(series); ++f) {
      auto& family = prometheus::BuildCounter()
                         .Name(FamilyName(f) + "_total")
                         .Help(FamilyHelp(f))
                         .Register(*registry);
      for (uint32_t i = f * kSeriesPerFamily; i < std::min(series, (f + 1) * kSeriesPerFamily);
           ++i) {
        family.Add({{"route", RouteLabel(i)}, {"code", "200"}}).Increment();
      }
    }
  }
  const prometheus::TextSerializer serializer;
  size_t bytes = 0;
  for (auto _ : state) {
    const std::string body = serializer.Serialize(registry->Collect());
    bytes = body.size();
    benchmark::DoNotOptimize(body.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["body_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_PrometheusCpp_Serialize)
    ->Arg(1000)
    ->Arg(10000)
    ->Arg(100000)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace shmetrics::bench
