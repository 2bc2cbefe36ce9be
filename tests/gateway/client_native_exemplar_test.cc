// Native histograms and exemplars through the public API, read back by the gateway's reader.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <random>
#include <thread>

#include "region_reader.h"
#include "shmetrics/shmetrics.h"
#include "test_region.h"

namespace shmetrics {
namespace {

using testing::ScopedRegionName;
using testing::SmallOptions;

shm::RegionOptions Roomy() {
  shm::RegionOptions o = SmallOptions();
  o.size_bytes = 16u << 20;
  return o;
}

const gateway::SeriesInfo* Find(const gateway::RegionReader& r, const std::string& family) {
  for (const auto& f : r.families()) {
    if (f.view.name == family && !f.series.empty()) return &r.series()[f.series[0]];
  }
  return nullptr;
}

// The reference: every value bucketed directly at the schema the merge ended at.
shm::native::Sparse Expected(const std::vector<double>& values, int32_t schema,
                             double zero_threshold) {
  shm::native::Sparse h = shm::native::Sparse::At(schema);
  for (double v : values) {
    const double a = std::fabs(v);
    if (a <= zero_threshold) {
      h.zero_count += 1;
    } else {
      (v > 0 ? h.positive : h.negative)[shm::native::BucketKey(a, schema)] += 1;
    }
  }
  return h;
}

TEST(NativeHistogramClientTest, ThreadsAndDeadWorkersMergeExactly) {
  ScopedRegionName name("native");
  Client& c = Client::Attach(name.name, Roomy());
  auto& fam = BuildHistogram().Name("lat_seconds").Help("L.").Native(3, 40, 1e-9).Register(c);
  std::vector<double> all;
  std::vector<std::vector<double>> per_thread(3);
  std::mt19937_64 rng(1);
  std::lognormal_distribution<double> dist(-3, 1);
  for (auto& values : per_thread) {
    for (int i = 0; i < 5000; ++i)
      values.push_back(i % 100 == 0 ? 0.0 : (i % 7 == 0 ? -dist(rng) : dist(rng)));
    all.insert(all.end(), values.begin(), values.end());
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (double v : per_thread[t]) fam.Get().Observe(v);
    });
  }
  for (auto& t : threads) t.join();
  const pid_t child = ::fork();  // a worker that dies: its buckets are folded
  if (child == 0) {
    for (double v : per_thread[2]) fam.Get().Observe(v);
    _exit(0);
  }
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);

  gateway::RegionReader reader(shm::Region::Open(name.name));
  gateway::Snapshot snap;
  reader.Collect(snap);
  const gateway::SeriesInfo* s = Find(reader, "lat_seconds");
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(snap.native.at(s->view.index));
  const shm::native::Sparse& got = *snap.native[s->view.index];
  // 40 buckets per writer cannot hold this spread at schema 3: writers reduced, exactly.
  EXPECT_LT(got.schema, 3);
  const shm::native::Sparse want = Expected(all, got.schema, 1e-9);
  EXPECT_EQ(got.zero_count, want.zero_count);
  EXPECT_EQ(got.positive, want.positive);
  EXPECT_EQ(got.negative, want.negative);
  // The classic part counts everything: +Inf cumulative == number of observations.
  EXPECT_EQ(snap.cells[s->view.cell_base], all.size());
}

TEST(NativeHistogramClientTest, NativeAndClassicTogether) {
  ScopedRegionName name("both");
  Client& c = Client::Attach(name.name, Roomy());
  Histogram& h =
      BuildHistogram().Name("b_seconds").Help("B.").Buckets({0.1, 1}).Native(0).Register(c).Get();
  for (double v : {0.05, 0.5, 2.0, 4.0}) h.Observe(v);
  gateway::RegionReader reader(shm::Region::Open(name.name));
  gateway::Snapshot snap;
  reader.Collect(snap);
  const gateway::SeriesInfo* s = Find(reader, "b_seconds");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(snap.cells[s->view.cell_base + 0], 1);  // <= 0.1
  EXPECT_EQ(snap.cells[s->view.cell_base + 1], 1);  // <= 1
  EXPECT_EQ(snap.cells[s->view.cell_base + 2], 2);  // +Inf
  const shm::native::Sparse& n = *snap.native.at(s->view.index);
  EXPECT_EQ(n.schema, 0);
  // 0.05 in (2^-5, 2^-4], 0.5 in (2^-2, 2^-1], 2 in (1, 2], 4 in (2, 4].
  EXPECT_EQ(n.positive, (std::map<int32_t, double>{{-4, 1}, {-1, 1}, {1, 1}, {2, 1}}));
}

