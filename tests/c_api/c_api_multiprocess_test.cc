// End-to-end through the C ABI: real fork()ed workers write through libshmetrics.so.1's C
// functions, the real shmetrics-gateway binary merges them, and the tests read /metrics over a
// real socket. Mirrors the exact-total and SIGKILL tests of tests/integration/multiprocess_test.cc.
//
// The test process itself never attaches to a region: only its forked children do.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "integration/test_support.h"
#include "shmetrics/shmetrics_c.h"

namespace shmetrics::integration {
namespace {

constexpr auto kReadyTimeout = 20s;
const std::string kLiveWorkers = "shmetrics_workers{state=\"live\"}";
const std::string kLiveWriters = "shmetrics_writers{state=\"live\"}";

#define START_GATEWAY(var, region)                                         \
  std::string var##_error;                                                 \
  std::unique_ptr<Gateway> var = Gateway::Start(region, {}, &var##_error); \
  ASSERT_NE(var, nullptr) << var##_error

Exposition MustScrape(const Gateway& gw) {
  Exposition e = Scrape(gw);
  EXPECT_TRUE(e.errors.empty()) << ::testing::PrintToString(e.errors) << "\ngateway log:\n"
                                << gw.Log();
  EXPECT_TRUE(e.duplicate_series.empty()) << ::testing::PrintToString(e.duplicate_series);
  return e;
}

double ValueOr(const Exposition& e, const std::string& series, double fallback) {
  return e.Value(series).value_or(fallback);
}

// In a child: a failed control-plane call ends it with this exit code after printing why.
#define CHILD_CHECK(call)                                                       \
  do {                                                                          \
    if (int rc_ = (call); rc_ < 0) {                                            \
      std::fprintf(stderr, "%s: %d: %s\n", #call, rc_, shmetrics_last_error()); \
      return 5;                                                                 \
    }                                                                           \
  } while (0)

shmetrics_family_opts Opts(const char* help) {
  shmetrics_family_opts o = {};
  o.sz = sizeof o;
  o.help = help;
  return o;
}

// --- ExactTotals -------------------------------------------------------------------------------

TEST(CApiMultiProcessTest, ExactTotalsOverWorkersThreadsAndIncrements) {
  ScopedRegion region("c-exact");
  START_GATEWAY(gw, region.name());
  constexpr int kWorkers = 4, kThreads = 3, kIncrements = 50000;
  Pipe ready, stop;
  std::vector<ChildProcess> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.push_back(ChildProcess::Fork([&] {
      stop.CloseWrite();
      shmetrics_client* client = nullptr;
      CHILD_CHECK(shmetrics_attach(region.name().c_str(), nullptr, &client));
      shmetrics_family* ops_family = nullptr;
      const shmetrics_family_opts ops_opts = Opts("Ops.");
      CHILD_CHECK(
          shmetrics_register(client, SHMETRICS_COUNTER, "it_c_exact_ops", &ops_opts, &ops_family));
      shmetrics_counter* ops = nullptr;
      CHILD_CHECK(shmetrics_counter_labels(ops_family, 0, nullptr, nullptr, &ops));
      const double bounds[] = {1, 2, 5};
      shmetrics_family_opts value_opts = Opts("Observed values.");
      value_opts.bucket_count = 3;
      value_opts.buckets = bounds;
      shmetrics_family* value_family = nullptr;
      CHILD_CHECK(shmetrics_register(client, SHMETRICS_HISTOGRAM, "it_c_exact_value", &value_opts,
                                     &value_family));
      shmetrics_histogram* values = nullptr;
      CHILD_CHECK(shmetrics_histogram_labels(value_family, 0, nullptr, nullptr, &values));
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&] {
          for (int i = 0; i < kIncrements; ++i) {
            shmetrics_counter_inc(ops);
            shmetrics_histogram_observe(values, i % 4);  // 0, 1, 2, 3: sum per thread 75000
          }
        });
      }
      for (auto& t : threads) t.join();
      if (!ready.Write("r")) return 3;
      BlockUntilEof(stop.read_fd());
      return 0;
    }));
  }
  ASSERT_TRUE(ready.Read(kWorkers, kReadyTimeout)) << "workers did not finish";

