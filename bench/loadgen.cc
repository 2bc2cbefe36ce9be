// shmetrics-loadgen: multi-process write throughput, the way a pre-forked server produces it.
//
//   shmetrics-loadgen --region NAME --workers P --threads T --seconds S --series K
//
// The master attaches to (or creates) the region, registers a counter family and a histogram
// family of K series each and resolves every child handle, then forks P workers. Each worker runs
// T threads that, for S seconds, go round the K series doing Counter::Inc and Histogram::Observe
// through the public client API. Then every worker reports what it wrote, and the master prints
// updates/s per worker and in total and the totals each worker wrote, as key=value lines, so that a
// scrape of shmetrics-gateway can be checked against them (scripts/bench does):
//
//   sum of loadgen_requests_total            == requests_total
//   sum of loadgen_latency_seconds_count     == latency_count
//   sum of loadgen_latency_seconds_sum       ~= latency_sum (floating point, summed in another
//   order)
//
// It needs no gateway. Uses only shmetrics::client.
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "shmetrics/shm/region.h"
#include "shmetrics/shmetrics.h"
#include "workload.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    R"(Usage: shmetrics-loadgen --region NAME --workers P --threads T --seconds S --series K

Forks P worker processes with T threads each that, for S seconds, update K counter series
(loadgen_requests_total{key}) and K histogram series (loadgen_latency_seconds{key}, 10 buckets)
through the shmetrics client API, one Counter::Inc and one Histogram::Observe per step. Prints
updates/s per worker and in total, and the totals each worker wrote, as key=value lines:

  worker=I pid=N threads=T seconds=S updates=U updates_per_second=R requests_total=C latency_count=C latency_sum=X
  total workers=P threads=T seconds=S updates=U updates_per_second=R requests_total=C latency_count=C latency_sum=X

The region is created if it does not exist (sized for P x T writers and K series); an existing
one (e.g. created by shmetrics-gateway) is used as it is. The totals add to whatever the region
already holds: use a fresh region to compare them with a scrape.

Options:
  --region NAME   shared-memory region, [A-Za-z0-9._-], 1-200 characters (required)
  --workers P     worker processes, 1..256 (required)
  --threads T     threads per worker, 1..64 (required)
  --seconds S     duration, > 0, fractions allowed (required)
  --series K      series per family, 1..100000 (required)
  --help          this text

Exit status: 0 on success, 2 on bad usage, 1 when the region fails, a worker fails or updates were
dropped (the region is too small: see README, "Limits and sizing").
)";

struct Options {
  std::string region;
  long workers = 0, threads = 0, series = 0;
  double seconds = 0;
};

// What one worker sends back to the master.
struct Report {
  int64_t pid = 0;
  uint64_t updates = 0;
  uint64_t requests = 0;  // Counter::Inc calls
  uint64_t observations = 0;
  double latency_sum = 0;
  double seconds = 0;
};

[[noreturn]] void Usage(const std::string& error) {
  std::fprintf(stderr, "shmetrics-loadgen: %s\nTry 'shmetrics-loadgen --help'.\n", error.c_str());
  std::exit(2);
}

long ParseLong(std::string_view flag, std::string_view text, long lo, long hi) {
  long v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < lo || v > hi) {
    Usage("invalid value for " + std::string(flag) + ": '" + std::string(text) +
          "' (want an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ")");
  }
  return v;
}

Options Parse(int argc, char** argv) {
  Options o;
  bool seen_seconds = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc)
      Usage(arg.starts_with("--") ? "option " + std::string(arg) + " needs a value"
                                  : "unexpected argument '" + std::string(arg) + "'");
    const std::string_view value = argv[++i];
    if (arg == "--region") {
      o.region = value;
    } else if (arg == "--workers") {
      o.workers = ParseLong(arg, value, 1, 256);
    } else if (arg == "--threads") {
      o.threads = ParseLong(arg, value, 1, 64);
    } else if (arg == "--series") {
      o.series = ParseLong(arg, value, 1, 100000);
    } else if (arg == "--seconds") {
      char* end = nullptr;
      const std::string text(value);
      o.seconds = std::strtod(text.c_str(), &end);
      if (end == text.c_str() || *end != '\0' || !(o.seconds > 0) || o.seconds > 86400) {
        Usage("invalid value for --seconds: '" + text + "' (want a number of seconds, > 0)");
      }
      seen_seconds = true;
    } else {
      Usage("unknown option '" + std::string(arg) + "'");
    }
  }
  if (o.region.empty()) Usage("--region NAME is required");
  if (o.workers == 0) Usage("--workers P is required");
  if (o.threads == 0) Usage("--threads T is required");
  if (!seen_seconds) Usage("--seconds S is required");
  if (o.series == 0) Usage("--series K is required");
  return o;
}

