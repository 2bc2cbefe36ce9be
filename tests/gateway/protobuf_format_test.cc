// Protobuf delimited: decoded with the generated classes, the body says value by value what the
// text 0.0.4 body of the same snapshot says; the framing is protobuf's own delimited framing.

#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/delimited_message_util.h>
#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>

#include <chrono>

#include "exposition.h"
#include "format_test_support.h"
#include "gateway.h"
#include "metrics.pb.h"
#include "test_region.h"

namespace shmetrics::gateway {
namespace {

namespace pb = io::prometheus::client;
using shmetrics::testing::ScopedRegionName;
using shmetrics::testing::SmallOptions;
using testing::DecodeProtobuf;
using testing::ParseText;
using testing::SameSamples;
using testing::Samples;

std::vector<prometheus::MetricFamily> SelfFamilies() {
  prometheus::Registry r;
  prometheus::BuildCounter()
      .Name("self_events_total")
      .Help("Events.")
      .Register(r)
      .Add({{"kind", "x"}})
      .Increment(3);
  prometheus::BuildGauge().Name("self_level").Help("Level.").Register(r).Add({}).Set(-1.25);
  auto& h = prometheus::BuildHistogram()
                .Name("self_duration_seconds")
                .Help("Duration.")
                .Register(r)
                .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.01, 0.1});
  h.Observe(0.005);
  h.Observe(0.5);
  auto& s = prometheus::BuildSummary()
                .Name("self_size")
                .Help("Size.")
                .Register(r)
                .Add({}, prometheus::Summary::Quantiles{{0.5, 0.05}});
  s.Observe(10);
  return r.Collect();
}

std::vector<pb::MetricFamily> Records(const std::string& body) {
  std::vector<pb::MetricFamily> out;
  google::protobuf::io::ArrayInputStream in(body.data(), static_cast<int>(body.size()));
  while (true) {
    pb::MetricFamily mf;
    bool clean_eof = false;
    if (!google::protobuf::util::ParseDelimitedFromZeroCopyStream(&mf, &in, &clean_eof)) {
      EXPECT_TRUE(clean_eof) << "a record did not parse";
      break;
    }
    out.push_back(std::move(mf));
  }
  return out;
}

TEST(ProtobufFormatTest, DecodesToTheTextBodyValueByValue) {
  ScopedRegionName name("pb");
  Client& client = Client::Attach(name.name, SmallOptions());
  testing::PopulateRegion(client);
  RegionReader reader(shm::Region::Open(name.name));
  Snapshot snap;
  reader.Collect(snap);
  const auto self = SelfFamilies();
  std::string text, body;
  AppendExposition(Format::kText, reader, snap, self, text);
  AppendExposition(Format::kProtobuf, reader, snap, self, body);

  std::vector<std::string> errors;
  const Samples from_text = ParseText(text, &errors);
  ASSERT_TRUE(errors.empty()) << errors.front();
  std::string error;
  std::vector<std::string> families;
  Samples from_protobuf = DecodeProtobuf(body, &families, &error);
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_EQ(
      std::count_if(from_protobuf.begin(), from_protobuf.end(),
                    [](const auto& kv) { return kv.first.find("quantile=") != std::string::npos; }),
      1);
  std::string diff;
  EXPECT_TRUE(SameSamples(from_text, from_protobuf, &diff)) << diff;
  EXPECT_GT(from_protobuf.size(), 70u);
  EXPECT_EQ(from_protobuf.at("fmt_requests_total{method=GET,path=/a\"b}"), 5);

  auto has_family = [&](const std::string& line) {
    return std::find(families.begin(), families.end(), line) != families.end();
  };
  // Names as series names (a counter's with _total), raw HELP, units where declared.
  EXPECT_TRUE(has_family(
      "fmt_requests_total|COUNTER||Requests, with \"quotes\", a back\\slash and a\nnewline."));
  EXPECT_TRUE(has_family("fmt_sent_bytes_total|COUNTER|bytes|Bytes sent."));
  EXPECT_TRUE(has_family("fmt_latency_seconds|HISTOGRAM|seconds|Latency."));
  EXPECT_TRUE(has_family("fmt_gauge_all|GAUGE||A gauge in mode fmt_gauge_all"));
  EXPECT_TRUE(has_family("self_events_total|COUNTER||Events."));
  EXPECT_TRUE(has_family("self_size|SUMMARY||Size."));
}

