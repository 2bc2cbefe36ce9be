// The helper modes of shmetrics_bench that bench/compare_python_multiprocess.py calls for the
// shmetrics side of its comparisons, so that side is measured by the same code as the benchmarks
// rather than re-implemented in Python:
//
//   shmetrics_bench --helper=write  [--iterations N] [--rounds R]
//       ns per Counter::Inc in a forked worker process; prints one JSON object
//   shmetrics_bench --helper=scrape --series S --workers W [--dead D] [--scrapes R]
//       wall time of one /metrics body with W live worker processes (+ D dead, folded); JSON
//   shmetrics_bench --helper=memory --series S --workers W [--fraction F]
//       region bytes per (series, writer that touched it) when each writer touches a random
//       fraction F of the series; JSON
#include "bench_helpers.h"

#include <benchmark/benchmark.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench_support.h"

namespace shmetrics::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct HelperArgs {
  std::string mode;
  std::map<std::string, double> values;
  double Get(const std::string& key, double fallback) const {
    auto it = values.find(key);
    return it == values.end() ? fallback : it->second;
  }
};

[[noreturn]] void Usage(const std::string& error) {
  std::fprintf(
      stderr,
      "shmetrics_bench: %s\n"
      "usage: shmetrics_bench [benchmark flags]\n"
      "       shmetrics_bench --helper=write [--iterations N] [--rounds R]\n"
      "       shmetrics_bench --helper=scrape --series S --workers W [--dead D] [--scrapes R]\n"
      "       shmetrics_bench --helper=memory --series S --workers W [--fraction F]\n",
      error.c_str());
  std::exit(2);
}

HelperArgs ParseHelperArgs(int argc, char** argv) {
  HelperArgs a;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.starts_with("--helper=")) {
      a.mode = arg.substr(9);
      continue;
    }
    if (!arg.starts_with("--") || i + 1 >= argc)
      Usage("unexpected argument '" + std::string(arg) + "'");
    const std::string_view text = argv[++i];
    double v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || p != text.data() + text.size() || v < 0) {
      Usage("invalid value for " + std::string(arg) + ": '" + std::string(text) + "'");
    }
    a.values[std::string(arg.substr(2))] = v;
  }
  static const std::map<std::string, std::vector<std::string>> known = {
      {"write", {"iterations", "rounds"}},
      {"scrape", {"series", "workers", "dead", "scrapes"}},
      {"memory", {"series", "workers", "fraction"}}};
  auto it = known.find(a.mode);
  if (it == known.end()) Usage("unknown helper '" + a.mode + "' (write, scrape, memory)");
  for (const auto& [key, v] : a.values) {
    if (std::find(it->second.begin(), it->second.end(), key) == it->second.end()) {
      Usage("--helper=" + a.mode + " takes no --" + key);
    }
  }
  return a;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Counter::Inc timed in a forked worker (the way a pre-forked server's worker updates it): the
// master registers and resolves the child handle before fork(), the worker's first update claims
// its slot, then R rounds of N increments are timed. Prints the median round.
int HelperWrite(const HelperArgs& a) {
  const auto iterations = static_cast<uint64_t>(a.Get("iterations", 50'000'000));
  const auto rounds = static_cast<int>(std::max(1.0, a.Get("rounds", 5)));
  Client& client = Client::Attach(NewRegionName("write-helper"), SizedOptions(1, 4));
  Counter& c = BuildCounter()
                   .Name("bench_requests_total")
                   .Help("Requests.")
                   .Labels({"route", "code"})
                   .Register(client)
                   .Add({"/api/v1/resource/0", "200"});
  int fds[2];
  if (::pipe(fds) != 0) return 1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    c.Inc();
    std::vector<double> ns;
    for (int r = 0; r < rounds; ++r) {
      const auto t0 = Clock::now();
      for (uint64_t i = 0; i < iterations; ++i) {
        c.Inc();
        benchmark::ClobberMemory();
      }
      ns.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() /
                   double(iterations));
    }
    const double result = Median(ns);
    ::_exit(::write(fds[1], &result, sizeof result) == sizeof result ? 0 : 1);
  }
  ::close(fds[1]);
  double result = 0;
  const bool ok = ::read(fds[0], &result, sizeof result) == sizeof result;
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!ok || status != 0) {
    std::fprintf(stderr, "shmetrics_bench: the write worker failed\n");
    return 1;
  }
  std::printf("{\"ns_per_inc\": %.4f, \"iterations\": %llu, \"rounds\": %d}\n", result,
              static_cast<unsigned long long>(iterations), rounds);
  return 0;
}