// Capacities for K counter series and K histogram series written by every one of P x T writers.
shmetrics::RegionOptions Sized(const Options& o) {
  shmetrics::RegionOptions r;
  const auto k = static_cast<uint64_t>(o.series);
  const uint32_t hist_cells =
      shmetrics::shm::ComputeSeriesLayout(shmetrics::shm::MetricType::kHistogram, {}, 10, 0, 0)
          .cells;
  uint64_t cells = k + k * hist_cells;
  cells += cells / shmetrics::shm::kCellsPerPage * hist_cells + 64 + shmetrics::shm::kSystemCells;
  cells = (cells + shmetrics::shm::kCellsPerPage - 1) / shmetrics::shm::kCellsPerPage *
          shmetrics::shm::kCellsPerPage;
  r.max_cells = static_cast<uint32_t>(std::max<uint64_t>(cells, 2 * shmetrics::shm::kCellsPerPage));
  r.max_series = static_cast<uint32_t>(2 * k + 64);
  r.max_families = 64;
  r.max_slots = static_cast<uint32_t>(o.workers * o.threads + 16);
  r.string_bytes = static_cast<uint32_t>(64 * k + (64 << 10));
  r.size_bytes = 1ull << 39;  // placeholder, to learn where the page pool starts
  const shmetrics::shm::Layout l = shmetrics::shm::ComputeLayout(r);
  r.size_bytes = l.pages_offset +
                 (1 + uint64_t{l.total_slots()} * l.pages_per_slot) * shmetrics::shm::kPageBytes;
  return r;
}

uint64_t Drops(const shmetrics::Client& client) {
  const shmetrics::shm::RegionHeader& h = client.region().header();
  return h.dropped_no_slot.load() + h.dropped_no_page.load() + h.dropped_region_full.load() +
         h.registration_errors.load();
}

// The sum of the first n values of the observation stream, as one thread observed them.
double StreamSum(uint64_t n) {
  const std::vector<double>& v = shmetrics::bench::ObservationStream();
  double cycle = 0;
  for (double x : v) cycle += x;
  double sum = static_cast<double>(n / v.size()) * cycle;
  for (uint64_t i = 0; i < n % v.size(); ++i) sum += v[i];
  return sum;
}

struct Metrics {
  std::vector<shmetrics::Counter*> requests;
  std::vector<shmetrics::Histogram*> latency;
};

// One worker process: T threads, started together, stopped together after S seconds.
Report RunWorker(shmetrics::Client& client, const Metrics& m, const Options& o, int start_fd) {
  std::atomic<bool> start{false}, stop{false};
  std::vector<uint64_t> steps(static_cast<size_t>(o.threads), 0);
  std::vector<std::thread> threads;
  const size_t k = m.requests.size();
  for (long t = 0; t < o.threads; ++t) {
    threads.emplace_back([&, t] {
      client.ClaimSlotNow();  // this thread's slot, before the clock starts
      const std::vector<double>& values = shmetrics::bench::ObservationStream();
      size_t key = static_cast<size_t>(t) * k /
                   static_cast<size_t>(o.threads);  // spread threads over the keys
      uint64_t n = 0;
      start.wait(false, std::memory_order_acquire);
      while (!stop.load(std::memory_order_relaxed)) {
        for (int j = 0; j < 256; ++j, ++n) {
          m.requests[key]->Inc();
          m.latency[key]->Observe(values[n & (shmetrics::bench::kObservations - 1)]);
          if (++key == k) key = 0;
        }
      }
      steps[static_cast<size_t>(t)] = n;
    });
  }
  char byte;
  while (::read(start_fd, &byte, 1) < 0 && errno == EINTR) {
  }  // EOF: the master released every worker at once
  const auto t0 = Clock::now();
  start.store(true, std::memory_order_release);
  start.notify_all();
  std::this_thread::sleep_until(t0 + std::chrono::duration<double>(o.seconds));
  stop.store(true, std::memory_order_relaxed);
  for (std::thread& t : threads) t.join();
  Report r;
  r.pid = ::getpid();
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  for (uint64_t n : steps) {
    r.requests += n;
    r.observations += n;
    r.latency_sum += StreamSum(n);
  }
  r.updates = r.requests + r.observations;
  return r;
}

void PrintLine(const char* prefix, const Report& r, long threads) {
  std::printf(
      "%s threads=%ld seconds=%.3f updates=%llu updates_per_second=%.1f requests_total=%llu "
      "latency_count=%llu latency_sum=%.17g\n",
      prefix, threads, r.seconds, static_cast<unsigned long long>(r.updates),
      r.seconds > 0 ? static_cast<double>(r.updates) / r.seconds : 0.0,
      static_cast<unsigned long long>(r.requests), static_cast<unsigned long long>(r.observations),
      r.latency_sum);
}