TEST(ProtobufFormatTest, FramingIsProtobufsDelimitedFraming) {
  ScopedRegionName name("pb-framing");
  Client& client = Client::Attach(name.name, SmallOptions());
  testing::PopulateRegion(client);
  // One family large enough for a multi-byte length prefix (> 16 KiB).
  auto& big =
      BuildCounter().Name("fmt_big_total").Help("Many series.").Labels({"i"}).Register(client);
  for (int i = 0; i < 600; ++i) big.Add({"series-number-" + std::to_string(i)}).Inc();
  RegionReader reader(shm::Region::Open(name.name));
  Snapshot snap;
  reader.Collect(snap);
  std::string body;
  AppendExposition(Format::kProtobuf, reader, snap, body);

  const std::vector<pb::MetricFamily> records = Records(body);
  ASSERT_FALSE(records.empty());
  std::string again;
  {
    google::protobuf::io::StringOutputStream out(&again);
    for (const pb::MetricFamily& mf : records) {
      ASSERT_TRUE(google::protobuf::util::SerializeDelimitedToZeroCopyStream(mf, &out));
    }
  }
  EXPECT_EQ(again, body);
  size_t biggest = 0;
  for (const pb::MetricFamily& mf : records) biggest = std::max(biggest, mf.ByteSizeLong());
  EXPECT_GT(biggest, 16384u);
}

TEST(ProtobufFormatTest, CountersAndHistogramsCarryCreatedTimestamps) {
  ScopedRegionName name("pb-created");
  const auto start = std::chrono::system_clock::now();
  Client& client = Client::Attach(name.name, SmallOptions());
  testing::PopulateRegion(client);
  RegionReader reader(shm::Region::Open(name.name));
  Snapshot snap;
  reader.Collect(snap);
  std::string body;
  AppendExposition(Format::kProtobuf, reader, snap, body);
  const int64_t lo =
      std::chrono::duration_cast<std::chrono::seconds>(start.time_since_epoch()).count() - 5;
  const int64_t hi = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count() +
                     1;
  int counters = 0, histograms = 0;
  for (const pb::MetricFamily& mf : Records(body)) {
    for (const pb::Metric& m : mf.metric()) {
      if (mf.type() == pb::COUNTER) {
        ASSERT_TRUE(m.counter().has_created_timestamp()) << mf.name();
        EXPECT_GE(m.counter().created_timestamp().seconds(), lo);
        EXPECT_LE(m.counter().created_timestamp().seconds(), hi);
        ++counters;
      } else if (mf.type() == pb::HISTOGRAM) {
        ASSERT_TRUE(m.histogram().has_created_timestamp()) << mf.name();
        EXPECT_GE(m.histogram().created_timestamp().seconds(), lo);
        // Classic only: no native fields, so Prometheus reads it as a classic histogram.
        EXPECT_EQ(m.histogram().positive_span_size(), 0);
        EXPECT_FALSE(m.histogram().has_zero_threshold());
        EXPECT_FALSE(m.histogram().has_schema());
        ++histograms;
      }
    }
  }
  EXPECT_GT(counters, 5);
  EXPECT_GT(histograms, 4);
}

// Found by region_reader_fuzz_test: the classic and the native part of a histogram chose integer
// or float fields each on its own, so a native count that is not an integer (only a corrupt region
// holds one) beside integer classic counts gave float native buckets that Prometheus, which reads
// the integer fields unless sample_count_float or zero_count_float is > 0, found missing ("spans
// need 2 buckets, have 0"): the whole scrape failed.
TEST(ProtobufFormatTest, ClassicAndNativeCountsUseTheSameFields) {
  ScopedRegionName name("pb-native-float");
  Client& client = Client::Attach(name.name, SmallOptions());
  auto& family =
      BuildHistogram().Name("pb_mixed").Help("Both parts.").Buckets({1}).Native().Register(client);
  family.Get().Observe(0.5);
  family.Get().Observe(3);
  RegionReader reader(shm::Region::Open(name.name));
  Snapshot snap;
  reader.Collect(snap);
  auto histogram = [&](const Snapshot& s) {
    std::string body;
    AppendExposition(Format::kProtobuf, reader, s, body);
    for (const pb::MetricFamily& mf : Records(body)) {
      if (mf.name() == "pb_mixed" && mf.metric_size() == 1) return mf.metric(0).histogram();
    }
    ADD_FAILURE() << "no pb_mixed histogram";
    return pb::Histogram();
  };

  const pb::Histogram whole = histogram(snap);  // integer counts: the integer fields throughout
  EXPECT_EQ(whole.sample_count(), 2u);
  EXPECT_EQ(whole.bucket(0).cumulative_count(), 1u);
  EXPECT_EQ(whole.positive_delta_size(), 2);
  EXPECT_EQ(whole.positive_count_size(), 0);
  EXPECT_FALSE(whole.sample_count_float() > 0 || whole.zero_count_float() > 0);

  size_t changed = 0;
  for (auto& native : snap.native) {
    if (native && !native->positive.empty()) native->positive.begin()->second = 1.5, ++changed;
  }
  ASSERT_EQ(changed, 1u);
  const pb::Histogram fractional = histogram(snap);  // the float fields throughout
  EXPECT_TRUE(fractional.sample_count_float() > 0 || fractional.zero_count_float() > 0);
  EXPECT_EQ(fractional.sample_count_float(), 2);
  EXPECT_EQ(fractional.bucket(0).cumulative_count_float(), 1);
  EXPECT_EQ(fractional.bucket(0).cumulative_count(), 0u);
  EXPECT_EQ(fractional.positive_delta_size(), 0);
  ASSERT_EQ(fractional.positive_count_size(), 2);
  EXPECT_EQ(fractional.positive_count(0), 1.5);
}