  constexpr double kTotal = double{kWorkers} * kThreads * kIncrements;
  constexpr double kPerValue = kTotal / 4;
  auto check = [&](const Exposition& e, const char* when) {
    SCOPED_TRACE(when);
    EXPECT_EQ(ValueOr(e, "it_c_exact_ops_total", -1), kTotal);
    EXPECT_EQ(e.types.count("it_c_exact_ops_total"), 1u);
    EXPECT_EQ(ValueOr(e, "it_c_exact_value_count", -1), kTotal);
    EXPECT_EQ(ValueOr(e, "it_c_exact_value_sum", -1), kPerValue * (0 + 1 + 2 + 3));
    EXPECT_EQ(ValueOr(e, "it_c_exact_value_bucket{le=\"1.0\"}", -1), 2 * kPerValue);
    EXPECT_EQ(ValueOr(e, "it_c_exact_value_bucket{le=\"2.0\"}", -1), 3 * kPerValue);
    EXPECT_EQ(ValueOr(e, "it_c_exact_value_bucket{le=\"5.0\"}", -1), 4 * kPerValue);
    EXPECT_EQ(ValueOr(e, "it_c_exact_value_bucket{le=\"+Inf\"}", -1), kTotal);
  };

  const Exposition live = MustScrape(*gw);
  check(live, "workers alive");
  EXPECT_EQ(ValueOr(live, kLiveWorkers, -1), kWorkers);
  EXPECT_EQ(ValueOr(live, kLiveWriters, -1), kWorkers);
  EXPECT_EQ(ValueOr(live, "shmetrics_writers_folded_total", -1), kWorkers * (kThreads - 1));

  stop.CloseWrite();
  for (auto& w : workers) {
    const std::optional<int> st = w.Wait(10s);
    ASSERT_TRUE(st) << "worker " << w.pid() << " did not exit";
    EXPECT_TRUE(ExitedWith(*st, 0)) << DescribeStatus(*st);
  }
  Exposition folded;
  EXPECT_TRUE(WaitFor(
      [&] {
        folded = MustScrape(*gw);
        return ValueOr(folded, kLiveWorkers, -1) == 0;
      },
      5s));
  check(folded, "workers exited and folded");
  EXPECT_EQ(ValueOr(folded, "shmetrics_workers_dead_total", -1), kWorkers);
  EXPECT_EQ(ValueOr(folded, "shmetrics_writers_folded_total", -1), kWorkers * kThreads);
}

// --- Killed workers ----------------------------------------------------------------------------

// As ChaosFleet in multiprocess_test.cc, through the C ABI: "exact" workers add exactly
// kExactIncrements and park (then are killed); "spinning" workers add until SIGKILLed, storing
// their progress in shared memory after every add, so the true total lies in
// [progress, progress + threads x spinners].
class CChaosFleet {
 public:
  static constexpr uint64_t kExactIncrements = 20000;
  static constexpr int kSpinThreads = 2;
  static constexpr int kMaxSpinners = 64;
  static constexpr const char* kExact = "it_c_chaos_ops_total{kind=\"exact\"}";
  static constexpr const char* kSpinning = "it_c_chaos_ops_total{kind=\"spinning\"}";

  explicit CChaosFleet(std::string region)
      : region_(std::move(region)),
        progress_(sizeof(std::atomic<uint64_t>) * kMaxSpinners * kSpinThreads) {}

  void SpawnExact() {
    exact_.push_back(ChildProcess::Fork([this] {
      stop_.CloseWrite();
      shmetrics_counter* ops = nullptr;
      if (int rc = Resolve("exact", &ops); rc != 0) return rc;
      for (uint64_t i = 0; i < kExactIncrements; ++i) shmetrics_counter_inc(ops);
      if (!exact_ready_.Write("e")) return 3;
      BlockUntilEof(stop_.read_fd());
      return 0;
    }));
    ++exact_spawned_;
  }