int Run(const Options& o) {
  shmetrics::Client& client = shmetrics::Client::Attach(o.region, Sized(o));
  Metrics m;
  auto& requests = shmetrics::BuildCounter()
                       .Name("loadgen_requests_total")
                       .Help("Requests simulated by shmetrics-loadgen.")
                       .Labels({"key"})
                       .MaxSeries(static_cast<uint32_t>(o.series))
                       .Register(client);
  auto& latency = shmetrics::BuildHistogram()
                      .Name("loadgen_latency_seconds")
                      .Help("Latency simulated by shmetrics-loadgen.")
                      .Labels({"key"})
                      .Buckets(shmetrics::bench::TenBuckets())
                      .MaxSeries(static_cast<uint32_t>(o.series))
                      .Register(client);
  for (long i = 0; i < o.series; ++i) {
    const std::string key = std::to_string(i);
    m.requests.push_back(&requests.Add({key}));
    m.latency.push_back(&latency.Add({key}));
  }
  const uint64_t drops_before = Drops(client);

  int start[2], results[2];
  if (::pipe(start) != 0 || ::pipe(results) != 0) {
    std::fprintf(stderr, "shmetrics-loadgen: pipe: %s\n", std::strerror(errno));
    return 1;
  }
  std::vector<pid_t> pids;
  const pid_t master = ::getpid();
  for (long w = 0; w < o.workers; ++w) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      std::fprintf(stderr, "shmetrics-loadgen: fork: %s\n", std::strerror(errno));
      for (pid_t p : pids) ::kill(p, SIGKILL);
      return 1;
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != master) ::_exit(1);
      ::close(start[1]);
      ::close(results[0]);
      const Report r = RunWorker(client, m, o, start[0]);
      // One write of a small struct to a pipe is atomic: reports never interleave.
      ::_exit(::write(results[1], &r, sizeof r) == static_cast<ssize_t>(sizeof r) ? 0 : 1);
    }
    pids.push_back(pid);
  }
  ::close(start[0]);
  ::close(results[1]);
  ::close(start[1]);  // go

  std::vector<Report> reports(pids.size());
  std::vector<bool> got(pids.size(), false);
  bool ok = true;
  for (size_t i = 0; i < pids.size(); ++i) {
    Report r;
    ssize_t n;
    while ((n = ::read(results[0], &r, sizeof r)) < 0 && errno == EINTR) {
    }
    if (n != static_cast<ssize_t>(sizeof r)) break;
    reports[i] = r;
    got[i] = true;
  }
  ::close(results[0]);
  for (size_t i = 0; i < pids.size(); ++i) {
    int status = 0;
    ::waitpid(pids[i], &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !got[i]) ok = false;
  }
  if (!ok) {
    std::fprintf(stderr, "shmetrics-loadgen: a worker failed; totals are incomplete\n");
    return 1;
  }

  // Workers are numbered in fork order; reports arrive in completion order and carry their pid.
  Report total;
  for (size_t i = 0; i < pids.size(); ++i) {
    auto it = std::find_if(reports.begin(), reports.end(),
                           [&](const Report& r) { return r.pid == pids[i]; });
    if (it == reports.end()) {
      std::fprintf(stderr, "shmetrics-loadgen: no report from worker pid %d\n",
                   static_cast<int>(pids[i]));
      return 1;
    }
    const Report& r = *it;
    PrintLine(("worker=" + std::to_string(i) + " pid=" + std::to_string(r.pid)).c_str(), r,
              o.threads);
    total.updates += r.updates;
    total.requests += r.requests;
    total.observations += r.observations;
    total.latency_sum += r.latency_sum;
    total.seconds = std::max(total.seconds, r.seconds);
  }
  // Total rate = the sum of the workers' rates (each over its own measured interval).
  double rate = 0;
  for (const Report& r : reports) rate += static_cast<double>(r.updates) / r.seconds;
  std::printf(
      "total workers=%ld threads=%ld seconds=%.3f updates=%llu updates_per_second=%.1f "
      "requests_total=%llu "
      "latency_count=%llu latency_sum=%.17g\n",
      o.workers, o.threads, total.seconds, static_cast<unsigned long long>(total.updates), rate,
      static_cast<unsigned long long>(total.requests),
      static_cast<unsigned long long>(total.observations), total.latency_sum);
  std::fflush(stdout);
  const uint64_t drops = Drops(client) - drops_before;
  if (drops != 0) {
    std::fprintf(
        stderr,
        "shmetrics-loadgen: %llu updates or registrations were dropped: region \"%s\" is too small "
        "for %ld workers x %ld threads x %ld series (see README, \"Limits and sizing\")\n",
        static_cast<unsigned long long>(drops), o.region.c_str(), o.workers, o.threads, o.series);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  try {
    return Run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shmetrics-loadgen: %s\n", e.what());
    return 1;
  }
}