TEST(ProtobufFormatTest, GatewayRenderDecodes) {
  ScopedRegionName name("pb-gateway");
  Client& client = Client::Attach(name.name, SmallOptions());
  testing::PopulateRegion(client);
  GatewayOptions options;
  options.region = name.name;
  Gateway gateway(options);
  const std::string body = gateway.Render(Format::kProtobuf);
  std::string error;
  const Samples s = DecodeProtobuf(body, nullptr, &error);
  EXPECT_TRUE(error.empty()) << error;
  EXPECT_EQ(s.at("fmt_sent_bytes_total{}"), 123456789);
  EXPECT_EQ(s.count("shmetrics_scrape_duration_seconds_count{}"), 1u);
}

// A large region (100k series: 70k counters, 20k gauges, 10k histograms of 10 buckets): the
// protobuf body decodes to exactly what the text body says. Encode times: bench/encode_bench.cc.
TEST(ProtobufFormatTest, LargeRegionDecodesToTheTextBody) {
  shmetrics::testing::ScopedRegionName name("pblarge");
  RegionOptions o;
  o.size_bytes = 96ull << 20;
  o.max_series = 131072;
  o.max_families = 64;
  o.max_slots = 8;
  o.max_cells = 1u << 18;
  o.string_bytes = 16u << 20;
  Client& client = Client::Attach(name.name, o);

  const char* methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH"};
  for (int f = 0; f < 7; ++f) {
    auto& fam = BuildCounter()
                    .Name("large_requests_" + std::to_string(f) + "_total")
                    .Help("Requests served, by method, code and route.")
                    .Labels({"method", "code", "route"})
                    .MaxSeries(10000)
                    .Register(client);
    for (int i = 0; i < 10000; ++i) {
      fam.Add({methods[i % 5], std::to_string(200 + (i / 5) % 4),
               "/api/v1/resource/" + std::to_string(i / 20)})
          .Add(static_cast<double>(i * 37 % 100003));
    }
  }
  for (int f = 0; f < 2; ++f) {
    auto& fam = BuildGauge()
                    .Name("large_queue_depth_" + std::to_string(f))
                    .Help("Queue depth per shard.")
                    .Labels({"shard"})
                    .MaxSeries(10000)
                    .Register(client);
    for (int i = 0; i < 10000; ++i) fam.Add({"shard-" + std::to_string(i)}).Set(i * 0.25);
  }
  auto& latency = BuildHistogram()
                      .Name("large_latency_seconds")
                      .Help("Latency per route.")
                      .Unit("seconds")
                      .Labels({"route"})
                      .Buckets({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5})
                      .MaxSeries(10000)
                      .Register(client);
  for (int i = 0; i < 10000; ++i) {
    Histogram& h = latency.Add({"/route/" + std::to_string(i)});
    for (int k = 0; k < 5; ++k) h.Observe((i % 100 + k) * 0.01);
  }
  RegionReader reader(shm::Region::Open(name.name));
  Snapshot snap;
  reader.Collect(snap);
  ASSERT_EQ(reader.series().size(), 100000u);
  std::string text, body;
  AppendExposition(Format::kText, reader, snap, text);
  AppendExposition(Format::kProtobuf, reader, snap, body);

  std::vector<std::string> errors;
  std::string error;
  const Samples from_text = ParseText(text, &errors);
  const Samples from_protobuf = DecodeProtobuf(body, nullptr, &error);
  ASSERT_TRUE(errors.empty());
  ASSERT_TRUE(error.empty()) << error;
  std::string diff;
  EXPECT_TRUE(SameSamples(from_text, from_protobuf, &diff)) << diff.substr(0, 2000);
  EXPECT_EQ(from_text.size(), 70000u + 20000u + 10000u * 13u);
}

}  // namespace
}  // namespace shmetrics::gateway
