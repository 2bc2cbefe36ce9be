// Churn ("nothing lost"): thousands of short-lived writers, each registering brand-new
// series in one counter family and incrementing them, while the real shmetrics-gateway binary is
// scraped continuously and is SIGKILLed and restarted several times. At the end a fresh gateway
// must serve every update exactly: each series' value is what its writer recorded, the sum is the
// total recorded, no series is duplicated or unknown, and no series ever went backwards (or
// vanished) across all the scrapes taken during the run, restarts included.
//
// Writers (a writer is one thread that registers kSeriesPerWriter new series and increments them),
// in forked processes of four kinds, in rotation:
//   exit           one writer, then the process exits normally;
//   killed         one writer, then the process SIGKILLs itself right after its increments;
//   threads+exit   kThreadsPerProcess writer threads that exit normally (their slots are released
//                  and folded while the process lives; one keeps the process's primary slot),
//                  then the process exits;
//   threads+killed the same, then the process SIGKILLs itself.
// Each writer stores what it completed for each series into a MAP_SHARED|MAP_ANONYMOUS array
// before its process can die, so the record survives it; writers are never killed mid-update,
// which makes the expected totals exact, not bounds.
//
// Size (the default, one round, takes about 5 s on a busy 2-core machine):
//   SHMETRICS_CHURN_WRITERS      writers per round (default 10000, at most kMaxWriters)
//   SHMETRICS_CHURN_SECONDS      repeat rounds, each on a fresh region and gateway, until this many
//                                seconds have passed (default 0: one round)
//   SHMETRICS_CHURN_CONCURRENCY  writer processes alive at once (default 4)
//   SHMETRICS_CHURN_KILLS        gateway SIGKILL+restarts per round (default 6)
// Rounds, not one ever longer run, because brand-new series cost pages for good: a region's page
// pool only hands pages out (shm/page_pool.h), and every writer slot keeps the pages of every
// cell range its successive writers touched, so a region eventually runs out of pages under
// endless series churn. That is a capacity limit (shown as no_page drops and a warning), not
// what this test is about.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "integration/test_support.h"
#include "shmetrics/shmetrics.h"

namespace shmetrics::integration {
namespace {

constexpr int kSeriesPerWriter = 2;
constexpr int kThreadsPerProcess = 3;
// The region each round's first gateway creates: 1024 writer slots, for the dead ones that pile
// up while no gateway runs, and pages enough for kMaxWriters (20000 writers took 59 MB of pages
// here). A failure must never be "the region was full".
constexpr int kMaxWriters = 16000;
constexpr const char* kFamily = "it_churn_ops";
const std::string kSeriesPrefix = "it_churn_ops_total{series=\"";
const std::vector<std::string> kGatewayArgs = {"--max-slots", "1024",   "--max-series",
                                               "65536",       "--size", "96M"};

enum class Kind { kExit, kKilled, kThreadsExit, kThreadsKilled };
constexpr Kind kKinds[] = {Kind::kExit, Kind::kKilled, Kind::kThreadsExit, Kind::kThreadsKilled};

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kExit:
      return "process that exited";
    case Kind::kKilled:
      return "process SIGKILLed after its increments";
    case Kind::kThreadsExit:
      return "thread (process exited)";
    case Kind::kThreadsKilled:
      return "thread (process then SIGKILLed)";
  }
  return "?";
}

bool Threaded(Kind kind) { return kind == Kind::kThreadsExit || kind == Kind::kThreadsKilled; }
bool Killed(Kind kind) { return kind == Kind::kKilled || kind == Kind::kThreadsKilled; }

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::max(0, std::atoi(v));
}

std::string SeriesLabel(int writer, int series) {
  // Appended, not "w" + ...: GCC 12 warns (-Wrestrict) on const char* + string&& falsely.
  std::string label = "w";
  label += std::to_string(writer);
  label += 's';
  label += std::to_string(series);
  return label;
}
std::string SeriesKey(int writer, int series) {
  return kSeriesPrefix + SeriesLabel(writer, series) + "\"}";
}
// 1..13 increments, different per series, so a value landing on the wrong series shows.
uint32_t Amount(int writer, int series) {
  return 1 + static_cast<uint32_t>(writer * 7 + series * 3) % 13;
}

