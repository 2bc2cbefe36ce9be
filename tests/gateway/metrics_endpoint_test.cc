// The /metrics endpoint: negotiated Content-Type for Prometheus' real headers, the ?format=
// override, gzip that decompresses to a valid body, Vary on every answer, the scrape deadline
// (503, skipped gzip), and the self-metrics that count all of it.
#include "metrics_endpoint.h"

#include <gtest/gtest.h>

#include <thread>

#include "format_test_support.h"
#include "gateway.h"
#include "gzip.h"
#include "test_region.h"

namespace shmetrics::gateway {
namespace {

using shmetrics::testing::ScopedRegionName;
using shmetrics::testing::SmallOptions;

constexpr const char* kPrometheus242Accept =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
constexpr const char* kPrometheus242NativeHistogramsAccept =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,application/"
    "openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

std::string Header(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return {};
}

// Counter value from a registry, by family and labels; -1 when absent.
double CounterValue(prometheus::Registry& registry, const std::string& family,
                    const std::vector<std::pair<std::string, std::string>>& labels) {
  for (const auto& f : registry.Collect()) {
    if (f.name != family) continue;
    for (const auto& m : f.metric) {
      std::vector<std::pair<std::string, std::string>> ls;
      for (const auto& l : m.label) ls.emplace_back(l.name, l.value);
      if (ls == labels) return m.counter.value;
    }
  }
  return -1;
}

class GatewayEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::PopulateRegion(Client::Attach(name_.name, SmallOptions()));
    GatewayOptions options;
    options.region = name_.name;
    gateway_ = std::make_unique<Gateway>(options);
  }
  HttpResponse Get(std::string_view accept, std::string_view accept_encoding = "",
                   std::string_view query = "", double timeout = 0) {
    HttpRequestInfo info;
    info.method = "GET";
    info.path = "/metrics";
    info.query = query;
    info.accept = accept;
    info.accept_encoding = accept_encoding;
    info.scrape_timeout_seconds = timeout;
    return gateway_->HandleMetrics(info);
  }
  ScopedRegionName name_{"endpoint"};
  std::unique_ptr<Gateway> gateway_;
};

TEST_F(GatewayEndpointTest, Prometheus242GetsGzippedOpenMetrics) {
  const HttpResponse r = Get(kPrometheus242Accept, "gzip", "", 10);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
  EXPECT_EQ(Header(r, "Content-Encoding"), "gzip");
  EXPECT_EQ(Header(r, "Vary"), "Accept, Accept-Encoding");
  const std::string body = Gunzip(r.body);
  EXPECT_TRUE(body.ends_with("# EOF\n"));
  const testing::StrictParse parsed = testing::ParseOpenMetricsStrictly(body);
  EXPECT_TRUE(parsed.ok) << parsed.error;
}

TEST_F(GatewayEndpointTest, NativeHistogramsHeaderGetsProtobuf) {
  const HttpResponse r = Get(kPrometheus242NativeHistogramsAccept, "gzip", "", 10);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type,
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
            "encoding=delimited");
  std::string error;
  const auto samples = testing::DecodeProtobuf(Gunzip(r.body), nullptr, &error);
  EXPECT_TRUE(error.empty()) << error;
  EXPECT_EQ(samples.at("fmt_requests_total{method=GET,path=/a\"b}"), 5);
}

TEST_F(GatewayEndpointTest, NoHeadersGetPlainText) {
  const HttpResponse r = Get("");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(Header(r, "Content-Encoding"), "");
  EXPECT_EQ(Header(r, "Vary"), "Accept, Accept-Encoding");
  EXPECT_NE(r.body.find("\nfmt_sent_bytes_total 123456789\n"), std::string::npos);
}

TEST_F(GatewayEndpointTest, QueryOverridesAccept) {
  EXPECT_EQ(Get(kPrometheus242Accept, "", "format=text").content_type,
            "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(Get("", "", "format=openmetrics").content_type,
            "application/openmetrics-text; version=1.0.0; charset=utf-8");
  const HttpResponse bad = Get("", "", "format=json");
  EXPECT_EQ(bad.status, 400u);
  EXPECT_NE(bad.body.find("?format=openmetrics"), std::string::npos) << bad.body;
  EXPECT_EQ(Header(bad, "Vary"), "Accept, Accept-Encoding");
}

