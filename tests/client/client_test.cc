// Client API: registration errors, drops, threads, fork. Values are read back through
// cell_reader.h (shm/ only: these tests build without the gateway).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "cell_reader.h"
#include "shmetrics/shmetrics.h"
#include "test_region.h"

namespace shmetrics {
namespace {

using testing::ScopedRegionName;
using testing::SmallOptions;

using Reader = testing::CellReader;

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(ClientTest, CountsFromManyThreadsExactly) {
  ScopedRegionName name("threads");
  Client& c = Client::Attach(name.name, SmallOptions());
  auto& fam = BuildCounter().Name("jobs_total").Help("Jobs.").Labels({"kind"}).Register(c);
  auto& hist = BuildHistogram().Name("size_bytes").Help("Sizes.").Buckets({10, 100}).Register(c);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      Counter& k = fam.Add({"a"});
      for (int i = 0; i < 100000; ++i) {
        k.Inc();
        hist.Get().Observe(i % 3 == 0 ? 5 : (i % 3 == 1 ? 50 : 500));
      }
    });
  }
  for (auto& t : threads) t.join();
  Reader r(name.name);
  EXPECT_EQ(r.Cell("jobs", {"a"}), 400000);
  // Buckets (non-cumulative cells): <=10, <=100, +Inf, then the sum.
  EXPECT_EQ(r.Cell("size_bytes", {}, 0) + r.Cell("size_bytes", {}, 1) + r.Cell("size_bytes", {}, 2),
            400000);
  EXPECT_EQ(r.Cell("size_bytes", {}, 0), 4 * 33334);
  EXPECT_EQ(r.Cell("size_bytes", {}, 3), 4 * (33334.0 * 5 + 33333.0 * 50 + 33333.0 * 500));
}

TEST(ClientTest, CounterRejectsNegativeAndNaNAsCountedDrops) {
  ScopedRegionName name("negative");
  Client& c = Client::Attach(name.name, SmallOptions());
  Counter& k = BuildCounter().Name("bytes_total").Help("B.").Register(c).Get();
  k.Add(2.5);
  k.Add(-1);
  k.Add(std::numeric_limits<double>::quiet_NaN());
  Reader r(name.name);
  EXPECT_EQ(r.Cell("bytes", {}), 2.5);
  EXPECT_EQ(r.FamilyDrops("bytes", shm::kDropInvalidValue), 2);
  EXPECT_EQ(r.FamilyDrops("bytes", shm::kDropSeriesLimit), 0);
}

TEST(ClientTest, HistogramPutsNaNAndLargeValuesInInf) {
  ScopedRegionName name("hist");
  Client& c = Client::Attach(name.name, SmallOptions());
  Histogram& h = BuildHistogram().Name("x_seconds").Help("X.").Buckets({1, 2}).Register(c).Get();
  h.Observe(1);  // le=1 is inclusive
  h.Observe(1.5);
  h.Observe(3);
  h.Observe(std::numeric_limits<double>::quiet_NaN());
  Reader r(name.name);
  EXPECT_EQ(r.Cell("x_seconds", {}, 0), 1);
  EXPECT_EQ(r.Cell("x_seconds", {}, 1), 1);
  EXPECT_EQ(r.Cell("x_seconds", {}, 2), 2);
}

TEST(ClientTest, HistogramWithManyBucketsUsesBinarySearchCorrectly) {
  ScopedRegionName name("histbig");
  Client& c = Client::Attach(name.name, SmallOptions());
  Histogram& h = BuildHistogram()
                     .Name("y_seconds")
                     .Help("Y.")
                     .Buckets(LinearBuckets(1, 1, 64))
                     .Register(c)
                     .Get();
  for (int v = 0; v <= 70; ++v) h.Observe(v);
  Reader r(name.name);
  EXPECT_EQ(r.Cell("y_seconds", {}, 0), 2);   // 0 and 1
  EXPECT_EQ(r.Cell("y_seconds", {}, 63), 1);  // 64
  EXPECT_EQ(r.Cell("y_seconds", {}, 64), 6);  // 65..70 in +Inf
}

TEST(ClientTest, SummaryMergesCountAndSum) {
  ScopedRegionName name("summary");
  Client& c = Client::Attach(name.name, SmallOptions());
  Summary& s = BuildSummary().Name("payload_bytes").Help("P.").Register(c).Get();
  s.Observe(10);
  std::thread([&] { s.Observe(32); }).join();
  Reader r(name.name);
  EXPECT_EQ(r.Cell("payload_bytes", {}, 0), 2);   // count
  EXPECT_EQ(r.Cell("payload_bytes", {}, 1), 42);  // sum
  EXPECT_NE(ErrorOf([&] {
              BuildSummary().Name("x_bytes").Help("X.").Exemplars().Register(c);
            }).find("exemplars"),
            std::string::npos);
}

