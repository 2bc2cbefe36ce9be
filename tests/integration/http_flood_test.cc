// The real shmetrics-gateway binary under a flood of idle connections: however many
// clients connect and then idle (after one keep-alive request, or without sending a byte), a
// scrape on a fresh connection is answered within 2 s, and the evictions show in /metrics. Also
// the command-line flags of the HTTP limits. Loopback only; every socket is closed at scope exit.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <string>
#include <vector>

#include "integration/test_support.h"

namespace shmetrics::integration {
namespace {

const std::string kEvicted = "shmetrics_http_errors_total{reason=\"idle_evicted\"}";
const std::string kRefused = "shmetrics_http_errors_total{reason=\"too_many_connections\"}";

// Sockets closed by the destructor.
class Sockets {
 public:
  Sockets() = default;
  ~Sockets() {
    for (int fd : fds_) ::close(fd);
  }
  Sockets(const Sockets&) = delete;
  Sockets& operator=(const Sockets&) = delete;

  // A connection that sends nothing.
  bool OpenSilent(uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd);
      return false;
    }
    fds_.push_back(fd);
    return true;
  }

  // A keep-alive connection that has sent one request and had it answered: idle from then on.
  bool OpenAfterOneRequest(uint16_t port) {
    const int fd = SendRequestNoWait(port, "/healthz");
    if (fd < 0) return false;
    fds_.push_back(fd);
    char buf[1024];
    return ::recv(fd, buf, sizeof buf, 0) > 0;  // the first bytes of the answer
  }

  // How many the server has closed (EOF or reset), without blocking.
  int ClosedByServer() const {
    int closed = 0;
    for (int fd : fds_) {
      char c;
      for (;;) {
        const ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
        if (n > 0) continue;  // the rest of an answer
        closed += n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
        break;
      }
    }
    return closed;
  }
  size_t size() const { return fds_.size(); }

 private:
  std::vector<int> fds_;
};

// Scrapes `n` times on fresh connections; each must be a 200 within 2 s. Returns the slowest.
Clock::duration ExpectScrapesAnswered(const Gateway& gw, int n) {
  Clock::duration slowest{};
  for (int i = 0; i < n; ++i) {
    const auto start = Clock::now();
    const HttpResult r = gw.Get("/metrics", 2s);
    const auto elapsed = Clock::now() - start;
    EXPECT_EQ(r.status, 200) << "scrape " << i << " under the flood: " << r.error;
    EXPECT_LT(elapsed, 2s) << "scrape " << i;
    slowest = std::max(slowest, elapsed);
  }
  return slowest;
}

double Microseconds(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// The numbers of the issue: 1000 idle keep-alive and 1000 silent connections against the
// default limits (256 connections, 60 s idle, 10 s request timeout).
TEST(GatewayHttpFloodTest, ThousandsOfIdleConnectionsDoNotLockOutAScrape) {
  ScopedRegion region("flood");
  std::string error;
  std::unique_ptr<Gateway> gw = Gateway::Start(region.name(), {}, &error);
  ASSERT_NE(gw, nullptr) << error;
  Sockets after_request, silent;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(after_request.OpenAfterOneRequest(gw->port())) << "connection " << i;
  }
  const Clock::duration slowest_idle = ExpectScrapesAnswered(*gw, 5);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(silent.OpenSilent(gw->port())) << "connection " << i;
  const Clock::duration slowest_silent = ExpectScrapesAnswered(*gw, 5);

  const Exposition e = Scrape(*gw);
  ASSERT_TRUE(e.errors.empty()) << ::testing::PrintToString(e.errors);
  // 2000 connections held open through 256 slots: all but 256 were evicted, none refused.
  EXPECT_GE(e.Value(kEvicted).value_or(-1), 2000 - 256);
  EXPECT_EQ(e.Value(kRefused).value_or(-1), 0);
  EXPECT_GE(after_request.ClosedByServer() + silent.ClosedByServer(), 2000 - 256);
  std::cout << "slowest scrape under 1000 idle keep-alive connections: "
            << Microseconds(slowest_idle)
            << " us; with 1000 silent ones more: " << Microseconds(slowest_silent)
            << " us; evicted " << e.Value(kEvicted).value_or(-1) << "\n";
}