  void SpawnSpinning() {
    ASSERT_LT(spinning_spawned_, kMaxSpinners);
    std::atomic<uint64_t>* progress = Progress() + spinning_spawned_ * kSpinThreads;
    spinning_.push_back(ChildProcess::Fork([this, progress] {
      stop_.CloseWrite();
      shmetrics_counter* ops = nullptr;
      if (int rc = Resolve("spinning", &ops); rc != 0) return rc;
      std::atomic<int> started{0};
      std::vector<std::thread> threads;
      for (int t = 0; t < kSpinThreads; ++t) {
        threads.emplace_back([&, t] {
          for (uint64_t n = 1;; ++n) {
            shmetrics_counter_add(ops, 1);
            progress[t].store(n, std::memory_order_relaxed);
            if (n == 1) started.fetch_add(1);
            if (n % 256 == 0) ::usleep(50);  // leave the two cores some air
          }
        });
      }
      while (started.load() < kSpinThreads) ::usleep(100);
      spin_ready_.Write("s");
      for (auto& t : threads) t.join();  // never: they spin until killed
      return 0;
    }));
    ++spinning_spawned_;
  }

  bool AwaitAll() {
    if (const uint64_t missing = exact_spawned_ - exact_parked_; missing > 0) {
      if (!exact_ready_.Read(missing, kReadyTimeout)) return false;
      exact_parked_ = exact_spawned_;
    }
    if (const uint64_t missing = spinning_spawned_ - spinning_started_; missing > 0) {
      if (!spin_ready_.Read(missing, kReadyTimeout)) return false;
      spinning_started_ = spinning_spawned_;
    }
    return true;
  }

  void KillOldestExact() { KillOldest(exact_); }
  void KillOldestSpinning() { KillOldest(spinning_); }
  void KillAll() {
    while (!exact_.empty()) KillOldest(exact_);
    while (!spinning_.empty()) KillOldest(spinning_);
  }

  uint64_t exact_spawned() const { return exact_spawned_; }
  uint64_t spinning_spawned() const { return spinning_spawned_; }
  uint64_t workers_spawned() const { return exact_spawned_ + spinning_spawned_; }
  uint64_t writers_spawned() const { return exact_spawned_ + kSpinThreads * spinning_spawned_; }
  uint64_t SpinningProgress() {
    uint64_t sum = 0;
    for (uint64_t i = 0; i < spinning_spawned_ * kSpinThreads; ++i) sum += Progress()[i].load();
    return sum;
  }

 private:
  // In a child: attach, register the family and resolve `kind`; 0, or the child's exit code.
  int Resolve(const char* kind, shmetrics_counter** out) {
    shmetrics_client* client = nullptr;
    CHILD_CHECK(shmetrics_attach(region_.c_str(), nullptr, &client));
    const char* labels[] = {"kind"};
    shmetrics_family_opts o = Opts("Chaos ops.");
    o.label_count = 1;
    o.label_names = labels;
    shmetrics_family* family = nullptr;
    CHILD_CHECK(shmetrics_register(client, SHMETRICS_COUNTER, "it_c_chaos_ops", &o, &family));
    CHILD_CHECK(shmetrics_counter_labels(family, 1, &kind, nullptr, out));
    return 0;
  }
  std::atomic<uint64_t>* Progress() {
    return static_cast<std::atomic<uint64_t>*>(progress_.data());
  }
  static void KillOldest(std::deque<ChildProcess>& q) {
    if (q.empty()) return;
    const int st = q.front().KillAndWait();
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
        << "worker " << q.front().pid() << " " << DescribeStatus(st) << " before the kill";
    q.pop_front();
  }

  std::string region_;
  SharedBlock progress_;
  Pipe exact_ready_, spin_ready_, stop_;
  std::deque<ChildProcess> exact_, spinning_;
  uint64_t exact_spawned_ = 0, exact_parked_ = 0, spinning_spawned_ = 0, spinning_started_ = 0;
};

