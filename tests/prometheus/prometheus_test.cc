// End to end: Debian's real Prometheus 2.42 (/usr/bin/prometheus) scrapes the real
// shmetrics-gateway binary, which serves a region fed by forked workers (two still alive, two dead
// and folded). Run once plain (Prometheus then negotiates OpenMetrics) and once with
// --enable-feature=native-histograms (protobuf). Then its HTTP API must say:
//  - the target is up, and the gateway served only the expected format, gzip-coded
//    (shmetrics_scrapes_total{format,encoding} as Prometheus stored it);
//  - every series arrived exactly once: the e2e_* series are exactly the expected set, the
//    number of samples in a scrape equals the number of series stored, and Prometheus counted no
//    duplicate or out-of-order samples;
//  - counters equal what the workers wrote, gauges follow their modes, histogram_quantile() over
//    the classic buckets returns the quantile of the observed values;
//  - OpenMetrics only: the `_created` series carry the registration time, `# UNIT` reached the
//    metadata API.
// Everything runs on 127.0.0.1 with free ports and a temp directory; every process is killed at
// the end (RAII, and PR_SET_PDEATHSIG should the test itself die); each wait is bounded.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <boost/json/src.hpp>  // header-only Boost.JSON, in this one translation unit
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shmetrics/shm/region.h"
#include "shmetrics/shmetrics.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kWorkers = 4;
constexpr int kLiveWorkers = 2;  // workers 2 and 3 stay; 0 and 1 exit (folded)
constexpr int kObservationsPerWorker = 1000;

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// --- Processes -----------------------------------------------------------------------------------

class Process {
 public:
  Process() = default;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process() { Kill(); }

  // fork + exec with stdout/stderr to `log`; the child dies with us (PR_SET_PDEATHSIG).
  bool Spawn(const std::vector<std::string>& argv, const std::string& log) {
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) _exit(127);
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
      }
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      _exit(127);
    }
    return true;
  }
  // fork; the child runs `body` and _exit()s with its result.
  bool Fork(const std::function<int()>& body) {
    pid_ = ::fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int rc = 99;
      try {
        rc = body();
      } catch (...) {
      }
      _exit(rc);
    }
    return true;
  }
  bool Exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      status_ = status;
      return true;
    }
    return false;
  }
  // Waits up to `timeout` for the process to exit by itself.
  std::optional<int> Wait(Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!Exited()) {
      if (Clock::now() > deadline) return std::nullopt;
      std::this_thread::sleep_for(10ms);
    }
    return status_;
  }
  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
};

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/shmetrics-e2e-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct RegionName {
  RegionName()
      : name("shmetrics-e2e-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)) {
    shmetrics::shm::Region::Remove(name);
  }
  ~RegionName() { shmetrics::shm::Region::Remove(name); }
  std::string name;
  static inline int counter = 0;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Tail(const std::string& s, size_t n = 4000) {
  return s.size() <= n ? s : s.substr(s.size() - n);
}

// --- HTTP and the Prometheus API -----------------------------------------------------------------

uint16_t PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

struct HttpResult {
  int status = 0;
  std::string body;
};

// One HTTP/1.0 GET on 127.0.0.1 (the server closes the connection: no chunking, no keep-alive).
HttpResult HttpGet(uint16_t port, const std::string& target, Clock::duration timeout = 5s) {
  HttpResult result;
  const auto deadline = Clock::now() + timeout;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return result;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  auto wait_for = [&](short events) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, static_cast<int>(left)) == 1;
  };
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int err = 0;
    socklen_t len = sizeof err;
    if (errno != EINPROGRESS || !wait_for(POLLOUT) ||
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      ::close(fd);
      return result;
    }
  }
  const std::string request = "GET " + target + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    if (!wait_for(POLLOUT)) {
      ::close(fd);
      return result;
    }
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return result;
    }
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[65536];
  while (wait_for(POLLIN)) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t header_end = response.find("\r\n\r\n");
  if (response.compare(0, 5, "HTTP/") != 0 || header_end == std::string::npos) return result;
  result.status = std::atoi(response.c_str() + response.find(' ') + 1);
  result.body = response.substr(header_end + 4);
  return result;
}