// One /metrics body over W live worker processes (and D dead, folded ones), each of which
// incremented every series: the median wall time of R scrapes.
int HelperScrape(const HelperArgs& a) {
  const auto series = static_cast<uint32_t>(a.Get("series", 0));
  const auto workers = static_cast<uint32_t>(a.Get("workers", 0));
  const auto dead = static_cast<uint32_t>(a.Get("dead", 0));
  const auto scrapes = static_cast<int>(std::max(1.0, a.Get("scrapes", 10)));
  if (series == 0 || workers == 0) Usage("--helper=scrape needs --series and --workers > 0");
  ScrapeFixture fx(series, workers, dead, ScrapeFixture::Writers::kProcesses);
  std::vector<double> seconds;
  size_t bytes = 0;
  for (int i = 0; i < scrapes; ++i) {
    const auto t0 = Clock::now();
    const std::string body = fx.Scrape();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    bytes = body.size();
    if (i == 0) {
      if (const std::string problem = fx.Check(body); !problem.empty()) {
        std::fprintf(stderr, "shmetrics_bench: wrong body: %s\n", problem.c_str());
        return 1;
      }
    }
  }
  std::printf(
      "{\"median_seconds\": %.9f, \"min_seconds\": %.9f, \"body_bytes\": %zu, \"scrapes\": %d, "
      "\"writer_bytes_per_series_writer\": %.3f, \"used_bytes_per_series_writer\": %.3f}\n",
      Median(seconds), *std::min_element(seconds.begin(), seconds.end()), bytes, scrapes,
      fx.memory().writer_bytes_per_pair(), fx.memory().used_bytes_per_pair());
  return 0;
}

// W writer threads, each touching a random fraction F of S counter series (at least one).
int HelperMemory(const HelperArgs& a) {
  const auto series = static_cast<uint32_t>(a.Get("series", 0));
  const auto workers = static_cast<uint32_t>(a.Get("workers", 0));
  const double fraction = a.Get("fraction", 1.0);
  if (series == 0 || workers == 0 || fraction <= 0 || fraction > 1) {
    Usage("--helper=memory needs --series and --workers > 0 and 0 < --fraction <= 1");
  }
  Client& client = Client::Attach(NewRegionName("memory"), SizedOptions(series, workers));
  std::vector<Counter*> counters;
  for (uint32_t f = 0; f < FamilyCount(series); ++f) {
    auto& family = BuildCounter()
                       .Name(FamilyName(f) + "_total")
                       .Help(FamilyHelp(f))
                       .Labels({"route", "code"})
                       .MaxSeries(kSeriesPerFamily)
                       .Register(client);
    for (uint32_t i = f * kSeriesPerFamily; i < std::min(series, (f + 1) * kSeriesPerFamily); ++i) {
      counters.push_back(&family.Add({RouteLabel(i), "200"}));
    }
  }
  std::mutex mu;
  std::condition_variable cv;
  uint32_t ready = 0;
  bool release = false;
  std::vector<std::thread> threads;
  for (uint32_t w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937_64 rng(w + 1);
      std::vector<Counter*> mine = counters;
      std::shuffle(mine.begin(), mine.end(), rng);
      mine.resize(std::max<size_t>(1, static_cast<size_t>(fraction * double(series))));
      for (Counter* c : mine) c->Inc();
      std::unique_lock lock(mu);
      ++ready;
      cv.notify_all();
      cv.wait(lock, [&] { return release; });
    });
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return ready == workers; });
  }
  const RegionMemory m = MeasureRegionMemory(client.region());
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  for (std::thread& t : threads) t.join();
  std::printf(
      "{\"series\": %u, \"workers\": %u, \"fraction\": %.4f, \"pairs\": %llu, \"writer_pages\": "
      "%llu, "
      "\"writer_bytes_per_series_writer\": %.3f, \"used_bytes_per_series_writer\": %.3f}\n",
      series, workers, fraction, static_cast<unsigned long long>(m.pairs),
      static_cast<unsigned long long>(m.writer_pages), m.writer_bytes_per_pair(),
      m.used_bytes_per_pair());
  return 0;
}

}  // namespace

int RunHelper(int argc, char** argv) {
  const HelperArgs a = ParseHelperArgs(argc, argv);
  int status = 1;
  try {
    if (a.mode == "write") status = HelperWrite(a);
    if (a.mode == "scrape") status = HelperScrape(a);
    if (a.mode == "memory") status = HelperMemory(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shmetrics_bench: %s\n", e.what());
  }
  RemoveRegions();
  return status;
}

}  // namespace shmetrics::bench