// Every scrape's it_churn_ops series against the highest value seen before.
class Monotonicity {
 public:
  void Check(const Exposition& e, int scrape) {
    std::lock_guard lock(mu_);
    ++scrapes_;
    for (auto it = e.samples.lower_bound(kSeriesPrefix);
         it != e.samples.end() && it->first.starts_with(kSeriesPrefix); ++it) {
      double& last = last_[it->first];
      if (it->second < last)
        Note(it->first + " went from " + Str(last) + " to " + Str(it->second), scrape);
      last = std::max(last, it->second);
    }
    for (const auto& [series, value] : last_) {
      if (!e.Has(series)) Note(series + " (last " + Str(value) + ") vanished", scrape);
    }
    for (const std::string& d : e.duplicate_series) Note(d + " served twice", scrape);
  }
  int scrapes() const {
    std::lock_guard lock(mu_);
    return scrapes_;
  }
  std::vector<std::string> violations() const {
    std::lock_guard lock(mu_);
    return violations_;
  }
  int violation_count() const {
    std::lock_guard lock(mu_);
    return violation_count_;
  }

 private:
  static std::string Str(double v) {
    std::ostringstream out;
    out << v;
    return out.str();
  }
  void Note(const std::string& what, int scrape) {
    if (++violation_count_ <= 20)
      violations_.push_back("scrape " + std::to_string(scrape) + ": " + what);
  }

  mutable std::mutex mu_;
  std::unordered_map<std::string, double> last_;
  std::vector<std::string> violations_;
  int violation_count_ = 0;
  int scrapes_ = 0;
};

// Scrapes whatever gateway is current, as fast as it reasonably can, until stopped.
class Scraper {
 public:
  explicit Scraper(Monotonicity& mono) : mono_(mono), thread_([this] { Run(); }) {}
  ~Scraper() { Stop(); }
  void SetPort(uint16_t port) { port_ = port; }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int failed() const { return failed_; }

 private:
  void Run() {
    int n = 0;
    while (!stop_) {
      const uint16_t port = port_;
      if (port != 0) {
        const HttpResult r = HttpRequest(port, "GET", "/metrics", 2s);
        if (r.status == 200) {
          const Exposition e = ParseExposition(r.body);
          if (e.errors.empty()) mono_.Check(e, n++);
        } else {
          ++failed_;  // the gateway was being killed or restarted
        }
      }
      std::this_thread::sleep_for(10ms);
    }
  }

  Monotonicity& mono_;
  std::atomic<uint16_t> port_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> failed_{0};
  std::thread thread_;
};

// The body of a writer process: `n` writers from `first` on, as `kind` says. Runs in the child.
int WriterProcess(const std::string& region, std::atomic<uint32_t>* recorded, Kind kind, int first,
                  int n) {
  Client& client = Client::Attach(region);
  auto& family = BuildCounter()
                     .Name(kFamily)
                     .Help("Churn test increments.")
                     .Labels({"series"})
                     .MaxSeries(kMaxWriters * kSeriesPerWriter)
                     .Register(client);
  auto write = [&](int w) {
    for (int s = 0; s < kSeriesPerWriter; ++s) {
      Counter& c = family.Add({SeriesLabel(w, s)});
      const uint32_t amount = Amount(w, s);
      for (uint32_t i = 0; i < amount; ++i) c.Inc();
      recorded[w * kSeriesPerWriter + s].store(amount, std::memory_order_release);
    }
  };
  if (Threaded(kind)) {
    std::vector<std::thread> threads;
    for (int w = first; w < first + n; ++w) threads.emplace_back(write, w);
    for (auto& t : threads) t.join();
  } else {
    write(first);
  }
  if (Killed(kind)) ::kill(::getpid(), SIGKILL);  // right after the increments: no cleanup at all
  return 0;
}

struct Process {
  ChildProcess child;
  Kind kind;
  int first_writer;
};

struct ChurnConfig {
  int writers = 10000;
  int concurrency = 4;
  int kills = 6;
};

struct RoundResult {
  uint64_t lost = 0;
  int wrong_series = 0;
};