TEST(GatewayHttpFloodTest, LimitFlagsApply) {
  ScopedRegion region("floodflags");
  std::string error;
  std::unique_ptr<Gateway> gw = Gateway::Start(region.name(),
                                               {"--max-connections", "16", "--idle-timeout", "0.5",
                                                "--request-timeout", "30", "--header-limit", "2K"},
                                               &error);
  ASSERT_NE(gw, nullptr) << error;
  {
    Sockets silent;
    for (int i = 0; i < 64; ++i) ASSERT_TRUE(silent.OpenSilent(gw->port()));
    ExpectScrapesAnswered(*gw, 3);
    // 64 silent connections held open through 16 slots: 48 at least were evicted, which they
    // would otherwise hold on for 30 s (the scrapes reuse the slot the previous one freed).
    EXPECT_GE(Scrape(*gw).Value(kEvicted).value_or(-1), 64 - 16);
    EXPECT_GE(silent.ClosedByServer(), 64 - 16);
  }
  // --idle-timeout: a keep-alive connection is closed after 0.5 s of idling, not 60 s.
  Sockets idle;
  ASSERT_TRUE(idle.OpenAfterOneRequest(gw->port()));
  EXPECT_TRUE(WaitFor([&] { return idle.ClosedByServer() == 1; }, 5s));
  // --header-limit: a 3000-byte header is 431 now (8K by default).
  const HttpResult big = HttpRequest(gw->port(), "GET", "/metrics?" + std::string(3000, 'a'));
  EXPECT_EQ(big.status, 431) << big.error;
}

TEST(GatewayHttpFloodTest, BadLimitFlagsAreUsageErrors) {
  const std::string region = UniqueRegionName("floodusage");
  for (const std::vector<std::string>& flag : std::vector<std::vector<std::string>>{
           {"--max-connections", "0"},
           {"--max-connections", "100000"},
           {"--idle-timeout", "0"},
           {"--idle-timeout", "-1"},
           {"--idle-timeout", "10s"},
           {"--request-timeout", "nan"},
           {"--request-timeout", "100000"},
           {"--header-limit", "100"},
           {"--header-limit", "2G"},
       }) {
    std::vector<std::string> args = {"--region", region};
    args.insert(args.end(), flag.begin(), flag.end());
    const RunResult r = RunGateway(args);
    ASSERT_TRUE(r.status) << flag[0] << " " << flag[1] << ": the gateway did not exit";
    EXPECT_TRUE(ExitedWith(*r.status, 2))
        << flag[0] << " " << flag[1] << ": " << DescribeStatus(*r.status) << "\n"
        << r.output;
    EXPECT_NE(r.output.find(flag[0]), std::string::npos) << r.output;
  }
  const RunResult help = RunGateway({"--help"});
  for (const char* name :
       {"--max-connections", "--idle-timeout", "--request-timeout", "--header-limit"}) {
    EXPECT_NE(help.output.find(name), std::string::npos) << name << " missing from --help";
  }
}

// A number too large for its flag is refused by name, never wrapped into a small one that would
// start a gateway with other limits than asked (4294967297 is 2^32 + 1: 1 as a uint32).
TEST(GatewayHttpFloodTest, NumbersTooLargeForTheirFlagAreUsageErrors) {
  const std::string region = UniqueRegionName("floodrange");
  for (const std::vector<std::string>& flag : std::vector<std::vector<std::string>>{
           {"--threads", "4294967297"},
           {"--max-series", "4294967297"},
           {"--max-families", "4294967297"},
           {"--max-slots", "4294967297"},
           {"--max-cells", "4294967808"},
           {"--size", "17179869184G"},
           {"--size", "99999999999999999999"},
           {"--reap-interval", "18446744073709552"},
           {"--dead-gauge-retention", "18446744073709551615"},
           {"--listen", "127.0.0.1:65536"},
       }) {
    std::vector<std::string> args = {"--region", region};
    args.insert(args.end(), flag.begin(), flag.end());
    const RunResult r = RunGateway(args);
    ASSERT_TRUE(r.status) << flag[0] << " " << flag[1] << ": the gateway did not exit";
    EXPECT_TRUE(ExitedWith(*r.status, 2))
        << flag[0] << " " << flag[1] << ": " << DescribeStatus(*r.status) << "\n"
        << r.output;
    EXPECT_NE(r.output.find(flag[0]), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("too large"), std::string::npos) << flag[0] << ": " << r.output;
  }
}

}  // namespace
}  // namespace shmetrics::integration