std::string UrlEncode(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

struct Sample {
  std::map<std::string, std::string> labels;
  double value = 0;
};

class PrometheusApi {
 public:
  explicit PrometheusApi(uint16_t port) : port_(port) {}

  // An instant query; nullopt (and last_error()) when it failed.
  std::optional<std::vector<Sample>> Query(const std::string& promql) {
    const HttpResult r = HttpGet(port_, "/api/v1/query?query=" + UrlEncode(promql));
    if (r.status != 200) {
      error_ = "query " + promql + ": HTTP " + std::to_string(r.status) + " " + r.body;
      return std::nullopt;
    }
    try {
      const boost::json::value v = boost::json::parse(r.body);
      const auto& data = v.at("data").as_object();
      std::vector<Sample> out;
      if (data.at("resultType").as_string() == "scalar") {
        out.push_back(
            Sample{{}, std::stod(std::string(data.at("result").as_array().at(1).as_string()))});
        return out;
      }
      for (const auto& item : data.at("result").as_array()) {
        Sample s;
        for (const auto& [k, lv] : item.at("metric").as_object())
          s.labels[std::string(k)] = std::string(lv.as_string());
        s.value = std::stod(std::string(item.at("value").as_array().at(1).as_string()));
        out.push_back(std::move(s));
      }
      return out;
    } catch (const std::exception& e) {
      error_ = "query " + promql + ": bad JSON (" + e.what() + "): " + r.body;
      return std::nullopt;
    }
  }
  // The single value of a query that must return one sample; NaN otherwise.
  double Scalar(const std::string& promql) {
    const auto r = Query(promql);
    if (!r || r->size() != 1) {
      if (r) error_ = "query " + promql + ": " + std::to_string(r->size()) + " samples, expected 1";
      return std::nan("");
    }
    return r->front().value;
  }
  std::optional<boost::json::value> GetJson(const std::string& target) {
    const HttpResult r = HttpGet(port_, target);
    if (r.status != 200) return std::nullopt;
    try {
      return boost::json::parse(r.body);
    } catch (...) {
      return std::nullopt;
    }
  }
  // A metric of Prometheus' own /metrics (text format), summed over its series; NaN if absent.
  double OwnMetric(const std::string& name) {
    const HttpResult r = HttpGet(port_, "/metrics");
    std::istringstream lines(r.body);
    std::string line;
    double sum = 0;
    bool found = false;
    while (std::getline(lines, line)) {
      if (line.compare(0, name.size(), name) != 0) continue;
      if (line.size() > name.size() && line[name.size()] != ' ' && line[name.size()] != '{')
        continue;
      sum += std::stod(line.substr(line.rfind(' ') + 1));
      found = true;
    }
    return found ? sum : std::nan("");
  }
  const std::string& last_error() const { return error_; }

 private:
  uint16_t port_;
  std::string error_;
};

bool WaitFor(const std::function<bool()>& condition, Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(200ms);
  }
}

// --- The workers ---------------------------------------------------------------------------------

// 0.0001 and 1234567 are spelled differently by naive float printing ("1e-04", "1234567.0") and by
// Go ("0.0001", "1.234567e+06"): Prometheus spells protobuf bounds the Go way, so OpenMetrics must
// too, or a histogram's series would change with the negotiated format.
std::vector<double> LatencyBuckets() {
  return {0.0001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1234567};
}

// Observation k of every worker for the native histogram: log-uniform over [0.01, 1], a span of
// 53 buckets at schema 3, so the 80 buckets per sign each writer keeps hold it without reduction.
double RpcValue(int k) { return 0.01 * std::pow(100.0, (k + 0.5) / kObservationsPerWorker); }
constexpr int kRpcSchema = 3;

