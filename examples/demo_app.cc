// shmetrics-demo-app: a pre-forking "HTTP server" that serves no HTTP. The master attaches to the
// region and registers every family before fork(); N workers then simulate traffic into their own
// slots. Every few seconds the master SIGKILLs one worker and respawns it, so that a scrape of the
// gateway shows counters that keep going up while the workers under them die.
//
//   shmetrics-demo-app --region NAME --workers N [--seconds S]
//
// Processes: the master only forks, reaps and kills; it never updates a metric. Workers die with
// the master (PR_SET_PDEATHSIG + a getppid() check), and the master kills and reaps every worker
// before it exits, so no run leaves an orphan behind.
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "shmetrics/shmetrics.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kKillEvery = std::chrono::seconds(3);
// A worker that dies within this long of its start is respawned this much later, not at once.
constexpr auto kCrashBackoff = std::chrono::seconds(1);
constexpr int kMaxWorkers = 256;

struct Options {
  std::string region;
  int workers = 0;
  long seconds = 0;  // 0: until SIGINT/SIGTERM
};

struct Metrics {
  shmetrics::Family<shmetrics::Counter>* requests;
  shmetrics::Family<shmetrics::Histogram>* duration;
  shmetrics::Gauge* in_flight;
  shmetrics::Gauge* last_request;
};

struct Method {
  std::string_view name;
  double weight;
  double median_seconds;  // of the simulated latency
};
constexpr Method kMethods[] = {
    {"GET", 70, 0.020}, {"POST", 20, 0.080}, {"PUT", 6, 0.060}, {"DELETE", 4, 0.040}};
struct Code {
  std::string_view code;
  double weight;
};
constexpr Code kCodes[] = {{"200", 88}, {"201", 4},   {"304", 3},
                           {"404", 3},  {"500", 1.5}, {"503", 0.5}};

void Usage(FILE* out) {
  std::fprintf(out,
               "usage: shmetrics-demo-app --region NAME --workers N [--seconds S]\n"
               "  --region NAME   shared-memory region to write (created if absent)\n"
               "  --workers N     worker processes to fork (1..%d)\n"
               "  --seconds S     stop after S seconds (default 0: until SIGINT/SIGTERM)\n",
               kMaxWorkers);
}

[[noreturn]] void BadArgs(const std::string& what) {
  std::fprintf(stderr, "shmetrics-demo-app: %s\n", what.c_str());
  Usage(stderr);
  std::exit(2);
}

long ParseNumber(const char* flag, const char* text, long min, long max) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
    BadArgs(std::string(flag) + " wants an integer in [" + std::to_string(min) + ", " +
            std::to_string(max) + "], got '" + text + "'");
  }
  return v;
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  bool have_workers = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      Usage(stdout);
      std::exit(0);
    }
    if (arg != "--region" && arg != "--workers" && arg != "--seconds") {
      BadArgs("unknown argument '" + std::string(arg) + "'");
    }
    if (i + 1 >= argc) BadArgs(std::string(arg) + " needs a value");
    const char* value = argv[++i];
    if (arg == "--region") {
      o.region = value;
    } else if (arg == "--workers") {
      o.workers = static_cast<int>(ParseNumber("--workers", value, 1, kMaxWorkers));
      have_workers = true;
    } else {
      o.seconds = ParseNumber("--seconds", value, 0, 365L * 24 * 3600);
    }
  }
  if (o.region.empty()) BadArgs("--region is required");
  if (!have_workers) BadArgs("--workers is required");
  return o;
}

// Registered in the master, before any fork: every worker inherits the families and the
// pre-created children, and writes them into its own slot.
Metrics Register(shmetrics::Client& client) {
  Metrics m;
  m.requests = &shmetrics::BuildCounter()
                    .Name("http_requests_total")
                    .Help("Simulated HTTP requests served, by method and status code.")
                    .Labels({"method", "code"})
                    .Register(client);
  m.duration =
      &shmetrics::BuildHistogram()
           .Name("http_request_duration_seconds")
           .Help("Simulated HTTP request latency, by method.")
           .Labels({"method"})
           .Buckets(shmetrics::DefaultBuckets())
           .Native()  // beside the classic buckets: served in every format, native in protobuf
           .Register(client);
  m.in_flight = &shmetrics::BuildGauge()
                     .Name("http_requests_in_flight")
                     .Help("Simulated requests being served right now, over live workers.")
                     .Mode(shmetrics::GaugeMode::kLiveSum)
                     .Register(client)
                     .Get();
  m.last_request = &shmetrics::BuildGauge()
                        .Name("worker_last_request_timestamp_seconds")
                        .Help("Unix time of each live worker's last simulated request.")
                        .Mode(shmetrics::GaugeMode::kLiveAll)
                        .Register(client)
                        .Get();
  return m;
}

