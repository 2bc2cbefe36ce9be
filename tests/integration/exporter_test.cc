// The real gateway binary as operators run exporters: --version, --help listing every flag by
// group, exporter flag names (with today's names kept as aliases, --web.listen-address repeated)
// and their usage errors, the web config's rate limit, the
// health, readiness and landing-page endpoints, a moved telemetry path, and logs as logfmt or
// JSON lines filtered by --log.level.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "integration/test_support.h"

namespace shmetrics::integration {
namespace {

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Waits up to `timeout` for `check()`; returns its last value.
template <typename F>
bool Eventually(F check, Clock::duration timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  while (!check()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

TEST(ExporterTest, VersionNamesTheReleaseAndTheLayout) {
  const RunResult r = RunGateway({"--version"});
  ASSERT_TRUE(r.status);
  EXPECT_TRUE(ExitedWith(*r.status, 0)) << r.output;
  EXPECT_TRUE(std::regex_match(
      r.output, std::regex(R"(shmetrics-gateway, version \d+\.\d+\.\d+ \(region layout \d+\)\n)")))
      << r.output;
}

TEST(ExporterTest, HelpListsEveryFlagByGroup) {
  const RunResult help = RunGateway({"--help"});
  ASSERT_TRUE(help.status);
  EXPECT_TRUE(ExitedWith(*help.status, 0));
  for (const char* text : {"Region:",
                           "Web (the flags Prometheus exporters use):",
                           "HTTP limits",
                           "Logging",
                           "Endpoints",
                           "--region",
                           "--group",
                           "--reap-interval",
                           "--dead-gauge-retention",
                           "--reset",
                           "--web.listen-address",
                           "Alias: --listen",
                           "--web.telemetry-path",
                           "--web.max-requests",
                           "--threads",
                           "--max-connections",
                           "--idle-timeout",
                           "--request-timeout",
                           "--header-limit",
                           "--size",
                           "--max-series",
                           "--max-families",
                           "--max-slots",
                           "--max-cells",
                           "--mode",
                           "--log.level",
                           "--log.format",
                           "--version",
                           "--help",
                           "/-/healthy",
                           "/-/ready",
                           "/healthz"}) {
    EXPECT_TRUE(Contains(help.output, text)) << text << " missing from --help";
  }
}

TEST(ExporterTest, BadExporterFlagsAreUsageErrorsNamingTheValue) {
  const std::string region = UniqueRegionName("exporterusage");
  for (const std::vector<std::string>& flag : std::vector<std::vector<std::string>>{
           {"--log.level", "loud"},
           {"--log.format", "xml"},
           {"--web.telemetry-path", "metrics"},
           {"--web.telemetry-path", "/a b"},
           {"--web.telemetry-path", "/m?x=1"},
           {"--web.telemetry-path", "/-/ready"},
           {"--web.max-requests", "-1"},
           {"--web.max-requests", "100000"},
           {"--web.listen-address", "nowhere"},
       }) {
    std::vector<std::string> args = {"--region", region};
    args.insert(args.end(), flag.begin(), flag.end());
    const RunResult r = RunGateway(args);
    ASSERT_TRUE(r.status) << flag[0] << " " << flag[1] << ": the gateway did not exit";
    EXPECT_TRUE(ExitedWith(*r.status, 2))
        << flag[0] << " " << flag[1] << ": " << DescribeStatus(*r.status) << "\n"
        << r.output;
    EXPECT_TRUE(Contains(r.output, flag[0])) << r.output;
  }
}

TEST(ExporterTest, HealthReadyLandingPageAndAMovedTelemetryPath) {
  ScopedRegion region("exporterpaths");
  std::string error;
  auto gw = Gateway::Start(region.name(), {"--web.telemetry-path", "/stats"}, &error);
  ASSERT_NE(gw, nullptr) << error;

  const HttpResult healthy = gw->Get("/-/healthy");
  EXPECT_EQ(healthy.status, 200);
  EXPECT_EQ(healthy.body, "shmetrics-gateway is Healthy.\n");
  EXPECT_EQ(gw->Get("/healthz").status, 200);
  EXPECT_TRUE(Eventually([&] { return gw->Get("/-/ready").status == 200; }));
  EXPECT_EQ(gw->Get("/-/ready").body, "shmetrics-gateway is Ready.\n");

  const HttpResult stats = gw->Get("/stats");
  EXPECT_EQ(stats.status, 200);
  EXPECT_TRUE(Contains(stats.body, "# TYPE shmetrics_gateway_build_info gauge")) << stats.body;
  EXPECT_EQ(gw->Get("/metrics").status, 404) << "the metrics moved to /stats";

  const HttpResult landing = gw->Get("/");
  EXPECT_EQ(landing.status, 200);
  EXPECT_EQ(landing.headers.at("content-type"), "text/html; charset=utf-8");
  EXPECT_TRUE(Contains(landing.body, "<a href=\"/stats\">")) << landing.body;
  EXPECT_TRUE(Contains(landing.body, region.name())) << landing.body;
  const HttpResult head = HttpRequest(gw->port(), "HEAD", "/");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());
}

// Repeated, as in the toolkit: every address serves, and the log names each.
TEST(ExporterTest, WebListenAddressRepeatsAndListenIsItsAlias) {
  ScopedRegion region("exporteralias");
  const uint16_t first = PickFreePort();
  uint16_t second = PickFreePort();
  while (second == first) second = PickFreePort();
  const std::string log = "/tmp/" + region.name() + ".log";
  ChildProcess gw = ChildProcess::Spawn(
      {SHMETRICS_GATEWAY_BIN, "--region", region.name(), "--web.listen-address",
       "127.0.0.1:" + std::to_string(first), "--listen", "localhost:" + std::to_string(second)},
      log);
  for (const uint16_t port : {first, second}) {
    EXPECT_TRUE(Eventually([&] { return HttpRequest(port, "GET", "/-/healthy").status == 200; }))
        << "port " << port;
    EXPECT_EQ(HttpRequest(port, "GET", "/metrics").status, 200) << "port " << port;
  }
  EXPECT_TRUE(Eventually([&] {
    return Contains(ReadFile(log), "serving http://127.0.0.1:" + std::to_string(first) +
                                       "/metrics, http://localhost:" + std::to_string(second) +
                                       "/metrics");
  })) << ReadFile(log);
  gw.KillAndWait();
  ::unlink(log.c_str());
}

TEST(ExporterTest, ListenAddressMistakesAreUsageErrors) {
  const std::string region = UniqueRegionName("exporterlisten");
  for (const std::vector<std::string>& flags : std::vector<std::vector<std::string>>{
           {"--web.listen-address", "::1:9716"},
           {"--web.listen-address", "127.0.0.1:9716", "--listen", "127.0.0.1:9716"},
           {"--web.listen-address", "127.0.0.1:65536"},
       }) {
    std::vector<std::string> args = {"--region", region};
    args.insert(args.end(), flags.begin(), flags.end());
    const RunResult r = RunGateway(args);
    ASSERT_TRUE(r.status) << flags[1] << ": the gateway did not exit";
    EXPECT_TRUE(ExitedWith(*r.status, 2)) << flags[1] << ": " << DescribeStatus(*r.status) << "\n"
                                          << r.output;
    EXPECT_TRUE(Contains(r.output, "--")) << r.output;
  }
}

// rate_limit: one bucket for the whole server, checked before anything else; what it refused is
// counted in /metrics once a token is back.
TEST(ExporterTest, WebConfigRateLimitAnswers429AndCountsIt) {
  ScopedRegion region("exporterrate");
  const std::string config = "/tmp/" + region.name() + ".web.yml";
  WriteFile(config, "rate_limit:\n  interval: 300ms\n  burst: 2\n");
  std::string error;
  auto gw = Gateway::Start(region.name(), {"--web.config.file", config}, &error);
  ASSERT_NE(gw, nullptr) << error;
  std::this_thread::sleep_for(700ms);  // the bucket is full again, whatever the start used
  EXPECT_EQ(gw->Get("/-/healthy").status, 200);
  EXPECT_EQ(gw->Get("/-/healthy").status, 200);
  const HttpResult refused = gw->Get("/-/healthy");
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(refused.headers.count("retry-after"), 1u);
  std::this_thread::sleep_for(700ms);
  const HttpResult metrics = gw->Get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_TRUE(Contains(metrics.body, "shmetrics_http_errors_total{reason=\"rate_limited\"} 1\n") ||
              Contains(metrics.body, "shmetrics_http_errors_total{reason=\"rate_limited\"} 2\n"))
      << metrics.body;
  ::unlink(config.c_str());
}

// Every line of the log matches `line`; at least one contains `must`.
void ExpectLogLines(const std::string& log, const std::regex& line, const std::string& must) {
  const std::vector<std::string> lines = Lines(log);
  ASSERT_FALSE(lines.empty());
  bool found = false;
  for (const std::string& l : lines) {
    EXPECT_TRUE(std::regex_match(l, line)) << "not a log line of this format: " << l;
    found = found || Contains(l, must);
  }
  EXPECT_TRUE(found) << must << " not logged:\n" << log;
}

TEST(ExporterTest, LogsAreLogfmtByDefaultAndJsonOnRequest) {
  {
    ScopedRegion region("exporterlogfmt");
    std::string error;
    auto gw = Gateway::Start(region.name(), {}, &error);
    ASSERT_NE(gw, nullptr) << error;
    gw->Kill();
    ExpectLogLines(
        gw->Log(),
        std::regex(
            R"re(ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(debug|info|warn|error) msg="([^"\\]|\\.)*")re"),
        R"(level=info msg="region \")" + region.name() + R"(\" created)");
  }
  {
    ScopedRegion region("exporterjson");
    std::string error;
    auto gw = Gateway::Start(region.name(), {"--log.format", "json"}, &error);
    ASSERT_NE(gw, nullptr) << error;
    // The server answers before the line saying so is written.
    EXPECT_TRUE(Eventually([&] { return Contains(gw->Log(), "serving http://"); })) << gw->Log();
    gw->Kill();
    ExpectLogLines(
        gw->Log(),
        std::regex(
            R"re(\{"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","level":"(debug|info|warn|error)","msg":"([^"\\]|\\.)*"\})re"),
        R"("level":"info","msg":"serving http://127.0.0.1:)");
  }
}

TEST(ExporterTest, LogLevelWarnKeepsWarningsOnly) {
  ScopedRegion region("exporterwarn");
  std::string error;
  auto gw = Gateway::Start(region.name(), {"--log.level", "warn"}, &error);
  ASSERT_NE(gw, nullptr) << error;
  ASSERT_EQ(::unlink(("/dev/shm/" + region.name()).c_str()), 0);  // a warning at the next reap
  EXPECT_TRUE(Eventually([&] { return Contains(gw->Log(), "was removed"); })) << gw->Log();
  gw->Kill();
  const std::string log = gw->Log();
  EXPECT_FALSE(Contains(log, "level=info")) << log;
  EXPECT_TRUE(Contains(log, "level=warn msg=\"region \\\"" + region.name() + "\\\" was removed"))
      << log;
}

}  // namespace
}  // namespace shmetrics::integration