// Worker w registers the e2e families, writes its known values, reports on `ready_fd`, then
// exits (w < kWorkers - kLiveWorkers) or waits for EOF on `park_fd`.
int RunWorker(const std::string& region, int w, int ready_fd, int park_fd) {
  using namespace shmetrics;
  Client& client = Client::Attach(region);
  auto& requests = BuildCounter()
                       .Name("e2e_requests_total")
                       .Help("Requests by code.")
                       .Labels({"code"})
                       .Register(client);
  auto& sent = BuildCounter()
                   .Name("e2e_sent_bytes_total")
                   .Help("Bytes sent.")
                   .Unit("bytes")
                   .Register(client);
  auto& latency = BuildHistogram()
                      .Name("e2e_latency_seconds")
                      .Help("Latency.")
                      .Unit("seconds")
                      .Buckets(LatencyBuckets())
                      .Register(client);
  auto& rpc = BuildHistogram()
                  .Name("e2e_rpc_seconds")
                  .Help("RPC latency (native).")
                  .Native(kRpcSchema, 160)
                  .Register(client);
  auto& in_flight = BuildGauge()
                        .Name("e2e_in_flight")
                        .Help("In flight.")
                        .Mode(GaugeMode::kLiveSum)
                        .Register(client);
  auto& version = BuildGauge()
                      .Name("e2e_config_version")
                      .Help("Config version.")
                      .Mode(GaugeMode::kMax)
                      .Register(client);
  auto& rss = BuildGauge()
                  .Name("e2e_worker_rss_bytes")
                  .Help("RSS.")
                  .Mode(GaugeMode::kLiveAll)
                  .Register(client);

  Counter& ok = requests.Add({"200"});
  for (int i = 0; i < 1000 * (w + 1); ++i) ok.Inc();
  Counter& failed = requests.Add({"500"});
  for (int i = 0; i <= w; ++i) failed.Inc();
  sent.Get().Add(512);
  Histogram& h = latency.Get();
  for (int k = 0; k < kObservationsPerWorker; ++k) h.Observe((k + 0.5) / kObservationsPerWorker);
  for (int k = 0; k < kObservationsPerWorker; ++k) rpc.Get().Observe(RpcValue(k));
  in_flight.Get().Set(w + 1);
  version.Get().Set(40 + w);
  rss.Get().Set(1000.0 * (w + 1));

  if (::write(ready_fd, "r", 1) != 1) return 1;
  if (w < kWorkers - kLiveWorkers) return 0;  // dies: the gateway folds it
  char c;
  while (::read(park_fd, &c, 1) > 0) {
  }
  return 0;
}

// --- The scrape ----------------------------------------------------------------------------------

struct PrometheusRun {
  bool native_histograms = false;
  const char* expected_format = "openmetrics";
};

void PrintTo(const PrometheusRun& run, std::ostream* os) {
  *os << "expects " << run.expected_format;
}

class PrometheusScrapeTest : public ::testing::TestWithParam<PrometheusRun> {};