// A worker: batches of simulated requests, each batch "in flight" for a few milliseconds, so a
// worker serves a few thousand requests per second and sleeps most of the time.
[[noreturn]] void WorkerMain(const Metrics& m, pid_t master) {
  // Look every child up once; the loop then does no lookup at all.
  constexpr size_t kNumMethods = std::size(kMethods), kNumCodes = std::size(kCodes);
  shmetrics::Counter* requests[kNumMethods][kNumCodes];
  shmetrics::Histogram* duration[kNumMethods];
  for (size_t i = 0; i < kNumMethods; ++i) {
    duration[i] = &m.duration->Add({kMethods[i].name});
    for (size_t j = 0; j < kNumCodes; ++j) {
      requests[i][j] = &m.requests->Add({kMethods[i].name, kCodes[j].code});
    }
  }
  std::vector<double> method_weights, code_weights;
  for (const Method& x : kMethods) method_weights.push_back(x.weight);
  for (const Code& x : kCodes) code_weights.push_back(x.weight);
  std::discrete_distribution<size_t> pick_method(method_weights.begin(), method_weights.end());
  std::discrete_distribution<size_t> pick_code(code_weights.begin(), code_weights.end());
  std::lognormal_distribution<double> latency(0.0, 0.9);  // times the method's median
  std::uniform_int_distribution<int> batch_size(1, 40);
  std::uniform_int_distribution<int> batch_micros(2000, 8000);
  std::mt19937_64 rng(static_cast<uint64_t>(getpid()) * 0x9e3779b97f4a7c15ull ^
                      static_cast<uint64_t>(Clock::now().time_since_epoch().count()));

  while (getppid() == master) {
    const int n = batch_size(rng);
    m.in_flight->Add(n);
    const timespec pause{0, batch_micros(rng) * 1000L};
    nanosleep(&pause, nullptr);
    for (int k = 0; k < n; ++k) {
      const size_t method = pick_method(rng);
      requests[method][pick_code(rng)]->Inc();
      duration[method]->Observe(kMethods[method].median_seconds * latency(rng));
    }
    m.in_flight->Sub(n);
    m.last_request->SetToCurrentTime();
  }
  _exit(0);  // the master is gone
}

struct Worker {
  pid_t pid = 0;
  Clock::time_point started;
  Clock::time_point respawn_at;  // when pid == 0
};

class Master {
 public:
  Master(const Options& o, const Metrics& m) : options_(o), metrics_(m), workers_(o.workers) {
    // A shell starts background jobs with SIGINT ignored, and an inherited SIGCHLD = SIG_IGN would
    // reap workers behind waitpid's back: start from the defaults, which workers then inherit.
    for (int sig : {SIGINT, SIGTERM, SIGCHLD}) std::signal(sig, SIG_DFL);
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    sigaddset(&signals_, SIGCHLD);
    // Taken synchronously with sigtimedwait: no handler, no flag, no race with waitpid.
    sigprocmask(SIG_BLOCK, &signals_, &old_mask_);
  }

