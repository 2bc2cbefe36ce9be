// Gateway (in process): /-/ready waits for the first reap; --web.max-requests refuses the scrapes
// beyond it at once (503, counted) and lets the others render; the build-info family.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "gateway.h"
#include "test_region.h"

namespace shmetrics::gateway {
namespace {

using namespace std::chrono_literals;
using testing::ScopedRegionName;
using testing::SmallOptions;

GatewayOptions Options(const std::string& region) {
  GatewayOptions o;
  o.region = region;
  o.region_options = SmallOptions();
  o.http.listen = {{"127.0.0.1", 0}};
  return o;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

HttpRequestInfo Get(std::string_view path) {
  HttpRequestInfo r;
  r.method = "GET";
  r.path = path;
  return r;
}

TEST(GatewayEndpointsTest, ReadyOnlyAfterTheFirstReap) {
  ScopedRegionName name("gw-ready");
  Gateway gw(Options(name.name));
  const HttpResponse before = gw.HandleReady(Get("/-/ready"));
  EXPECT_EQ(before.status, 503u);
  EXPECT_TRUE(Contains(before.body, "first reap")) << before.body;
  EXPECT_EQ(gw.HandleHealth(Get("/-/healthy")).status, 200u) << "healthy before ready";

  gw.Start();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  HttpResponse after;
  do {
    after = gw.HandleReady(Get("/-/ready"));
    if (after.status == 200) break;
    std::this_thread::sleep_for(5ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(after.status, 200u);
  EXPECT_EQ(after.body, "shmetrics-gateway is Ready.\n");
  gw.Stop();
}

TEST(GatewayEndpointsTest, ScrapesBeyondMaxRequestsAreRefusedAndCounted) {
  ScopedRegionName name("gw-max");
  GatewayOptions options = Options(name.name);
  options.max_requests = 1;
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  bool first = true;
  options.before_render = [&] {
    if (!first) return;
    first = false;
    entered.set_value();
    released.wait();
  };
  Gateway gw(options);
  auto held = std::async(std::launch::async, [&] { return gw.HandleMetrics(Get("/metrics")); });
  entered.get_future().wait();  // the first scrape is rendering, and holds the only place

  const HttpResponse refused = gw.HandleMetrics(Get("/metrics"));
  EXPECT_EQ(refused.status, 503u);
  EXPECT_TRUE(Contains(refused.body, "--web.max-requests")) << refused.body;

  release.set_value();
  EXPECT_EQ(held.get().status, 200u);
  const HttpResponse next = gw.HandleMetrics(Get("/metrics"));  // the place is free again
  ASSERT_EQ(next.status, 200u);
  EXPECT_TRUE(Contains(next.body, "\nshmetrics_scrapes_refused_total 1\n")) << next.body;
}

TEST(GatewayEndpointsTest, ZeroMaxRequestsMeansNoLimit) {
  ScopedRegionName name("gw-nomax");
  GatewayOptions options = Options(name.name);
  options.max_requests = 0;
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  bool first = true;
  options.before_render = [&] {
    if (!first) return;
    first = false;
    entered.set_value();
    released.wait();
  };
  Gateway gw(options);
  auto held = std::async(std::launch::async, [&] { return gw.HandleMetrics(Get("/metrics")); });
  entered.get_future().wait();
  EXPECT_EQ(gw.HandleMetrics(Get("/metrics")).status, 200u);
  release.set_value();
  EXPECT_EQ(held.get().status, 200u);
}

TEST(GatewayEndpointsTest, BuildInfoNamesTheVersionAndLayout) {
  ScopedRegionName name("gw-build");
  Gateway gw(Options(name.name));
  const std::string body = gw.RenderMetrics();
  EXPECT_TRUE(Contains(body, "shmetrics_gateway_build_info{layout=\"" +
                                 std::to_string(shm::kLayoutVersion) + "\",version=\"" +
                                 GatewayVersion() + "\"} 1\n"))
      << body;
}

}  // namespace
}  // namespace shmetrics::gateway