TEST_P(PrometheusScrapeTest, RealPrometheusScrapesEverySeriesOnceWithExactValues) {
  const PrometheusRun run = GetParam();
  const double test_start = UnixNow();
  ASSERT_EQ(::access(SHMETRICS_PROMETHEUS_BIN, X_OK), 0)
      << SHMETRICS_PROMETHEUS_BIN
      << " is missing: install Debian's prometheus package (scripts/test does)";
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  RegionName region;

  // The gateway, on a free port (retried if someone took it first).
  Process gateway;
  uint16_t gateway_port = 0;
  const std::string gateway_log = dir.path() + "/gateway.log";
  for (int attempt = 0; attempt < 3 && gateway_port == 0; ++attempt) {
    const uint16_t port = PickFreePort();
    ASSERT_TRUE(gateway.Spawn({SHMETRICS_GATEWAY_BIN, "--region", region.name, "--listen",
                               "127.0.0.1:" + std::to_string(port), "--size", "8M", "--max-series",
                               "4096", "--max-slots", "32", "--max-cells", "65536"},
                              gateway_log));
    if (WaitFor([&] { return gateway.Exited() || HttpGet(port, "/healthz", 1s).status == 200; },
                10s) &&
        !gateway.Exited()) {
      gateway_port = port;
    } else {
      gateway.Kill();
    }
  }
  ASSERT_NE(gateway_port, 0) << "the gateway did not come up:\n" << Tail(ReadFile(gateway_log));

  // The workers: all write, two exit, two stay until the test ends.
  int ready[2], park[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(park), 0);
  std::vector<std::unique_ptr<Process>> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.push_back(std::make_unique<Process>());
    ASSERT_TRUE(workers.back()->Fork([&, w] {
      ::close(ready[0]);
      ::close(park[1]);
      return RunWorker(region.name, w, ready[1], park[0]);
    }));
  }
  ::close(ready[1]);
  ::close(park[0]);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } close_ready{ready[0]}, release_parked{park[1]};
  int reported = 0;
  const auto ready_deadline = Clock::now() + 15s;
  while (reported < kWorkers && Clock::now() < ready_deadline) {
    pollfd p{ready[0], POLLIN, 0};
    if (::poll(&p, 1, 100) == 1) {
      char buf[8];
      const ssize_t n = ::read(ready[0], buf, sizeof buf);
      if (n <= 0) break;
      reported += static_cast<int>(n);
    }
  }
  ASSERT_EQ(reported, kWorkers) << "workers did not report";
  for (int w = 0; w < kWorkers - kLiveWorkers; ++w) {
    const auto status = workers[w]->Wait(5s);
    ASSERT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "worker " << w;
  }

  // Prometheus, with its own config, storage and port.
  const std::string config = dir.path() + "/prometheus.yml";
  {
    std::ofstream out(config);
    out << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        << "scrape_configs:\n  - job_name: shmetrics\n    static_configs:\n"
        << "      - targets: ['127.0.0.1:" << gateway_port << "']\n";
  }
  Process prometheus;
  uint16_t prometheus_port = 0;
  const std::string prometheus_log = dir.path() + "/prometheus.log";
  for (int attempt = 0; attempt < 3 && prometheus_port == 0; ++attempt) {
    const uint16_t port = PickFreePort();
    std::vector<std::string> argv = {
        SHMETRICS_PROMETHEUS_BIN, "--config.file=" + config,
        "--storage.tsdb.path=" + dir.path() + "/data-" + std::to_string(attempt),
        "--web.listen-address=127.0.0.1:" + std::to_string(port)};
    if (run.native_histograms) argv.push_back("--enable-feature=native-histograms");
    ASSERT_TRUE(prometheus.Spawn(argv, prometheus_log));
    if (WaitFor([&] { return prometheus.Exited() || HttpGet(port, "/-/ready", 1s).status == 200; },
                15s) &&
        !prometheus.Exited()) {
      prometheus_port = port;
    } else {
      prometheus.Kill();
    }
  }
  ASSERT_NE(prometheus_port, 0) << "prometheus did not come up:\n"
                                << Tail(ReadFile(prometheus_log));
  PrometheusApi api(prometheus_port);
  // On any failure, however the test ends: both logs and the last API error, once.
  struct LogsOnFailure {
    std::function<void()> print;
    ~LogsOnFailure() {
      if (::testing::Test::HasFailure()) print();
    }
  } logs_on_failure{[&] {
    std::cerr << "--- gateway log ---\n"
              << Tail(ReadFile(gateway_log)) << "\n--- prometheus log ---\n"
              << Tail(ReadFile(prometheus_log)) << "\n--- last API error ---\n"
              << api.last_error() << "\n";
  }};

  // The target is up (Prometheus 2.42 applies new targets on a 5 s tick, so this takes ~6 s).
  std::string health;
  ASSERT_TRUE(WaitFor(
      [&] {
        const auto targets = api.GetJson("/api/v1/targets");
        if (!targets) return false;
        try {
          const auto& active = targets->at("data").at("activeTargets").as_array();
          if (active.empty()) return false;
          health = std::string(active.at(0).at("health").as_string());
          return health == "up";
        } catch (...) {
          return false;
        }
      },
      30s))
      << "target health '" << health << "'";
  // At least two scrapes ingested: the self-metrics of the second count the first response.
  ASSERT_TRUE(WaitFor([&] { return api.Scalar("sum(shmetrics_scrapes_total)") >= 1; }, 15s));

  EXPECT_EQ(api.Scalar("up{job=\"shmetrics\"}"), 1);

  // The negotiated format: only the expected one was served, and gzip-coded.
  const std::string fmt = run.expected_format;
  EXPECT_GE(api.Scalar("sum(shmetrics_scrapes_total{format=\"" + fmt + "\",encoding=\"gzip\"})"),
            1);
  EXPECT_EQ(api.Scalar("sum(shmetrics_scrapes_total{format!=\"" + fmt + "\"})"), 0);
  EXPECT_EQ(api.Scalar("sum(shmetrics_scrapes_total{encoding=\"identity\"})"), 0);

  // Every series once: exactly the expected e2e_* series...
  std::map<std::string, double> expected = {
      {"e2e_requests_total", 2},          {"e2e_sent_bytes_total", 1},
      {"e2e_latency_seconds_bucket", 11}, {"e2e_latency_seconds_sum", 1},
      {"e2e_latency_seconds_count", 1},   {"e2e_in_flight", 1},
      {"e2e_config_version", 1},          {"e2e_worker_rss_bytes", kLiveWorkers},
  };
  if (run.native_histograms) {
    // A native histogram is one series; 2.42 ignores its classic twin (+Inf, _sum, _count).
    expected["e2e_rpc_seconds"] = 1;
  } else {
    // Text formats carry a native-only histogram as its +Inf bucket, _sum and _count.
    expected["e2e_rpc_seconds_bucket"] = 1;
    expected["e2e_rpc_seconds_sum"] = 1;
    expected["e2e_rpc_seconds_count"] = 1;
    expected["e2e_rpc_seconds_created"] = 1;
  }
  if (!run.native_histograms) {  // Prometheus 2.42 stores OpenMetrics _created lines as series
    expected["e2e_requests_created"] = 2;
    expected["e2e_sent_bytes_created"] = 1;
    expected["e2e_latency_seconds_created"] = 1;
  }
  std::map<std::string, double> got;
  const auto by_name = api.Query("count by (__name__) ({__name__=~\"e2e_.*\"})");
  ASSERT_TRUE(by_name);
  for (const Sample& s : *by_name) got[s.labels.at("__name__")] = s.value;
  EXPECT_EQ(got, expected);
  // ... the samples of one scrape are exactly the series stored (a duplicate would be fewer
  // series than samples), and Prometheus rejected nothing.
  const double samples = api.Scalar("scrape_samples_scraped{job=\"shmetrics\"}");
  const double series = api.Scalar("count({job=\"shmetrics\",__name__!~\"up|scrape_.+\"})");
  EXPECT_EQ(samples, series);
  EXPECT_GT(samples, 50);
  EXPECT_EQ(api.OwnMetric("prometheus_target_scrapes_sample_duplicate_timestamp_total"), 0);
  EXPECT_EQ(api.OwnMetric("prometheus_target_scrapes_sample_out_of_order_total"), 0);
  EXPECT_EQ(api.OwnMetric("prometheus_target_scrapes_sample_out_of_bounds_total"), 0);

  // Counters: exactly what the workers wrote, dead ones included.
  EXPECT_EQ(api.Scalar("e2e_requests_total{code=\"200\"}"), 1000 * (1 + 2 + 3 + 4));
  EXPECT_EQ(api.Scalar("e2e_requests_total{code=\"500\"}"), 1 + 2 + 3 + 4);
  EXPECT_EQ(api.Scalar("e2e_sent_bytes_total"), 512 * kWorkers);
  // Gauges by mode: live sum of workers 2 and 3, max over all, one series per live worker.
  EXPECT_EQ(api.Scalar("e2e_in_flight"), 3 + 4);
  EXPECT_EQ(api.Scalar("e2e_config_version"), 43);
  EXPECT_EQ(api.Scalar("sum(e2e_worker_rss_bytes)"), 3000 + 4000);

  // The classic histogram: 4000 observations spread evenly over (0, 1).
  const int n = kWorkers * kObservationsPerWorker;
  EXPECT_EQ(api.Scalar("e2e_latency_seconds_count"), n);
  EXPECT_NEAR(api.Scalar("e2e_latency_seconds_sum"), n * 0.5, 1e-6);
  EXPECT_EQ(api.Scalar("e2e_latency_seconds_bucket{le=\"0.5\"}"), n / 2);
  EXPECT_EQ(api.Scalar("e2e_latency_seconds_bucket{le=\"+Inf\"}"), n);
  EXPECT_EQ(api.Scalar("e2e_latency_seconds_bucket{le=\"0.0001\"}"), 0);
  EXPECT_EQ(api.Scalar("e2e_latency_seconds_bucket{le=\"1.234567e+06\"}"), n);
  for (double q : {0.5, 0.9, 0.99}) {
    const double got_q = api.Scalar("histogram_quantile(" + std::to_string(q) +
                                    ", sum by (le) (e2e_latency_seconds_bucket))");
    // The true quantile of the observed values; linear interpolation in the bucket is exact up
    // to the spacing of the observations for an even spread.
    EXPECT_NEAR(got_q, q, 1.0 / kObservationsPerWorker) << "q=" << q;
    const auto buckets = LatencyBuckets();
    const auto upper = std::lower_bound(buckets.begin(), buckets.end(), q);
    const double lo = upper == buckets.begin() ? 0 : *(upper - 1);
    EXPECT_GE(got_q, lo) << "q=" << q;
    EXPECT_LE(got_q, *upper) << "q=" << q;
  }

  if (run.native_histograms) {
    // histogram_quantile over the native histogram merged from all workers, dead ones included:
    // the true quantile of everything observed, within one bucket (a factor 2^(2^-schema)).
    std::vector<double> all;
    for (int w = 0; w < kWorkers; ++w) {
      for (int k = 0; k < kObservationsPerWorker; ++k) all.push_back(RpcValue(k));
    }
    std::sort(all.begin(), all.end());
    const double width = std::pow(2.0, std::pow(2.0, -kRpcSchema));
    for (double q : {0.5, 0.9, 0.99}) {
      const double truth = all[static_cast<size_t>(q * (all.size() - 1))];
      const double got_q =
          api.Scalar("histogram_quantile(" + std::to_string(q) + ", e2e_rpc_seconds)");
      EXPECT_GE(got_q, truth / width) << "q=" << q;
      EXPECT_LE(got_q, truth * width) << "q=" << q;
    }
    EXPECT_EQ(api.Scalar("histogram_count(e2e_rpc_seconds)"), kWorkers * kObservationsPerWorker);
  } else {
    EXPECT_EQ(api.Scalar("e2e_rpc_seconds_count"), kWorkers * kObservationsPerWorker);
  }

  if (!run.native_histograms) {
    // _created: the series' registration time, between the test start and now.
    const auto created = api.Query("e2e_requests_created");
    ASSERT_TRUE(created);
    ASSERT_EQ(created->size(), 2u);
    for (const Sample& s : *created) {
      EXPECT_GE(s.value, test_start - 1);
      EXPECT_LE(s.value, UnixNow());
    }
    // # UNIT reached Prometheus' metadata.
    const auto meta = api.GetJson("/api/v1/metadata?metric=e2e_sent_bytes");
    ASSERT_TRUE(meta);
    std::string unit;
    try {
      unit = std::string(
          meta->at("data").at("e2e_sent_bytes").as_array().at(0).at("unit").as_string());
    } catch (...) {
    }
    EXPECT_EQ(unit, "bytes") << boost::json::serialize(*meta);
  }
}

INSTANTIATE_TEST_SUITE_P(Prometheus242, PrometheusScrapeTest,
                         ::testing::Values(PrometheusRun{false, "openmetrics"},
                                           PrometheusRun{true, "protobuf"}),
                         [](const ::testing::TestParamInfo<PrometheusRun>& info) {
                           return info.param.native_histograms
                                      ? "NativeHistogramsNegotiatesProtobuf"
                                      : "PlainNegotiatesOpenMetrics";
                         });

}  // namespace