// The table-driven bucket search must agree with the definition (first bound >= v, +Inf for NaN
// and above) on every kind of value, including the bounds themselves and their neighbours.
TEST(ClientTest, BucketTableAgreesWithPlainSearch) {
  ScopedRegionName name("buckets");
  Client& c = Client::Attach(name.name, SmallOptions());
  const std::vector<std::vector<double>> bound_sets = {
      DefaultBuckets(),
      ExponentialBuckets(1e-6, 2, 40),
      LinearBuckets(-50, 10, 11),
      {0},
      {-1e300, 1e300},
      {0.1, 0.1000000001, 0.2},
      {1, 1.1, 1.2, 1.3, 1.4, 1.5},  // 6 bounds in one octave: the table gives up, binary search
      LinearBuckets(0, 1, 128),      // the most a family may have: 64 in [64, 128)
      {-10, -5, -1},                 // negative bounds only
      {-0.0},                        // == 0.0: +0.0 must land in it too
      {}};                           // +Inf only
  std::mt19937_64 rng(3);
  for (size_t set = 0; set < bound_sets.size(); ++set) {
    const auto& bounds = bound_sets[set];
    auto& fam = BuildHistogram()
                    .Name("bt_" + std::to_string(set) + "_seconds")
                    .Help("B.")
                    .Buckets(bounds)
                    .Register(c);
    Histogram& h = fam.Get();
    std::vector<double> values = {0.0,
                                  -0.0,
                                  1e-320,
                                  -1e-320,
                                  std::numeric_limits<double>::infinity(),
                                  -std::numeric_limits<double>::infinity(),
                                  std::numeric_limits<double>::quiet_NaN()};
    for (double b : bounds) {
      values.push_back(b);
      values.push_back(std::nextafter(b, INFINITY));
      values.push_back(std::nextafter(b, -INFINITY));
    }
    for (int i = 0; i < 2000; ++i) {
      uint64_t bits = rng();
      double v;
      std::memcpy(&v, &bits, sizeof v);
      values.push_back(v);
      values.push_back(std::ldexp(static_cast<double>(rng() % 1000) / 1000.0,
                                  static_cast<int>(rng() % 60) - 30));
    }
    std::vector<double> expected(bounds.size() + 1, 0);
    for (double v : values) {
      size_t i = 0;
      while (i < bounds.size() && !(v <= bounds[i])) ++i;
      expected[i] += 1;
      h.Observe(v);
    }
    Reader r(name.name);
    for (size_t b = 0; b <= bounds.size(); ++b) {
      EXPECT_EQ(r.Cell(fam.name(), {}, static_cast<uint32_t>(b)), expected[b])
          << "set " << set << " bucket " << b;
    }
  }
}

// Counters stay integers while every amount is whole and switch to double bits after a fraction;
// either way, across writers and through a fold, the total is exact.
TEST(ClientTest, CounterEncodingSwitchesToFloatAndStaysExact) {
  ScopedRegionName name("encoding");
  Client& c = Client::Attach(name.name, SmallOptions());
  Counter& k = BuildCounter().Name("enc_total").Help("E.").Register(c).Get();
  k.Inc();
  k.Add(41);  // integer
  std::thread([&] {
    k.Add(0.5);  // this writer turns float
    k.Inc();
  }).join();     // and is folded
  k.Add(1e300);  // far beyond 2^63: float from here on
  Reader r(name.name);
  EXPECT_EQ(r.Cell("enc", {}), 1e300 + 43.5);
  Counter& big = BuildCounter().Name("big_total").Help("B.").Register(c).Get();
  big.Add(9007199254740992.0);  // 2^53: not exact as a double increment any more, stays exact as
                                // integer
  big.Inc();
  EXPECT_EQ(r.Cell("big", {}), 9007199254740992.0);  // served as a double: rounds to even
}

TEST(ClientTest, RegistrationErrorsNameTheMetric) {
  ScopedRegionName name("errors");
  Client& c = Client::Attach(name.name, SmallOptions());
  EXPECT_NE(
      ErrorOf([&] { BuildCounter().Name("bad name").Help("x").Register(c); }).find("\"bad name\""),
      std::string::npos);
  BuildCounter().Name("orders_total").Help("Orders.").Labels({"shop"}).Register(c);
  const std::string conflict =
      ErrorOf([&] { BuildGauge().Name("orders").Help("Orders.").Labels({"shop"}).Register(c); });
  EXPECT_NE(conflict.find("\"orders\""), std::string::npos) << conflict;
  const std::string labels = ErrorOf([&] {
    BuildCounter().Name("orders_total").Help("Orders.").Labels({"shop", "x"}).Register(c);
  });
  EXPECT_NE(labels.find("another definition"), std::string::npos) << labels;
  auto& fam = BuildCounter().Name("orders_total").Help("Orders.").Labels({"shop"}).Register(c);
  const std::string arity = ErrorOf([&] { fam.Add({"a", "b"}); });
  EXPECT_NE(arity.find("expected 1 label values (shop), got 2"), std::string::npos) << arity;
  const std::string utf8 = ErrorOf([&] { fam.Add({"\xff\xfe"}); });
  EXPECT_NE(utf8.find("UTF-8"), std::string::npos) << utf8;
  EXPECT_NE(ErrorOf([&] {
              BuildHistogram().Name("h_seconds").Help("h").Buckets({2, 1}).Register(c);
            }).find("increasing"),
            std::string::npos);
}