TEST_F(GatewayEndpointTest, ResponsesAreCountedByFormatAndEncoding) {
  Get(kPrometheus242Accept, "gzip");
  Get(kPrometheus242Accept, "gzip");
  Get(kPrometheus242NativeHistogramsAccept, "");
  const HttpResponse r = Get("", "");
  EXPECT_NE(r.body.find("shmetrics_scrapes_total{encoding=\"gzip\",format=\"openmetrics\"} 2\n"),
            std::string::npos);
  EXPECT_NE(r.body.find("shmetrics_scrapes_total{encoding=\"identity\",format=\"protobuf\"} 1\n"),
            std::string::npos);
  EXPECT_NE(r.body.find("shmetrics_scrapes_total{encoding=\"identity\",format=\"text\"} 0\n"),
            std::string::npos);
}

TEST_F(GatewayEndpointTest, ScrapeOverTheTimeoutAnswers503) {
  const HttpResponse r = Get(kPrometheus242Accept, "gzip", "", 1e-9);
  EXPECT_EQ(r.status, 503u);
  EXPECT_NE(r.body.find("X-Prometheus-Scrape-Timeout-Seconds"), std::string::npos) << r.body;
  EXPECT_EQ(Header(r, "Content-Encoding"), "");
  const HttpResponse next = Get("");
  EXPECT_NE(next.body.find("shmetrics_scrape_deadline_actions_total{action=\"answered_503\"} 1\n"),
            std::string::npos);
}

TEST(MetricsEndpointTest, SlowRendererPastTheTimeoutGets503) {
  prometheus::Registry registry;
  MetricsEndpoint endpoint(registry);
  HttpRequestInfo info;
  info.scrape_timeout_seconds = 0.01;
  const HttpResponse r = endpoint.Handle(info, [](Format) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    return std::string("x 1\n");
  });
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(CounterValue(registry, "shmetrics_scrape_deadline_actions_total",
                         {{"action", "answered_503"}}),
            1);
  EXPECT_EQ(CounterValue(registry, "shmetrics_scrapes_total",
                         {{"encoding", "identity"}, {"format", "text"}}),
            0);
}

TEST(MetricsEndpointTest, GzipIsSkippedWhenItWouldMissTheDeadline) {
  prometheus::Registry registry;
  MetricsEndpointOptions options;
  options.initial_gzip_bytes_per_second = 1000;  // pretend gzip is slow: 1 MB would take 1000 s
  MetricsEndpoint endpoint(registry, options);
  const std::string big(1 << 20, 'a');
  HttpRequestInfo info;
  info.accept_encoding = "gzip";
  info.scrape_timeout_seconds = 10;
  HttpResponse r = endpoint.Handle(info, [&](Format) { return big; });
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(Header(r, "Content-Encoding"), "");
  EXPECT_EQ(r.body, big);
  EXPECT_EQ(CounterValue(registry, "shmetrics_scrape_deadline_actions_total",
                         {{"action", "skipped_gzip"}}),
            1);
  EXPECT_EQ(CounterValue(registry, "shmetrics_scrapes_total",
                         {{"encoding", "identity"}, {"format", "text"}}),
            1);

  // Without a deadline gzip always happens.
  info.scrape_timeout_seconds = 0;
  r = endpoint.Handle(info, [&](Format) { return big; });
  EXPECT_EQ(Header(r, "Content-Encoding"), "gzip");
  EXPECT_EQ(Gunzip(r.body), big);
  EXPECT_EQ(
      CounterValue(registry, "shmetrics_scrapes_total", {{"encoding", "gzip"}, {"format", "text"}}),
      1);

  // The real throughput measured there now predicts that 1 MB fits in 10 s.
  info.scrape_timeout_seconds = 10;
  r = endpoint.Handle(info, [&](Format) { return big; });
  EXPECT_EQ(Header(r, "Content-Encoding"), "gzip");
}

TEST(MetricsEndpointTest, GzipFits) {
  EXPECT_TRUE(MetricsEndpoint::GzipFits(1000, 1000, 1.0));
  EXPECT_FALSE(MetricsEndpoint::GzipFits(1001, 1000, 1.0));
  EXPECT_FALSE(MetricsEndpoint::GzipFits(1, 1e9, -0.5));    // already late
  EXPECT_TRUE(MetricsEndpoint::GzipFits(1 << 30, 0, 0.1));  // no estimate: try
}

}  // namespace
}  // namespace shmetrics::gateway
