// The write path never allocates: not on the hot path, and not on the native histogram's slow
// path (window moves and schema reductions) either. Counted by replacing operator new in this
// test binary.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>

#include "shmetrics/shmetrics.h"
#include "test_region.h"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace shmetrics {
namespace {

TEST(NoAllocationTest, UpdatesIncludingNativeWindowMovesNeverAllocate) {
  testing::ScopedRegionName name("noalloc");
  const long at_start = g_allocations.load();
  Client& c = Client::Attach(name.name, testing::SmallOptions());
  EXPECT_GT(g_allocations.load(),
            at_start);  // the counter does count (the control plane allocates)
  Counter& counter = BuildCounter().Name("na_total").Help("N.").Exemplars().Register(c).Get();
  Gauge& gauge =
      BuildGauge().Name("na_gauge").Help("N.").Mode(GaugeMode::kMostRecent).Register(c).Get();
  Histogram& hist = BuildHistogram()
                        .Name("na_seconds")
                        .Help("N.")
                        .Buckets({0.1, 1})
                        .Native(3, 8)
                        .Exemplars()
                        .Register(c)
                        .Get();
  Summary& summary = BuildSummary().Name("na_bytes").Help("N.").Register(c).Get();
  // First updates claim the slot and map pages (control plane); not counted.
  counter.Inc();
  gauge.Set(1);
  hist.Observe(1);
  summary.Observe(1);

  const long before = g_allocations.load();
  for (int i = 0; i < 2000; ++i) {
    counter.Inc();
    counter.Add(0.5, {{"trace_id", "abc"}});
    gauge.Add(1);
    // Values over 12 decades with 4 buckets per sign: constant window moves and reductions.
    const double v = (i % 2 ? 1 : -1) * std::ldexp(1.0, (i * 7) % 40 - 20);
    hist.Observe(v, {{"trace_id", "x"}});
    summary.Observe(v);
  }
  EXPECT_EQ(g_allocations.load() - before, 0);
}

}  // namespace
}  // namespace shmetrics