TEST(ClientTest, SameFamilyRegisteredTwiceIsTheSameObject) {
  ScopedRegionName name("twice");
  Client& c = Client::Attach(name.name, SmallOptions());
  auto& a = BuildCounter().Name("a_total").Help("A.").Register(c);
  auto& b = BuildCounter().Name("a").Help("A.").Register(c);
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(&a.Get(), &b.Get());
}

TEST(ClientTest, SeriesBeyondTheFamilyCapAreCountedDrops) {
  ScopedRegionName name("cap");
  Client& c = Client::Attach(name.name, SmallOptions());
  auto& fam = BuildCounter().Name("users_total").Help("U.").Labels({"id"}).MaxSeries(2).Register(c);
  for (int i = 0; i < 5; ++i) fam.Add({std::to_string(i)}).Add(10);
  Reader r(name.name);
  EXPECT_EQ(r.Cell("users", {"0"}), 10);
  EXPECT_EQ(r.Cell("users", {"1"}), 10);
  EXPECT_EQ(r.Cell("users", {"2"}), -1);  // never registered
  EXPECT_EQ(r.FamilyDrops("users", shm::kDropSeriesLimit), 3);
}

TEST(ClientTest, FullRegionNeverCrashesAndCountsDrops) {
  ScopedRegionName name("full");
  shm::RegionOptions o = SmallOptions();
  o.max_families = 4;
  Client& c = Client::Attach(name.name, o);
  for (int i = 0; i < 10; ++i) {
    auto& f = BuildGauge().Name(std::string("g").append(std::to_string(i))).Help("G.").Register(c);
    f.Get().Set(i);  // families 4..9 have no room: their updates are counted, not stored
  }
  EXPECT_EQ(c.region().header().dropped_region_full.load(), 6u);
  EXPECT_EQ(c.region().header().registration_errors.load(), 6u);
}

// The slot this process holds (state kActive, its pid), or -1 when it holds none or several.
int OwnActiveSlot(const shm::Region& region) {
  int found = -1;
  for (uint32_t i = 0; i < region.layout().max_slots; ++i) {
    const shm::SlotHeader* s = region.slot(i);
    if (s->state.load() != static_cast<uint32_t>(shm::SlotState::kActive) ||
        s->pid != static_cast<int32_t>(::getpid()))
      continue;
    if (found >= 0) return -1;
    found = static_cast<int>(i);
  }
  return found;
}

TEST(ClientTest, ForkedChildWritesIntoItsOwnSlot) {
  ScopedRegionName name("fork");
  Client& c = Client::Attach(name.name, SmallOptions());
  Counter& k = BuildCounter().Name("f_total").Help("F.").Register(c).Get();
  k.Add(7);  // master, before fork
  const int parent_slot = OwnActiveSlot(c.region());
  ASSERT_GE(parent_slot, 0);
  const pid_t child = ::fork();
  if (child == 0) {
    k.Add(10);
    const int mine = OwnActiveSlot(c.region());  // claimed by this update, under the child's pid
    _exit(mine >= 0 && mine != parent_slot ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  k.Add(5);
  Reader r(name.name);
  EXPECT_EQ(r.Cell("f", {}), 22);  // 7 + 5 from the master's slot, 10 from the dead child's
  EXPECT_EQ(OwnActiveSlot(c.region()), parent_slot);
}

// A handle holds what its hot path reads per series; the rest is one pointer to its family.
TEST(ClientTest, HandlesAreSmall) {
  EXPECT_EQ(sizeof(Counter), 24u);    // family, region, cell base, drop cell, dropped
  EXPECT_EQ(sizeof(Gauge), 24u);      // the same
  EXPECT_EQ(sizeof(Histogram), 24u);  // the same, and the short-path flag
  EXPECT_EQ(sizeof(Summary), 16u);    // no family constants
}

TEST(ClientTest, ResolveFindsExistingChildWithoutRegistering) {
  ScopedRegionName name("resolve");
  Client& c = Client::Attach(name.name, SmallOptions());
  auto& fam = BuildCounter().Name("r_total").Help("R.").Labels({"method", "code"}).Register(c);
  Counter& a = fam.Add({"GET", "200"});
  const uint32_t series = c.region().header().series_count.load();
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(&fam.Add({"GET", "200"}), &a);
  std::vector<std::string> owned{"GET", "200"};
  EXPECT_EQ(&fam.Add(owned), &a);
  EXPECT_EQ(c.region().header().series_count.load(), series);
  // Enough children to grow the lookup table several times.
  for (int i = 0; i < 300; ++i) fam.Add({"PUT", std::to_string(i)}).Inc();
  std::vector<Counter*> first;
  for (int i = 0; i < 300; ++i) first.push_back(&fam.Add({"PUT", std::to_string(i)}));
  for (int i = 0; i < 300; ++i) EXPECT_EQ(&fam.Add({"PUT", std::to_string(i)}), first[i]);
  EXPECT_EQ(&fam.Add({"GET", "200"}), &a);
}

}  // namespace
}  // namespace shmetrics