// One round on a fresh region: churn, kill and restart the gateway, then account for everything.
void RunRound(const ChurnConfig& config, RoundResult* result) {
  const int target_writers = config.writers;
  const int concurrency = config.concurrency;
  const int kills = config.kills;
  ScopedRegion region("churn");
  std::string error;
  std::unique_ptr<Gateway> gw = Gateway::Start(region.name(), kGatewayArgs, &error);
  ASSERT_NE(gw, nullptr) << error;

  // recorded[writer * kSeriesPerWriter + series]: increments completed, stored by the writer.
  SharedBlock block(sizeof(std::atomic<uint32_t>) * kMaxWriters * kSeriesPerWriter);
  auto* recorded = static_cast<std::atomic<uint32_t>*>(block.data());
  std::vector<Kind> kind_of(kMaxWriters);

  Monotonicity mono;
  Scraper scraper(mono);
  scraper.SetPort(gw->port());

  const auto start = Clock::now();
  auto progress = [&](int spawned) { return static_cast<double>(spawned) / target_writers; };

  std::deque<Process> live;
  std::vector<std::string> child_failures;
  auto reap = [&](bool all) {
    while (!live.empty() && (all || static_cast<int>(live.size()) >= concurrency)) {
      bool any = false;
      for (auto it = live.begin(); it != live.end();) {
        const std::optional<int> st = it->child.Wait(0s);
        if (!st) {
          ++it;
          continue;
        }
        const bool ok =
            Killed(it->kind) ? WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL : ExitedWith(*st, 0);
        if (!ok && child_failures.size() < 20) {
          child_failures.push_back("writer " + std::to_string(it->first_writer) + " (" +
                                   KindName(it->kind) + "): " + DescribeStatus(*st));
        }
        it = live.erase(it);
        any = true;
      }
      if (!any) std::this_thread::sleep_for(1ms);
    }
  };

  const std::string region_name = region.name();
  int writers = 0, processes = 0, next_kill = 1, gateway_kills = 0;
  auto spawn = [&](Kind kind, int n) {
    reap(false);
    const int first = writers;
    for (int w = first; w < first + n; ++w) kind_of[w] = kind;
    live.push_back(
        {ChildProcess::Fork([&] { return WriterProcess(region_name, recorded, kind, first, n); }),
         kind, first});
    writers += n;
    ++processes;
  };
  while (writers < target_writers) {
    const Kind kind = kKinds[processes % 4];
    const int n = Threaded(kind) ? kThreadsPerProcess : 1;
    if (writers + n > target_writers) break;
    spawn(kind, n);

    if (next_kill <= kills && progress(writers) >= static_cast<double>(next_kill) / (kills + 1)) {
      ++next_kill;
      ++gateway_kills;
      scraper.SetPort(0);
      // Sometimes while a scrape (which reaps and folds first) is in flight.
      const int fd = gateway_kills % 2 ? SendRequestNoWait(gw->port(), "/metrics") : -1;
      gw->Kill();
      if (fd >= 0) ::close(fd);
      // Writers keep starting and dying while no gateway is up.
      for (int i = 0; i < concurrency * 2 && writers < target_writers; ++i) {
        spawn(Kind::kKilled, 1);
      }
      gw = Gateway::Start(region_name, kGatewayArgs, &error);
      ASSERT_NE(gw, nullptr) << "restart " << gateway_kills << " failed: " << error;
      scraper.SetPort(gw->port());
    }
  }
  reap(true);
  const auto churn_time = Clock::now() - start;
  EXPECT_TRUE(child_failures.empty()) << ::testing::PrintToString(child_failures);

  // The last crash, then a final gateway that folds everything still pending.
  scraper.SetPort(0);
  gw->Kill();
  gw = Gateway::Start(region_name, kGatewayArgs, &error);
  ASSERT_NE(gw, nullptr) << "final start failed: " << error;
  scraper.SetPort(gw->port());
  Exposition final_scrape;
  const bool folded = WaitFor(
      [&] {
        final_scrape = Scrape(*gw);
        return final_scrape.errors.empty() &&
               final_scrape.Value("shmetrics_workers{state=\"live\"}") == 0.0 &&
               final_scrape.Value("shmetrics_writers{state=\"live\"}") == 0.0;
      },
      30s);
  scraper.Stop();
  ASSERT_TRUE(folded) << "the final gateway did not fold every dead writer within 30 s: "
                      << ::testing::PrintToString(final_scrape.errors) << "\n"
                      << gw->Log().substr(0, 4000);
  mono.Check(final_scrape, -1);

  // The test's own preconditions: nothing dropped for lack of room, so any difference below is a
  // loss (or a double count) in the fold, not a full region.
  for (const auto& [series, value] : final_scrape.WithPrefix("shmetrics_dropped_updates_total")) {
    EXPECT_EQ(value, 0) << series << ": the test's region was too small";
  }
  EXPECT_EQ(final_scrape.Value("shmetrics_registration_errors_total").value_or(0), 0);

  // Exact accounting.
  uint64_t expected_total = 0, served_total = 0, lost = 0, extra = 0;
  int wrong_series = 0;
  std::vector<std::string> wrong;
  std::unordered_map<std::string, bool> expected_keys;
  for (int w = 0; w < writers; ++w) {
    for (int s = 0; s < kSeriesPerWriter; ++s) {
      const uint32_t want = recorded[w * kSeriesPerWriter + s].load(std::memory_order_acquire);
      const std::string key = SeriesKey(w, s);
      expected_keys[key] = true;
      expected_total += want;
      const std::optional<double> got = final_scrape.Value(key);
      const double have = got.value_or(0);
      if (have != want) {
        ++wrong_series;
        if (have < want) lost += static_cast<uint64_t>(want - have);
        if (have > want) extra += static_cast<uint64_t>(have - want);
        if (wrong.size() < 20) {
          std::ostringstream line;
          line << key << ": expected " << want << ", got "
               << (got ? std::to_string(static_cast<uint64_t>(have)) : "nothing (no series)")
               << "; writer was a " << KindName(kind_of[w]);
          wrong.push_back(line.str());
        }
      }
    }
  }
  std::vector<std::string> unknown;
  for (const auto& [series, value] : final_scrape.WithPrefix(kSeriesPrefix)) {
    served_total += static_cast<uint64_t>(value);
    if (!expected_keys.count(series) && unknown.size() < 20) unknown.push_back(series);
  }
  const double loss_pct = expected_total ? 100.0 * double(lost) / double(expected_total) : 0;
  std::cout << "churn round: " << writers << " writers in " << processes << " processes, "
            << std::chrono::duration<double>(churn_time).count() << " s, " << gateway_kills
            << " gateway SIGKILLs, " << mono.scrapes() << " scrapes checked (" << scraper.failed()
            << " failed during restarts); recorded " << expected_total << " increments, served "
            << served_total << "; lost " << lost << " (" << loss_pct << "%) in " << wrong_series
            << " series, " << extra << " extra\n";
  result->lost = lost;
  result->wrong_series = wrong_series;

  EXPECT_EQ(wrong_series, 0) << "lost " << lost << " of " << expected_total << " increments ("
                             << loss_pct << "%) and " << extra << " extra, in " << wrong_series
                             << " series; the first of them:\n"
                             << ::testing::PrintToString(wrong);
  EXPECT_EQ(served_total, expected_total);
  EXPECT_TRUE(unknown.empty()) << "series nobody wrote: " << ::testing::PrintToString(unknown);
  EXPECT_TRUE(final_scrape.duplicate_series.empty())
      << ::testing::PrintToString(final_scrape.duplicate_series);
  EXPECT_EQ(mono.violation_count(), 0) << "across " << mono.scrapes() << " scrapes:\n"
                                       << ::testing::PrintToString(mono.violations());
  EXPECT_GE(mono.scrapes(), 10) << "too few scrapes to check monotonicity";
}

TEST(ChurnTest, ThousandsOfShortLivedWritersAreAccountedForExactly) {
  ChurnConfig config;
  config.writers = std::min(kMaxWriters, EnvInt("SHMETRICS_CHURN_WRITERS", config.writers));
  config.concurrency = std::max(1, EnvInt("SHMETRICS_CHURN_CONCURRENCY", config.concurrency));
  config.kills = EnvInt("SHMETRICS_CHURN_KILLS", config.kills);
  const auto deadline = Clock::now() + std::chrono::seconds(EnvInt("SHMETRICS_CHURN_SECONDS", 0));
  ASSERT_GT(config.writers, 0);
  int rounds = 0;
  RoundResult total;
  do {
    SCOPED_TRACE("round " + std::to_string(rounds + 1));
    RoundResult r;
    RunRound(config, &r);
    ++rounds;
    total.lost += r.lost;
    total.wrong_series += r.wrong_series;
  } while (!HasFailure() && Clock::now() < deadline);  // stop at the first round that fails
  RecordProperty("rounds", rounds);
  RecordProperty("lost_increments", static_cast<int>(total.lost));
  RecordProperty("wrong_series", total.wrong_series);
}

}  // namespace
}  // namespace shmetrics::integration
