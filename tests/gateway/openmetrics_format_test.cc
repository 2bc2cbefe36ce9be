// OpenMetrics 1.0: the body passes the strict parser of Debian's python3-prometheus-client, carries
// the same values as the text 0.0.4 body of the same snapshot, and spells numbers as Go does.

#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>

#include "exposition.h"
#include "exposition_primitives.h"
#include "format_test_support.h"
#include "gateway.h"
#include "test_region.h"

namespace shmetrics::gateway {
namespace {

using shmetrics::testing::ScopedRegionName;
using shmetrics::testing::SmallOptions;
using testing::ParseOpenMetricsStrictly;
using testing::ParseText;
using testing::SameSamples;
using testing::Samples;

std::string Number(double v) {
  std::string s;
  AppendOpenMetricsNumber(s, v);
  return s;
}

// Self-metric families of every type prometheus-cpp has.
std::shared_ptr<prometheus::Registry> SelfRegistry() {
  auto r = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter()
      .Name("self_events_total")
      .Help("Events.")
      .Register(*r)
      .Add({{"kind", "a\"b"}})
      .Increment(3);
  prometheus::BuildGauge()
      .Name("self_level")
      .Help("Level \\ with backslash.")
      .Register(*r)
      .Add({})
      .Set(-1.25);
  auto& h = prometheus::BuildHistogram()
                .Name("self_duration_seconds")
                .Help("Duration.")
                .Register(*r)
                .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.01, 0.1});
  h.Observe(0.005);
  h.Observe(0.5);
  auto& s = prometheus::BuildSummary()
                .Name("self_size")
                .Help("Size.")
                .Register(*r)
                .Add({}, prometheus::Summary::Quantiles{{0.5, 0.05}, {0.9, 0.01}});
  s.Observe(10);
  s.Observe(20);
  prometheus::BuildCounter().Name("self_empty_total").Help("No children.").Register(*r);
  return r;
}

// Samples OpenMetrics leaves out on purpose: _created (no text counterpart) and _sum/_count of
// histograms with negative buckets or a negative/NaN sum.
Samples WithoutOpenMetricsOmissions(Samples s) {
  for (auto it = s.begin(); it != s.end();) {
    const std::string& k = it->first;
    const bool omitted =
        k.starts_with("fmt_delta_celsius_sum") || k.starts_with("fmt_delta_celsius_count") ||
        k.starts_with("fmt_offset_sum") || k.starts_with("fmt_offset_count") ||
        k.starts_with("fmt_nan_observed_sum") || k.starts_with("fmt_nan_observed_count");
    it = omitted ? s.erase(it) : std::next(it);
  }
  return s;
}

Samples WithoutCreated(const Samples& s, Samples* created) {
  Samples out;
  for (const auto& [k, v] : s) {
    if (k.find("_created{") != std::string::npos) {
      (*created)[k] = v;
    } else {
      out[k] = v;
    }
  }
  return out;
}

TEST(OpenMetricsFormatTest, StrictParserAcceptsItAndValuesMatchText) {
  ScopedRegionName name("om");
  const double start =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  Client& client = Client::Attach(name.name, SmallOptions());
  testing::PopulateRegion(client);
  RegionReader reader(shm::Region::Open(name.name));
  Snapshot snap;
  reader.Collect(snap);
  const auto self = SelfRegistry()->Collect();

  std::string om;
  AppendExposition(Format::kOpenMetrics, reader, snap, self, om);
  std::string text;
  AppendExposition(Format::kText, reader, snap, self, text);

  const testing::StrictParse parsed = ParseOpenMetricsStrictly(om);
  ASSERT_TRUE(parsed.ok) << parsed.error << "\n" << om;

  std::vector<std::string> errors;
  const Samples text_samples = ParseText(text, &errors);
  ASSERT_TRUE(errors.empty()) << errors.front();
  Samples created;
  const Samples om_samples = WithoutCreated(parsed.samples, &created);
  const Samples& om_comparable = om_samples;
  std::string diff;
  EXPECT_TRUE(SameSamples(WithoutOpenMetricsOmissions(text_samples), om_comparable, &diff)) << diff;

  // What the region holds arrived (a spot check that the comparison compared something).
  EXPECT_EQ(om_samples.at("fmt_requests_total{method=GET,path=/a\"b}"), 5);
  EXPECT_EQ(om_samples.at("fmt_requests_total{method=PUT,path=line1\nline2}"), 0.5);
  EXPECT_EQ(om_samples.at("fmt_latency_seconds_bucket{le=1e-04,route=/}"), 2);
  EXPECT_TRUE(std::isnan(om_samples.at("fmt_special{v=nan}")));

  // _created for every counter and histogram series, and only there: the registration time.
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_EQ(created.count("fmt_requests_created{method=GET,path=/a\"b}"), 1u);
  EXPECT_EQ(created.count("fmt_latency_seconds_created{route=/api}"), 1u);
  EXPECT_EQ(created.count("fmt_idle_created{x=y}"), 1u);
  for (const auto& [k, v] : created) {
    EXPECT_TRUE(k.starts_with("fmt_requests_created") || k.starts_with("fmt_sent_bytes_created") ||
                k.starts_with("fmt_never_created") || k.starts_with("fmt_no_help_created") ||
                k.starts_with("fmt_latency_seconds_created") ||
                k.starts_with("fmt_delta_celsius_created") || k.starts_with("fmt_offset_created") ||
                k.starts_with("fmt_nan_observed_created") || k.starts_with("fmt_idle_created") ||
                k.starts_with("fmt_payload_bytes_created"))
        << k;
    EXPECT_GE(v, start - 5) << k;
    EXPECT_LE(v, now + 1) << k;
  }

  // Metadata as the parser read it: base names, units, HELP unescaped back to the original.
  auto has_family = [&](const std::string& line) {
    return std::find(parsed.families.begin(), parsed.families.end(), line) != parsed.families.end();
  };
  EXPECT_TRUE(
      has_family("fmt_requests|counter||Requests, with \"quotes\", a back\\slash and a\nnewline."));
  EXPECT_TRUE(has_family("fmt_sent_bytes|counter|bytes|Bytes sent."));
  EXPECT_TRUE(has_family("fmt_latency_seconds|histogram|seconds|Latency."));
  EXPECT_TRUE(has_family("fmt_room_celsius|gauge|celsius|Temperature."));
  EXPECT_TRUE(has_family("fmt_no_help|counter||"));
  EXPECT_TRUE(has_family("fmt_gauge_all|gauge||A gauge in mode fmt_gauge_all"));
  EXPECT_TRUE(has_family("self_events|counter||Events."));
  EXPECT_TRUE(has_family("self_size|summary||Size."));
  EXPECT_FALSE(has_family("self_empty|counter||No children."));
}

