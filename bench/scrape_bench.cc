// Scrape cost: one iteration is one whole /metrics body exactly as shmetrics-gateway serves it
// (Gateway::RenderMetrics: reap dead writers, merge every live writer with the accumulator, encode
// text 0.0.4, then the self-metrics), over a real region whose writers are alive (see
// ScrapeFixture). HTTP is left out: it is the same for any body.
#include <benchmark/benchmark.h>

#include "bench_support.h"

namespace shmetrics::bench {
namespace {

void RunScrape(benchmark::State& state, ScrapeFixture& fx) {
  size_t bytes = 0;
  for (auto _ : state) {
    const std::string body = fx.Scrape();
    bytes = body.size();
    benchmark::DoNotOptimize(body.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["body_bytes"] = static_cast<double>(bytes);
  const RegionMemory& m = fx.memory();
  // Region bytes per (series, writer that touched it): the live writers' pages, directories and
  // slot headers over the (series, writer) pairs with a value; and the region's used bytes
  // (fixed sections + every page handed out, accumulator banks included) over the same pairs.
  state.counters["writer_bytes_per_series_writer"] = m.writer_bytes_per_pair();
  state.counters["used_bytes_per_series_writer"] = m.used_bytes_per_pair();
}

// <series>/<workers>: every one of <workers> live writers holds a value for every series.
void BM_Scrape_Text(benchmark::State& state) {
  ScrapeFixture* fx = nullptr;
  try {
    fx = &CachedScrapeFixture(static_cast<uint32_t>(state.range(0)),
                              static_cast<uint32_t>(state.range(1)), 0);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  RunScrape(state, *fx);
}
BENCHMARK(BM_Scrape_Text)
    ->ArgsProduct({{1000, 10000, 100000}, {1, 16, 64}})
    ->Unit(benchmark::kMillisecond);

// <dead>: 10000 series, 4 live writers, after <dead> writers wrote every series, exited and were
// folded. What dead writers leave is one accumulator: the time must not depend on <dead>. The
// live writers add 2500 each, so every case serves 5-digit values (10000, 10256, 14096) and the
// bodies are the same size: with 1 each, the values' digits alone (4 vs 4100) made /4096's body
// 4.4% longer than /0's, which is not what this benchmark is about.
constexpr uint64_t kDeadCaseLiveAmount = 2500;
void BM_Scrape_Text_DeadWorkers(benchmark::State& state) {
  ScrapeFixture* fx = nullptr;
  try {
    fx = &CachedScrapeFixture(10000, 4, static_cast<uint32_t>(state.range(0)), kDeadCaseLiveAmount);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  RunScrape(state, *fx);
}
BENCHMARK(BM_Scrape_Text_DeadWorkers)->Arg(0)->Arg(256)->Arg(4096)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace shmetrics::bench
