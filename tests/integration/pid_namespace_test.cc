// A gateway in another pid namespace (a Kubernetes sidecar, a container sharing /dev/shm) sees
// pids that mean nothing to it. Liveness is decided by OFD locks, not pids, so it must neither
// declare live workers dead nor miss a real death.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "integration/test_support.h"
#include "shmetrics/shmetrics.h"

namespace shmetrics::integration {
namespace {

// The real gateway binary as pid 1 of a new pid namespace (and a user namespace, so this needs
// no root). --kill-child: the gateway dies with the unshare process the test kills.
struct NamespacedGateway {
  NamespacedGateway(const std::string& region) : port(PickFreePort()), log(TempPath("nsgw.log")) {
    process =
        ChildProcess::Spawn({"/usr/bin/unshare", "--user", "--map-root-user", "--pid", "--fork",
                             "--mount-proc", "--kill-child", SHMETRICS_GATEWAY_BIN, "--region",
                             region, "--listen", "127.0.0.1:" + std::to_string(port)},
                            log);
  }
  ~NamespacedGateway() { process.KillAndWait(); }
  bool WaitHealthy() {
    const auto deadline = Clock::now() + 10s;
    while (Clock::now() < deadline && !process.Wait(0s)) {
      if (HttpRequest(port, "GET", "/healthz", 1s).status == 200) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  Exposition Scrape() const {
    return ParseExposition(HttpRequest(port, "GET", "/metrics", 5s).body);
  }
  uint16_t port;
  std::string log;
  ChildProcess process;
};

TEST(PidNamespaceTest, SidecarGatewayKeepsLiveWorkersAndSeesDeaths) {
  ScopedRegion region("pidns");
  constexpr int kWorkers = 3;
  Pipe ready, stop;
  std::vector<ChildProcess> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.push_back(ChildProcess::Fork([&] {
      stop.CloseWrite();
      Client& client = Client::Attach(region.name());
      BuildCounter().Name("ns_ops").Help("Ops.").Register(client).Get().Add(100);
      BuildGauge()
          .Name("ns_pid")
          .Help("Pid.")
          .Mode(GaugeMode::kLiveAll)
          .Register(client)
          .Get()
          .Set(::getpid());
      if (!ready.Write("r")) return 3;
      BlockUntilEof(stop.read_fd());
      return 0;
    }));
  }
  ASSERT_TRUE(ready.Read(kWorkers, 20s));

  NamespacedGateway gw(region.name());
  ASSERT_TRUE(gw.WaitHealthy()) << ReadFile(gw.log);
  // Several reap intervals: a pid-based check would have declared them all dead by now (their
  // pids do not exist in the gateway's namespace).
  std::this_thread::sleep_for(2500ms);
  Exposition e = gw.Scrape();
  EXPECT_EQ(e.Value("shmetrics_workers{state=\"live\"}"), kWorkers) << ReadFile(gw.log);
  EXPECT_EQ(e.Value("shmetrics_workers_dead_total"), 0);
  EXPECT_EQ(e.Value("ns_ops_total"), 100.0 * kWorkers);
  for (const ChildProcess& w : workers) {  // labels carry the pids the workers see
    const std::string pid = std::to_string(w.pid());
    EXPECT_EQ(e.Value("ns_pid{pid=\"" + pid + "\"}"), w.pid());
  }

  workers[0].KillAndWait();
  std::optional<double> live;
  const auto deadline = Clock::now() + 5s;
  while (Clock::now() < deadline) {
    e = gw.Scrape();
    live = e.Value("shmetrics_workers{state=\"live\"}");
    if (live == kWorkers - 1) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(live, kWorkers - 1);
  EXPECT_EQ(e.Value("shmetrics_workers_dead_total"), 1);
  EXPECT_EQ(e.Value("ns_ops_total"), 100.0 * kWorkers);  // folded, not lost
  EXPECT_FALSE(e.Has("ns_pid{pid=\"" + std::to_string(workers[0].pid()) + "\"}"));
}

}  // namespace
}  // namespace shmetrics::integration