// Found by region_reader_fuzz_test: a summary's _sum is counter-like in OpenMetrics, and a
// summary that observed negative values made the strict parser reject the whole body ("Counter-like
// samples cannot be negative").
TEST(OpenMetricsFormatTest, SummaryWithNegativeOrNaNSumKeepsItsCountOnly) {
  ScopedRegionName name("om-summary-sum");
  Client& client = Client::Attach(name.name, SmallOptions());
  auto& family = BuildSummary().Name("om_offset").Help("Signed.").Labels({"k"}).Register(client);
  family.Add({"negative"}).Observe(-5);
  family.Add({"nan"}).Observe(std::numeric_limits<double>::quiet_NaN());
  family.Add({"positive"}).Observe(2);
  RegionReader reader(shm::Region::Open(name.name));
  Snapshot snap;
  reader.Collect(snap);
  std::string om;
  AppendExposition(Format::kOpenMetrics, reader, snap, om);
  const testing::StrictParse parsed = ParseOpenMetricsStrictly(om);
  ASSERT_TRUE(parsed.ok) << parsed.error << "\n" << om;
  EXPECT_EQ(parsed.samples.at("om_offset_count{k=negative}"), 1);
  EXPECT_EQ(parsed.samples.count("om_offset_sum{k=negative}"), 0u);
  EXPECT_EQ(parsed.samples.at("om_offset_count{k=nan}"), 1);
  EXPECT_EQ(parsed.samples.count("om_offset_sum{k=nan}"), 0u);
  EXPECT_EQ(parsed.samples.at("om_offset_sum{k=positive}"), 2);
  std::string text;
  AppendExposition(Format::kText, reader, snap, text);  // text 0.0.4 keeps the sum
  EXPECT_NE(text.find("om_offset_sum{k=\"negative\"} -5\n"), std::string::npos) << text;
}

