// Native histograms and exemplars on the wire: protobuf decoded with the generated classes gives
// back exactly the merged buckets, and OpenMetrics exemplars pass the strict parser.
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/delimited_message_util.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <map>

#include "exposition.h"
#include "format_test_support.h"
#include "metrics.pb.h"
#include "region_reader.h"
#include "shmetrics/shm/native_histogram.h"
#include "test_region.h"

namespace shmetrics::gateway {
namespace {

namespace pb = io::prometheus::client;
using shmetrics::testing::ScopedRegionName;

shm::RegionOptions Options() {
  shm::RegionOptions o = shmetrics::testing::SmallOptions();
  o.size_bytes = 16u << 20;
  return o;
}

std::map<std::string, pb::MetricFamily> Decode(const std::string& body) {
  std::map<std::string, pb::MetricFamily> out;
  google::protobuf::io::ArrayInputStream in(body.data(), static_cast<int>(body.size()));
  for (;;) {
    pb::MetricFamily mf;
    bool clean_eof = false;
    if (!google::protobuf::util::ParseDelimitedFromZeroCopyStream(&mf, &in, &clean_eof)) break;
    out[mf.name()] = mf;
  }
  return out;
}

// Buckets from spans and deltas, as Prometheus reads them.
std::map<int32_t, double> Expand(const google::protobuf::RepeatedPtrField<pb::BucketSpan>& spans,
                                 const google::protobuf::RepeatedField<int64_t>& deltas) {
  std::map<int32_t, double> out;
  int32_t index = 0;
  int64_t count = 0;
  int d = 0;
  for (int s = 0; s < spans.size(); ++s) {
    index += spans[s].offset();
    for (uint32_t i = 0; i < spans[s].length(); ++i, ++index) {
      count += deltas[d++];
      out[index] = static_cast<double>(count);
    }
  }
  return out;
}

class NativeExemplarFormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Client& c = Client::Attach(name_.name, Options());
    auto& lat = BuildHistogram().Name("rpc_seconds").Help("RPC.").Native(2, 20, 1e-6).Register(c);
    auto& req = BuildCounter().Name("req_total").Help("Requests.").Exemplars().Register(c);
    auto& size = BuildHistogram()
                     .Name("size_bytes")
                     .Help("Sizes.")
                     .Buckets({10, 100})
                     .Exemplars()
                     .Register(c);
    const pid_t child = ::fork();  // a worker that dies: folded, still served
    if (child == 0) {
      for (int i = 1; i <= 500; ++i) lat.Get().Observe(i * 0.01);
      req.Get().Add(1, {{"trace_id", "dead"}});
      _exit(0);
    }
    ::waitpid(child, nullptr, 0);
    for (int i = 1; i <= 500; ++i) {
      lat.Get().Observe(-i * 0.001);
      values_.push_back(-i * 0.001);
      values_.push_back(i * 0.01);
    }
    lat.Get().Observe(0);  // zero bucket
    values_.push_back(0);
    req.Get().Add(2, {{"trace_id", "abc"}, {"span_id", "1"}});
    size.Get().Observe(5, {{"trace_id", "small"}});
    size.Get().Observe(1000, {{"trace_id", "huge"}});
    reader_ = std::make_unique<RegionReader>(shm::Region::Open(name_.name));
    reader_->Collect(snap_);
  }

  ScopedRegionName name_{"fmtnative"};
  std::unique_ptr<RegionReader> reader_;
  Snapshot snap_;
  std::vector<double> values_;
};

TEST_F(NativeExemplarFormatTest, ProtobufCarriesTheMergedNativeBuckets) {
  std::string body;
  AppendExposition(Format::kProtobuf, *reader_, snap_, body);
  auto families = Decode(body);
  ASSERT_EQ(families.count("rpc_seconds"), 1u);
  const pb::Histogram& h = families["rpc_seconds"].metric(0).histogram();
  EXPECT_EQ(h.sample_count(), values_.size());
  EXPECT_EQ(h.zero_threshold(), 1e-6);
  EXPECT_EQ(h.zero_count(), 1u);
  EXPECT_LE(h.schema(), 2);  // 10 buckets per sign cannot hold 0.01..5 at schema 2: reduced
  // Reference: every observed value bucketed directly at the served schema.
  std::map<int32_t, double> pos, neg;
  for (double v : values_) {
    if (std::fabs(v) <= 1e-6) continue;
    (v > 0 ? pos : neg)[shm::native::BucketKey(std::fabs(v), h.schema())] += 1;
  }
  EXPECT_EQ(Expand(h.positive_span(), h.positive_delta()), pos);
  EXPECT_EQ(Expand(h.negative_span(), h.negative_delta()), neg);
}

TEST_F(NativeExemplarFormatTest, ProtobufCarriesTheLatestExemplars) {
  std::string body;
  AppendExposition(Format::kProtobuf, *reader_, snap_, body);
  auto families = Decode(body);
  const pb::Counter& c = families["req_total"].metric(0).counter();
  ASSERT_TRUE(c.has_exemplar());
  EXPECT_EQ(c.exemplar().value(), 2);
  ASSERT_EQ(c.exemplar().label_size(), 2);
  EXPECT_EQ(c.exemplar().label(0).value(), "abc");
  EXPECT_GT(c.exemplar().timestamp().seconds(), 1700000000);
  const pb::Histogram& h = families["size_bytes"].metric(0).histogram();
  ASSERT_EQ(h.bucket_size(), 3);  // 10, 100, and +Inf written because it carries an exemplar
  EXPECT_EQ(h.bucket(0).exemplar().label(0).value(), "small");
  EXPECT_FALSE(h.bucket(1).has_exemplar());
  EXPECT_TRUE(std::isinf(h.bucket(2).upper_bound()));
  EXPECT_EQ(h.bucket(2).cumulative_count(), 2u);
  EXPECT_EQ(h.bucket(2).exemplar().label(0).value(), "huge");
}

TEST_F(NativeExemplarFormatTest, OpenMetricsExemplarsPassTheStrictParser) {
  std::string body;
  AppendExposition(Format::kOpenMetrics, *reader_, snap_, body);
  EXPECT_NE(body.find("req_total 3.0 # {trace_id=\"abc\",span_id=\"1\"} 2.0 "), std::string::npos)
      << body;
  EXPECT_NE(body.find("size_bytes_bucket{le=\"+Inf\"} 2.0 # {trace_id=\"huge\"} 1000.0 "),
            std::string::npos)
      << body;
  const testing::StrictParse parsed = testing::ParseOpenMetricsStrictly(body);
  EXPECT_TRUE(parsed.ok) << parsed.error << "\n" << body;
  // A native-only histogram still has its count and sum in text formats.
  EXPECT_NE(body.find("rpc_seconds_count 1001.0"), std::string::npos) << body;
}

}  // namespace
}  // namespace shmetrics::gateway