  int Run() {
    const auto start = Clock::now();
    for (int i = 0; i < options_.workers; ++i) Spawn(i);
    std::printf("demo-app: %d workers writing to region '%s'\n", options_.workers,
                options_.region.c_str());
    auto next_kill = start + kKillEvery;
    const auto deadline = start + std::chrono::seconds(options_.seconds);
    std::uniform_int_distribution<int> pick(0, options_.workers - 1);

    while (true) {
      const auto now = Clock::now();
      if (options_.seconds > 0 && now >= deadline) {
        std::printf("demo-app: %ld s elapsed, stopping\n", options_.seconds);
        break;
      }
      if (now >= next_kill) {
        KillOne(pick(rng_));
        next_kill = now + kKillEvery;
      }
      Reap();
      RespawnDue();

      // Sleep until a signal or the next tick; ticks are short so respawns are prompt.
      const timespec tick{0, 100'000'000};
      siginfo_t info;
      const int sig = sigtimedwait(&signals_, &info, &tick);
      if (sig == SIGINT || sig == SIGTERM) {
        std::printf("demo-app: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
      }
    }
    StopAll();
    return 0;
  }

 private:
  void Spawn(int i) {
    std::fflush(nullptr);  // or the child would print the parent's buffered output again
    const pid_t master = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      std::fprintf(stderr, "demo-app: fork: %s; retrying in 1 s\n", std::strerror(errno));
      workers_[i].respawn_at = Clock::now() + kCrashBackoff;
      return;
    }
    if (pid == 0) {
      // Die with the master, even if it is SIGKILLed; and if it already died before the prctl,
      // notice now rather than never.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != master) _exit(0);
      sigprocmask(SIG_SETMASK, &old_mask_, nullptr);
      WorkerMain(metrics_, master);
    }
    workers_[i].pid = pid;
    workers_[i].started = Clock::now();
  }

  int IndexOf(pid_t pid) const {
    for (int i = 0; i < options_.workers; ++i) {
      if (workers_[i].pid == pid) return i;
    }
    return -1;
  }

  // Reaps every worker that exited on its own and schedules its respawn.
  void Reap() {
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      const int i = IndexOf(pid);
      if (i < 0) continue;
      const auto now = Clock::now();
      workers_[i].pid = 0;
      workers_[i].respawn_at =
          now - workers_[i].started < kCrashBackoff ? now + kCrashBackoff : now;
      std::printf("demo-app: worker %d (pid %d) %s; respawning\n", i, pid,
                  Describe(status).c_str());
    }
  }

  void RespawnDue() {
    const auto now = Clock::now();
    for (int i = 0; i < options_.workers; ++i) {
      if (workers_[i].pid == 0 && now >= workers_[i].respawn_at) {
        Spawn(i);
        if (workers_[i].pid != 0) {
          std::printf("demo-app: respawned worker %d as pid %d\n", i, workers_[i].pid);
        }
      }
    }
  }

  // The demo's point: a worker dies without any chance to clean up, and no counter goes back.
  void KillOne(int i) {
    const pid_t pid = workers_[i].pid;
    if (pid == 0) return;
    kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    workers_[i].pid = 0;
    std::printf("demo-app: killed worker %d (pid %d) with SIGKILL\n", i, pid);
    Spawn(i);
    if (workers_[i].pid != 0) {
      std::printf("demo-app: respawned worker %d as pid %d\n", i, workers_[i].pid);
    }
  }

  // SIGTERM every worker, give them a moment, SIGKILL the rest, and reap them all.
  void StopAll() {
    int alive = 0;
    for (const Worker& w : workers_) {
      if (w.pid != 0 && kill(w.pid, SIGTERM) == 0) ++alive;
    }
    const auto give_up = Clock::now() + std::chrono::seconds(2);
    while (alive > 0) {
      int status = 0;
      const pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid > 0) {
        if (const int i = IndexOf(pid); i >= 0) {
          workers_[i].pid = 0;
          --alive;
        }
        continue;
      }
      if (pid < 0 && errno == ECHILD) break;
      if (Clock::now() >= give_up) {
        for (Worker& w : workers_) {
          if (w.pid != 0) kill(w.pid, SIGKILL);
        }
        while (waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
        }
        break;
      }
      const timespec pause{0, 10'000'000};
      nanosleep(&pause, nullptr);
    }
    std::printf("demo-app: all workers stopped\n");
  }

  static std::string Describe(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
      return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
             strsignal(WTERMSIG(status)) + ")";
    return "stopped";
  }

  const Options& options_;
  const Metrics& metrics_;
  std::vector<Worker> workers_;
  sigset_t signals_;
  sigset_t old_mask_;
  std::mt19937 rng_{std::random_device{}()};
};

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseArgs(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // one line per event, even into a pipe
  try {
    shmetrics::Client& client = shmetrics::Client::Attach(options.region);
    const Metrics metrics = Register(client);
    // Create the children here too, before fork: every worker inherits them ready to use.
    for (const Method& method : kMethods) {
      metrics.duration->Add({method.name});
      for (const Code& code : kCodes) metrics.requests->Add({method.name, code.code});
    }
    Master master(options, metrics);
    return master.Run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shmetrics-demo-app: %s\n", e.what());
    return 1;
  }
}
