// The shmetrics write path, through the public API, as an application calls it: a child handle
// resolved once, then one update per loop iteration. Compare with baseline_bench.cc (the
// hardware's limits) and prometheus_cpp_bench.cc (the peer).
//
// Every loop body ends in benchmark::ClobberMemory(), a compiler-only barrier (no instruction):
// the handle, the thread-local writer pointer and the page pointer are reloaded every iteration,
// as they are when an update is one statement among others in a request handler, and no update
// can be merged with the next. The baselines use the same barrier.
#include <benchmark/benchmark.h>

#include "bench_support.h"
#include "gateway.h"
#include "shmetrics/shmetrics.h"

namespace shmetrics::bench {
namespace {

struct WriteMetrics {
  Client* client;
  Family<Counter>* requests;
  Counter* counter;     // BM_Counter_Inc: only ever whole amounts, so its cells stay integers
  Counter* fractional;  // BM_Counter_Add: 0.25 turns its cells to doubles (see shm/layout.h)
  Gauge* gauge;
  Histogram* histogram;
  // Folds the slots of benchmark threads that exited (each Threads(2) run starts fresh threads,
  // and each claims a slot), exactly as a gateway would, so that runs never run out of slots.
  std::unique_ptr<gateway::RegionReader> reader;
};

WriteMetrics& Metrics() {
  static WriteMetrics* m = [] {
    auto* w = new WriteMetrics();
    shm::RegionOptions options;
    options.size_bytes = 8u << 20;
    options.max_slots = 64;
    options.max_cells = 8192;
    options.max_series = 1024;
    options.string_bytes = 64u << 10;
    const std::string name = NewRegionName("write");
    w->client = &Client::Attach(name, options);
    w->requests = &BuildCounter()
                       .Name("bench_http_requests_total")
                       .Help("Requests.")
                       .Labels({"method", "code"})
                       .Register(*w->client);
    // A family of realistic size: 4 methods x 6 codes, so a lookup probes a populated table.
    for (const char* m : {"GET", "POST", "PUT", "DELETE"}) {
      for (const char* c : {"200", "201", "304", "404", "500", "503"}) w->requests->Add({m, c});
    }
    w->counter = &w->requests->Add({"GET", "200"});
    // Not the same child: once Counter_Add ran first (the repetitions are interleaved), every Inc
    // took the double path (3.3 ns instead of 1.25 ns) for the rest of the process.
    w->fractional = &w->requests->Add({"POST", "200"});
    w->gauge = &BuildGauge().Name("bench_in_flight").Help("In flight.").Register(*w->client).Get();
    w->histogram = &BuildHistogram()
                        .Name("bench_latency_seconds")
                        .Help("Latency.")
                        .Buckets(TenBuckets())
                        .Register(*w->client)
                        .Get();
    w->reader = std::make_unique<gateway::RegionReader>(shm::Region::Open(name));
    return w;
  }();
  return *m;
}

void FoldExitedThreads(const benchmark::State&) { Metrics().reader->Reap(); }

uint64_t Drops() {
  const shm::RegionHeader& h = Metrics().client->region().header();
  return h.dropped_no_slot.load() + h.dropped_no_page.load() + h.dropped_region_full.load();
}

// A benchmark that measured the drop path instead of the write path must not report a number.
void CheckNoDrops(benchmark::State& state, uint64_t before) {
  if (state.thread_index() == 0 && Drops() != before)
    state.SkipWithError("updates were dropped (no slot or page)");
}

void BM_Counter_Inc(benchmark::State& state) {
  Counter& c = *Metrics().counter;
  const uint64_t drops = Drops();
  c.Inc();  // first update of this thread: claims its slot and maps the page, outside the timing
  for (auto _ : state) {
    c.Inc();
    benchmark::ClobberMemory();
  }
  CheckNoDrops(state, drops);
}
BENCHMARK(BM_Counter_Inc)->Setup(FoldExitedThreads);
BENCHMARK(BM_Counter_Inc)->Threads(2)->Setup(FoldExitedThreads);

void BM_Counter_Add(benchmark::State& state) {
  Counter& c = *Metrics().fractional;
  const uint64_t drops = Drops();
  double v = 0.25;
  c.Add(v);
  for (auto _ : state) {
    benchmark::DoNotOptimize(v);  // a run-time amount: the sign check is not folded away
    c.Add(v);
    benchmark::ClobberMemory();
  }
  CheckNoDrops(state, drops);
}
BENCHMARK(BM_Counter_Add)->Setup(FoldExitedThreads);

void BM_Gauge_Set(benchmark::State& state) {
  Gauge& g = *Metrics().gauge;
  const std::vector<double>& values = ObservationStream();
  const uint64_t drops = Drops();
  g.Set(0);
  size_t i = 0;
  for (auto _ : state) {
    g.Set(values[i++ & 1023]);
    benchmark::ClobberMemory();
  }
  CheckNoDrops(state, drops);
}
BENCHMARK(BM_Gauge_Set)->Setup(FoldExitedThreads);

void BM_Gauge_Add(benchmark::State& state) {
  Gauge& g = *Metrics().gauge;
  const uint64_t drops = Drops();
  double v = 1.0;
  g.Add(0);
  for (auto _ : state) {
    benchmark::DoNotOptimize(v);
    g.Add(v);
    benchmark::ClobberMemory();
  }
  CheckNoDrops(state, drops);
}
BENCHMARK(BM_Gauge_Add)->Setup(FoldExitedThreads);

void BM_Histogram_Observe(benchmark::State& state) {
  Histogram& h = *Metrics().histogram;
  const std::vector<double>& values = ObservationStream();
  const uint64_t drops = Drops();
  h.Observe(values[0]);
  size_t i = 0;
  for (auto _ : state) {
    h.Observe(values[i++ & 1023]);
    benchmark::ClobberMemory();
  }
  CheckNoDrops(state, drops);
}
BENCHMARK(BM_Histogram_Observe)->Setup(FoldExitedThreads);
BENCHMARK(BM_Histogram_Observe)->Threads(2)->Setup(FoldExitedThreads);

// Label values -> the existing child's handle, through the public API, the way a handler that
// does not cache handles writes it.
void BM_Labels_Resolve(benchmark::State& state) {
  Family<Counter>& f = *Metrics().requests;
  for (auto _ : state) {
    Counter& c = f.Add({"GET", "200"});
    benchmark::DoNotOptimize(&c);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_Labels_Resolve);

}  // namespace
}  // namespace shmetrics::bench