TEST(ExemplarTest, MostRecentAcrossWritersIsServed) {
  ScopedRegionName name("exemplar");
  Client& c = Client::Attach(name.name, Roomy());
  auto& fam = BuildCounter().Name("req_total").Help("R.").Exemplars().Register(c);
  auto& hist = BuildHistogram().Name("h_seconds").Help("H.").Buckets({1}).Exemplars().Register(c);
  fam.Get().Add(1, {{"trace_id", "first"}});
  std::thread([&] {
    fam.Get().Add(2, {{"trace_id", "second"}, {"span_id", "s"}});
  }).join();  // newer, from another writer (whose slot is then folded)
  hist.Get().Observe(0.5, {{"trace_id", "low"}});
  hist.Get().Observe(5, {{"trace_id", "high"}});
  gateway::RegionReader reader(shm::Region::Open(name.name));
  gateway::Snapshot snap;
  reader.Collect(snap);
  const auto* s = Find(reader, "req");
  ASSERT_NE(s, nullptr);
  const gateway::ExemplarValue& e = snap.exemplars.at(s->view.index).at(0);
  ASSERT_TRUE(e.present);
  EXPECT_EQ(e.value, 2);
  EXPECT_EQ(e.labels, (std::vector<std::pair<std::string, std::string>>{{"trace_id", "second"},
                                                                        {"span_id", "s"}}));
  const auto* h = Find(reader, "h_seconds");
  ASSERT_NE(h, nullptr);
  const auto& buckets = snap.exemplars.at(h->view.index);
  ASSERT_EQ(buckets.size(), 2u);
  EXPECT_EQ(buckets[0].labels.at(0).second, "low");
  EXPECT_EQ(buckets[1].labels.at(0).second, "high");
  EXPECT_EQ(snap.cells[s->view.cell_base], 3);
}

TEST(ExemplarTest, TooLongOrUnsupportedExemplarsAreCountedAndValuesKept) {
  ScopedRegionName name("exlong");
  Client& c = Client::Attach(name.name, Roomy());
  Counter& with = BuildCounter().Name("a_total").Help("A.").Exemplars().Register(c).Get();
  Counter& without = BuildCounter().Name("b_total").Help("B.").Register(c).Get();
  with.Add(1, {{"trace_id", std::string(200, 'x')}});
  without.Add(1, {{"trace_id", "t"}});
  EXPECT_EQ(c.region().header().dropped_exemplars.load(), 2u);
  gateway::RegionReader reader(shm::Region::Open(name.name));
  gateway::Snapshot snap;
  reader.Collect(snap);
  EXPECT_EQ(snap.cells[Find(reader, "a")->view.cell_base], 1);
  EXPECT_EQ(snap.cells[Find(reader, "b")->view.cell_base], 1);
}

// A writer rewrites the exemplar as fast as it can with label value == value; every exemplar the
// reader serves must be consistent (a torn read would mix one write's value with another's label).
TEST(ExemplarTest, TornExemplarIsNeverServed) {
  ScopedRegionName name("extorn");
  Client& c = Client::Attach(name.name, Roomy());
  auto& fam = BuildCounter().Name("t_total").Help("T.").Exemplars().Register(c);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    Counter& k = fam.Get();
    uint64_t n = 0;
    char buf[32];
    while (!stop.load(std::memory_order_relaxed)) {
      ++n;
      const int len = std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
      // Vary the length too, so a torn copy would also show in the label bytes.
      k.Add(static_cast<double>(n), {{"n", std::string_view(buf, len)},
                                     {"pad", std::string_view("xxxxxxxxxxxxxxxxxxxxxxx", n % 20)}});
    }
  });
  while (c.region().header().series_count.load() == 0) std::this_thread::yield();
  gateway::RegionReader reader(shm::Region::Open(name.name));
  gateway::Snapshot snap;
  int checked = 0;
  // A collect serves no exemplar while the writer is preempted mid-write (the seqlock stays odd),
  // which on a loaded 2-core machine can be most of them: read until 1000 were checked.
  for (int i = 0; i < 200000 && checked < 1000; ++i) {
    reader.Collect(snap);
    const auto* s = Find(reader, "t");
    // Until the writer's first exemplar is in a page the gateway reads, the series has none.
    if (s == nullptr || s->view.index >= snap.exemplars.size() ||
        snap.exemplars[s->view.index].empty() || !snap.exemplars[s->view.index][0].present)
      continue;
    const gateway::ExemplarValue& e = snap.exemplars[s->view.index][0];
    ASSERT_EQ(e.labels.size(), 2u);
    ASSERT_EQ(e.labels[0].second, std::to_string(static_cast<unsigned long long>(e.value)));
    ASSERT_EQ(e.labels[1].second.size(), static_cast<uint64_t>(e.value) % 20);
    ++checked;
  }
  stop = true;
  writer.join();
  EXPECT_EQ(checked, 1000);
}

}  // namespace
}  // namespace shmetrics