TEST(OpenMetricsFormatTest, EveryGaugeModeIsServed) {
  ScopedRegionName name("om-gauges");
  Client& client = Client::Attach(name.name, SmallOptions());
  testing::PopulateRegion(client);
  RegionReader reader(shm::Region::Open(name.name));
  Snapshot snap;
  reader.Collect(snap);
  std::string om;
  AppendExposition(Format::kOpenMetrics, reader, snap, om);
  const testing::StrictParse parsed = ParseOpenMetricsStrictly(om);
  ASSERT_TRUE(parsed.ok) << parsed.error;
  const std::string self_pid = std::to_string(::getpid());
  auto value = [&](const std::string& key) {
    auto it = parsed.samples.find(key);
    return it == parsed.samples.end() ? std::numeric_limits<double>::quiet_NaN() : it->second;
  };
  // This process set 1.5 and stays; a forked worker set 4 and died.
  EXPECT_EQ(value("fmt_gauge_livesum{shard=a}"), 1.5);
  EXPECT_EQ(value("fmt_gauge_sum{shard=a}"), 5.5);
  EXPECT_EQ(value("fmt_gauge_max{shard=a}"), 4);
  EXPECT_EQ(value("fmt_gauge_livemax{shard=a}"), 1.5);
  EXPECT_EQ(value("fmt_gauge_min{shard=a}"), 1.5);
  EXPECT_EQ(value("fmt_gauge_livemin{shard=a}"), 1.5);
  EXPECT_EQ(value("fmt_gauge_mostrecent{shard=a}"), 4);
  EXPECT_EQ(value("fmt_gauge_livemostrecent{shard=a}"), 1.5);
  EXPECT_EQ(value("fmt_gauge_liveall{pid=" + self_pid + ",shard=a}"), 1.5);
  EXPECT_EQ(value("fmt_gauge_all{pid=" + self_pid + ",shard=a}"), 1.5);
  int all_series = 0, liveall_series = 0;
  for (const auto& [k, v] : parsed.samples) {
    all_series += k.starts_with("fmt_gauge_all{");
    liveall_series += k.starts_with("fmt_gauge_liveall{");
  }
  EXPECT_EQ(all_series, 2);  // the dead worker is retained in mode all
  EXPECT_EQ(liveall_series, 1);
}

TEST(OpenMetricsFormatTest, GatewayRenderEndsWithOneEof) {
  ScopedRegionName name("om-gateway");
  Client& client = Client::Attach(name.name, SmallOptions());
  testing::PopulateRegion(client);
  GatewayOptions options;
  options.region = name.name;
  Gateway gateway(options);
  const std::string body = gateway.Render(Format::kOpenMetrics);
  ASSERT_TRUE(body.ends_with("\n# EOF\n"));
  EXPECT_EQ(body.find("# EOF"), body.size() - 6);
  const testing::StrictParse parsed = ParseOpenMetricsStrictly(body);
  EXPECT_TRUE(parsed.ok) << parsed.error;
  EXPECT_EQ(parsed.samples.count("shmetrics_scrapes_total{encoding=identity,format=openmetrics}"),
            1u);
}

TEST(OpenMetricsFormatTest, EmptyRegionIsJustEof) {
  ScopedRegionName name("om-empty");
  RegionReader reader(shm::Region::OpenOrCreate(name.name, SmallOptions()));
  Snapshot snap;
  reader.Collect(snap);
  std::string om;
  AppendExposition(Format::kOpenMetrics, reader, snap, om);
  EXPECT_EQ(om, "# EOF\n");
  EXPECT_TRUE(ParseOpenMetricsStrictly(om).ok);
}

TEST(OpenMetricsFormatTest, NumbersAreSpelledAsGoSpellsThem) {
  EXPECT_EQ(Number(1), "1.0");
  EXPECT_EQ(Number(0), "0.0");
  EXPECT_EQ(Number(-1), "-1.0");
  EXPECT_EQ(Number(0.1), "0.1");
  EXPECT_EQ(Number(2.5), "2.5");
  EXPECT_EQ(Number(0.0001), "0.0001");
  EXPECT_EQ(Number(0.00012), "0.00012");
  EXPECT_EQ(Number(1e-05), "1e-05");
  EXPECT_EQ(Number(100000), "100000.0");
  EXPECT_EQ(Number(999999), "999999.0");
  EXPECT_EQ(Number(1e6), "1e+06");
  EXPECT_EQ(Number(1234567), "1.234567e+06");
  EXPECT_EQ(Number(123456789), "1.23456789e+08");
  EXPECT_EQ(Number(1e20), "1e+20");
  EXPECT_EQ(Number(1.5e300), "1.5e+300");
  EXPECT_EQ(Number(5e-324), "5e-324");
  EXPECT_EQ(Number(-0.5), "-0.5");
  EXPECT_EQ(Number(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(Number(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(Number(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(OpenMetricsFormatTest, NumbersRoundTrip) {
  std::mt19937_64 rng(99);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t bits = rng();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    if (!std::isfinite(v)) continue;
    const std::string s = Number(v);
    EXPECT_EQ(std::strtod(s.c_str(), nullptr), v) << s;
  }
  for (int i = -2000000; i < 2000000; i += 997) {
    EXPECT_EQ(std::strtod(Number(i).c_str(), nullptr), i);
  }
}

TEST(OpenMetricsFormatTest, UnitMustBeAnUnderscoreSuffix) {
  EXPECT_TRUE(UnitMatchesName("a_seconds", "seconds"));
  EXPECT_FALSE(UnitMatchesName("aseconds", "seconds"));
  EXPECT_FALSE(UnitMatchesName("seconds", "seconds"));
  EXPECT_FALSE(UnitMatchesName("_seconds", "seconds"));
  EXPECT_FALSE(UnitMatchesName("a_seconds", ""));
  EXPECT_FALSE(UnitMatchesName("a_bytes", "seconds"));
}

}  // namespace
}  // namespace shmetrics::gateway