TEST(CApiMultiProcessTest, KilledWorkersNeverGoBackwardsAndTotalsStayExact) {
  ScopedRegion region("c-kill");
  START_GATEWAY(gw, region.name());
  CChaosFleet fleet(region.name());
  for (int i = 0; i < 2; ++i) {
    fleet.SpawnExact();
    fleet.SpawnSpinning();
  }
  std::map<std::string, double> last;
  int checks = 0;
  auto monotonic = [&](const Exposition& e, const std::string& when) {
    for (const std::string s : {CChaosFleet::kExact, CChaosFleet::kSpinning,
                                "shmetrics_workers_dead_total", "shmetrics_writers_folded_total"}) {
      const std::optional<double> v = e.Value(s);
      if (!v) {
        EXPECT_EQ(last.count(s), 0u) << s << " disappeared " << when;
        continue;
      }
      EXPECT_GE(*v, last[s]) << s << " went backwards " << when;
      last[s] = std::max(last[s], *v);
      ++checks;
    }
  };
  constexpr int kRounds = 8;  // 16 kills
  for (int round = 0; round < kRounds; ++round) {
    ASSERT_TRUE(fleet.AwaitAll()) << "round " << round;
    for (int s = 0; s < 3; ++s) {
      monotonic(MustScrape(*gw), "round " + std::to_string(round));
      std::this_thread::sleep_for(30ms);
    }
    fleet.KillOldestSpinning();  // mid-increment
    monotonic(MustScrape(*gw), "right after killing a spinning worker");
    fleet.KillOldestExact();  // parked
    fleet.SpawnSpinning();
    fleet.SpawnExact();
    monotonic(MustScrape(*gw), "after respawning");
  }
  ASSERT_TRUE(fleet.AwaitAll());
  fleet.KillAll();

  const double exact = static_cast<double>(fleet.exact_spawned() * CChaosFleet::kExactIncrements);
  Exposition e;
  const bool settled = WaitFor(
      [&] {
        e = MustScrape(*gw);
        return ValueOr(e, kLiveWorkers, -1) == 0 &&
               ValueOr(e, "shmetrics_workers_dead_total", -1) ==
                   static_cast<double>(fleet.workers_spawned());
      },
      5s);
  EXPECT_TRUE(settled) << "not settled within 5 s; gateway log:\n" << gw->Log();
  EXPECT_EQ(ValueOr(e, CChaosFleet::kExact, -1), exact);
  EXPECT_EQ(ValueOr(e, kLiveWriters, -1), 0);
  EXPECT_EQ(ValueOr(e, "shmetrics_writers_folded_total", -1),
            static_cast<double>(fleet.writers_spawned()));
  const double progress = static_cast<double>(fleet.SpinningProgress());
  const double spinning = ValueOr(e, CChaosFleet::kSpinning, -1);
  EXPECT_GE(spinning, progress);
  EXPECT_LE(spinning, progress + CChaosFleet::kSpinThreads * fleet.spinning_spawned());
  EXPECT_GT(progress, 0);
  monotonic(MustScrape(*gw), "at the end");
  EXPECT_GT(checks, 4 * kRounds * 3);
}

// --- Every type ----------------------------------------------------------------------------------

// Two workers write every metric type through the C ABI; then one is SIGKILLed: counters keep its
// share, a livesum gauge drops it, a sum gauge keeps it.
TEST(CApiMultiProcessTest, EveryTypeMergesAndALiveSumGaugeDropsAKilledWorker) {
  ScopedRegion region("c-types");
  START_GATEWAY(gw, region.name());
  constexpr int kWorkers = 2;
  Pipe ready, stop;
  std::vector<ChildProcess> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.push_back(ChildProcess::Fork([&, w] {
      stop.CloseWrite();
      shmetrics_client* client = nullptr;
      CHILD_CHECK(shmetrics_attach(region.name().c_str(), nullptr, &client));
      shmetrics_family* f = nullptr;

      shmetrics_family_opts o = Opts("Requests.");
      o.exemplars = 1;
      CHILD_CHECK(shmetrics_register(client, SHMETRICS_COUNTER, "it_c_requests", &o, &f));
      shmetrics_counter* requests = nullptr;
      CHILD_CHECK(shmetrics_counter_labels(f, 0, nullptr, nullptr, &requests));
      const char* names[] = {"trace_id"};
      const char* values[] = {"c0ffee"};
      shmetrics_counter_add_exemplar(requests, 3, 1, names, values);
      // In two steps, as prometheus_client's value API makes them: the add, then its exemplar.
      CHILD_CHECK(shmetrics_register(client, SHMETRICS_COUNTER, "it_c_two_step", &o, &f));
      shmetrics_counter* two_step = nullptr;
      CHILD_CHECK(shmetrics_counter_labels(f, 0, nullptr, nullptr, &two_step));
      const char* two_step_values[] = {"beef"};
      shmetrics_counter_add(two_step, 2);
      shmetrics_counter_set_exemplar(two_step, 2, 1, names, two_step_values);

      o = Opts("Busy.");  // default mode: livesum
      CHILD_CHECK(shmetrics_register(client, SHMETRICS_GAUGE, "it_c_busy", &o, &f));
      shmetrics_gauge* busy = nullptr;
      CHILD_CHECK(shmetrics_gauge_labels(f, 0, nullptr, nullptr, &busy));
      shmetrics_gauge_set(busy, 10);
      shmetrics_gauge_add(busy, w + 1.0);  // 11 and 12

      o = Opts("Jobs ever queued.");
      o.gauge_mode = SHMETRICS_GAUGE_SUM;
      CHILD_CHECK(shmetrics_register(client, SHMETRICS_GAUGE, "it_c_queued", &o, &f));
      shmetrics_gauge* queued = nullptr;
      CHILD_CHECK(shmetrics_gauge_labels(f, 0, nullptr, nullptr, &queued));
      shmetrics_gauge_set(queued, 4);

      o = Opts("Peak.");
      o.gauge_mode = SHMETRICS_GAUGE_MAX;
      CHILD_CHECK(shmetrics_register(client, SHMETRICS_GAUGE, "it_c_peak", &o, &f));
      shmetrics_gauge* peak = nullptr;
      CHILD_CHECK(shmetrics_gauge_labels(f, 0, nullptr, nullptr, &peak));
      shmetrics_gauge_set(peak, 100 + w);

      o = Opts("Latency.");
      o.native = 1;
      o.native_schema = 3;
      o.native_zero_threshold = 1e-9;
      CHILD_CHECK(shmetrics_register(client, SHMETRICS_HISTOGRAM, "it_c_latency", &o, &f));
      shmetrics_histogram* latency = nullptr;
      CHILD_CHECK(shmetrics_histogram_labels(f, 0, nullptr, nullptr, &latency));
      shmetrics_histogram_observe(latency, 0.25);
      shmetrics_histogram_observe(latency, 0.5);

      o = Opts("Sizes.");
      CHILD_CHECK(shmetrics_register(client, SHMETRICS_SUMMARY, "it_c_size", &o, &f));
      shmetrics_summary* size = nullptr;
      CHILD_CHECK(shmetrics_summary_labels(f, 0, nullptr, nullptr, &size));
      shmetrics_summary_observe(size, 100);
      if (!ready.Write("r")) return 3;
      BlockUntilEof(stop.read_fd());
      return 0;
    }));
  }
  ASSERT_TRUE(ready.Read(kWorkers, kReadyTimeout)) << "workers did not write";

  const Exposition e = MustScrape(*gw);
  EXPECT_EQ(ValueOr(e, "it_c_requests_total", -1), 6);
  EXPECT_EQ(ValueOr(e, "it_c_two_step_total", -1), 4);  // the exemplar added nothing
  EXPECT_EQ(ValueOr(e, "it_c_busy", -1), 23);
  EXPECT_EQ(ValueOr(e, "it_c_queued", -1), 8);
  EXPECT_EQ(ValueOr(e, "it_c_peak", -1), 101);
  EXPECT_EQ(ValueOr(e, "it_c_latency_count", -1), 4);
  EXPECT_EQ(ValueOr(e, "it_c_latency_sum", -1), 1.5);
  EXPECT_EQ(ValueOr(e, "it_c_size_count", -1), 2);
  EXPECT_EQ(ValueOr(e, "it_c_size_sum", -1), 200);
  const HttpResult om = gw->Get("/metrics?format=openmetrics");
  ASSERT_EQ(om.status, 200) << om.error;
  EXPECT_NE(om.body.find("trace_id=\"c0ffee\""), std::string::npos) << om.body;
  EXPECT_NE(om.body.find("it_c_two_step_total 4.0 # {trace_id=\"beef\"} 2.0 "), std::string::npos)
      << om.body;

  ASSERT_TRUE(workers[1].running());
  workers[1].KillAndWait();
  Exposition after;
  EXPECT_TRUE(WaitFor(
      [&] {
        after = MustScrape(*gw);
        return ValueOr(after, kLiveWorkers, -1) == 1;
      },
      5s));
  EXPECT_EQ(ValueOr(after, "it_c_requests_total", -1), 6);
  EXPECT_EQ(ValueOr(after, "it_c_busy", -1), 11);
  EXPECT_EQ(ValueOr(after, "it_c_queued", -1), 8);
  EXPECT_EQ(ValueOr(after, "it_c_latency_count", -1), 4);
  EXPECT_EQ(ValueOr(after, "it_c_size_sum", -1), 200);
}

}  // namespace
}  // namespace shmetrics::integration
