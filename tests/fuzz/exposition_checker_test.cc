// The strict checkers must accept what the formats allow and catch each class of violation: a
// checker that accepted everything would make the region fuzzer vacuous. Also runs the real
// encoders over the fuzz fixture's pristine region: those bodies must pass.
#include "exposition_checker.h"

#include <gtest/gtest.h>

#include "exposition.h"
#include "metrics.pb.h"
#include "region_fixture.h"
#include "region_reader.h"

namespace shmetrics::fuzz {
namespace {

namespace pb = io::prometheus::client;

// `problem` names `category` (or is empty when category is "").
::testing::AssertionResult HasCategory(const std::string& problem, const std::string& category) {
  if (category.empty()) {
    if (problem.empty()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "unexpected violation: " << problem;
  }
  if (!problem.empty() && problem.substr(0, problem.find(':')) == category)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "expected a " << category << " violation, got \"" << problem << "\"";
}
#define EXPECT_CATEGORY(problem, category) EXPECT_TRUE(HasCategory((problem), (category)))

TEST(Utf8Test, StrictRfc3629) {
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("żółw ✓ \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xc0\x80"));          // overlong NUL
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // U+110000
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));  // truncated
  EXPECT_EQ(CodePoints("a✓\xf0\x9f\x98\x80"), 3u);
}

TEST(TextCheckerTest, AcceptsValidBodies) {
  EXPECT_CATEGORY(CheckText004(""), "");
  EXPECT_CATEGORY(CheckText004("# HELP a_total Help with \\\\ and \\n.\n# TYPE a_total counter\n"
                               "a_total{x=\"q\\\"uote\",y=\"\"} 1\na_total 2 1700000000000\n"),
                  "");
  EXPECT_CATEGORY(CheckText004("# TYPE g gauge\ng NaN\n# TYPE h gauge\nh{ a = \"b\" , } -Inf\n"),
                  "");
  EXPECT_CATEGORY(
      CheckText004("# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
                   "h_sum 3\nh_count 2\n"
                   "h_bucket{a=\"x\",le=\"-1\"} 0\nh_bucket{a=\"x\",le=\"+Inf\"} 0\n"),
      "");
  EXPECT_CATEGORY(CheckText004("# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 1\n"),
                  "");
  EXPECT_CATEGORY(CheckText004("# a comment\n\n# TYPE u untyped\nu 1e+20\n"), "");
}

TEST(TextCheckerTest, CatchesEachViolation) {
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na 1"), "eof");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na{x=\"\xc0\x80\"} 1\n"), "utf8");
  EXPECT_CATEGORY(CheckText004("a 1\n"), "metadata");  // no TYPE
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\n# TYPE a gauge\na 1\n"), "metadata");
  EXPECT_CATEGORY(CheckText004("# HELP a x\n# HELP a y\n# TYPE a gauge\n"), "metadata");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na 1\n# HELP a late\n"), "metadata");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\n"),
                  "metadata");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\nb 1\n"), "metadata");
  EXPECT_CATEGORY(CheckText004("# TYPE a wrong\n"), "metadata");
  EXPECT_CATEGORY(CheckText004("# HELP a bad \\t escape\n"), "escape");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na{x=\"\\t\"} 1\n"), "escape");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n"), "label");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na{__x=\"1\"} 1\n"), "label");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na{1x=\"1\"} 1\n"), "label");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na{x=\"1} 1\n"), "label");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na 1.2.3\n"), "number");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na 1e999\n"), "number");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na 0x10\n"), "number");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na 1 2.5\n"), "number");
  EXPECT_CATEGORY(CheckText004("# TYPE 0a gauge\n"), "name");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n"), "duplicate");
  EXPECT_CATEGORY(CheckText004("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 1\na{x=\"1\",y=\"\"} 1\n"),
                  "");
  EXPECT_CATEGORY(CheckText004("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# TYPE "
                               "h_count gauge\nh_count{a=\"b\"} 1\n"),
                  "clash");
  EXPECT_CATEGORY(CheckText004("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n"),
                  "histogram");
  EXPECT_CATEGORY(CheckText004("# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n"
                               "h_bucket{le=\"+Inf\"} 1\n"),
                  "histogram");
  EXPECT_CATEGORY(
      CheckText004("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"),
      "histogram");
  EXPECT_CATEGORY(CheckText004("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n"),
                  "histogram");
  EXPECT_CATEGORY(CheckText004("# TYPE h histogram\nh_bucket{le=\"x\"} 2\n"), "histogram");
  EXPECT_CATEGORY(CheckText004("# TYPE h histogram\nh_bucket 2\n"), "histogram");
  EXPECT_CATEGORY(CheckText004("# TYPE h histogram\nh_bucket{a=\"1\",le=\"+Inf\"} 1\n"
                               "h_bucket{a=\"2\",le=\"+Inf\"} 1\nh_count{a=\"1\"} 1\n"),
                  "grouping");
  EXPECT_CATEGORY(CheckText004("# TYPE s summary\ns{quantile=\"2\"} 1\n"), "summary");
  EXPECT_CATEGORY(CheckText004("# TYPE s summary\ns 1\n"), "summary");
}

TEST(OpenMetricsCheckerTest, AcceptsValidBodies) {
  EXPECT_CATEGORY(CheckOpenMetrics("# EOF\n"), "");
  EXPECT_CATEGORY(CheckOpenMetrics("# EOF"), "");
  EXPECT_CATEGORY(
      CheckOpenMetrics(
          "# TYPE a counter\n# UNIT a \n# HELP a He said \\\"x\\\" \\\\ \\n\n"
          "a_total{x=\"1\"} 1.0 # {trace_id=\"abc\"} 0.5 1700000000.123\n"
          "a_created{x=\"1\"} 1.7e+09\n"
          "# TYPE b_seconds histogram\n# UNIT b_seconds seconds\n"
          "b_seconds_bucket{le=\"0.1\"} 0 # {id=\"x\"} 0.05\nb_seconds_bucket{le=\"+Inf\"} 2\n"
          "b_seconds_count 2\nb_seconds_sum 3.5\nb_seconds_created 1.0\n"
          "# TYPE c histogram\nc_bucket{le=\"-1.0\"} 1\nc_bucket{le=\"+Inf\"} 1\n"
          "# TYPE g gauge\ng NaN\ng{a=\"b\"} -1e-05\n"
          "# TYPE s summary\ns_count 1\ns_sum 2\n# EOF\n"),
      "");
}

TEST(OpenMetricsCheckerTest, CatchesEachViolation) {
  EXPECT_CATEGORY(CheckOpenMetrics(""), "eof");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE a gauge\na 1\n"), "eof");
  EXPECT_CATEGORY(CheckOpenMetrics("# EOF\n# EOF\n"), "eof");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE a gauge\n\na 1\n# EOF\n"), "eof");
  EXPECT_CATEGORY(CheckOpenMetrics("# EOF\n\n"), "eof");
  EXPECT_CATEGORY(CheckOpenMetrics("# a comment\n# EOF\n"), "metadata");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE a untyped\n# EOF\n"), "metadata");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE a_seconds gauge\n# UNIT a_seconds bytes\n# EOF\n"),
                  "metadata");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE a gauge\n# HELP a raw \" quote\n# EOF\n"), "escape");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE a gauge\na  1\n# EOF\n"), "number");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE a gauge\na{x=\"1\",} 1\n# EOF\n"), "label");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE a counter\na 1\n# EOF\n"), "metadata");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE a counter\na_total -1\n# EOF\n"), "counter");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE a counter\na_total NaN\n# EOF\n"), "counter");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE s summary\ns_count 1\ns_sum -2\n# EOF\n"), "counter");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE s summary\ns_count 1.5\ns_sum 2\n# EOF\n"), "histogram");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE a counter\n# TYPE a_total gauge\n# EOF\n"), "clash");
  EXPECT_CATEGORY(
      CheckOpenMetrics("# TYPE a counter\na_total 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\n# EOF\n"),
      "metadata");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE g gauge\ng 1 # {a=\"b\"} 1\n# EOF\n"), "exemplar");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE a counter\na_total 1 # {a=\"" + std::string(128, 'x') +
                                   "\"} 1\n# EOF\n"),
                  "exemplar");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\n# EOF\n"),
                  "histogram");
  EXPECT_CATEGORY(
      CheckOpenMetrics("# TYPE h histogram\nh_bucket{le=\"-1\"} 1\nh_bucket{le=\"+Inf\"} 1\n"
                       "h_count 1\nh_sum 1\n# EOF\n"),
      "histogram");
  EXPECT_CATEGORY(
      CheckOpenMetrics(
          "# TYPE h histogram\nh_bucket{le=\"1\"} 0.5\nh_bucket{le=\"+Inf\"} 1\n# EOF\n"),
      "histogram");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE h histogram\nh_bucket{le=\"Inf\"} 1\n# EOF\n"),
                  "histogram");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE h histogram\nh_bucket{le=\"1\"} 1\n# EOF\n"),
                  "histogram");
  EXPECT_CATEGORY(
      CheckOpenMetrics("# TYPE g gauge\ng{a=\"1\"} 1\ng{a=\"2\"} 1\ng{a=\"1\"} 1\n# EOF\n"),
      "duplicate");
  EXPECT_CATEGORY(CheckOpenMetrics("# TYPE c counter\nc_total{a=\"1\"} 1\nc_total{a=\"2\"} 1\n"
                                   "c_created{a=\"1\"} 1\n# EOF\n"),
                  "grouping");
}

std::string Delimited(const std::vector<pb::MetricFamily>& families) {
  std::string out;
  for (const pb::MetricFamily& f : families) {
    std::string bytes = f.SerializeAsString();
    size_t n = bytes.size();
    do {
      out += static_cast<char>((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
      n >>= 7;
    } while (n != 0);
    out += bytes;
  }
  return out;
}

pb::MetricFamily Family(const std::string& name, pb::MetricType type) {
  pb::MetricFamily f;
  f.set_name(name);
  f.set_type(type);
  return f;
}

TEST(ProtobufCheckerTest, AcceptsValidBodies) {
  EXPECT_CATEGORY(CheckProtobufDelimited(""), "");
  pb::MetricFamily c = Family("a_total", pb::COUNTER);
  c.add_metric()->mutable_counter()->set_value(1);
  pb::MetricFamily h = Family("h", pb::HISTOGRAM);
  pb::Histogram* hist = h.add_metric()->mutable_histogram();
  hist->set_sample_count(3);
  hist->add_bucket()->set_upper_bound(1);
  hist->mutable_bucket(0)->set_cumulative_count(1);
  hist->set_schema(0);
  hist->set_zero_threshold(1e-9);
  auto* span = hist->add_positive_span();
  span->set_offset(-2);
  span->set_length(2);
  hist->add_positive_delta(1);
  hist->add_positive_delta(1);
  EXPECT_CATEGORY(CheckProtobufDelimited(Delimited({c, h})), "");
}

TEST(ProtobufCheckerTest, CatchesEachViolation) {
  EXPECT_CATEGORY(CheckProtobufDelimited("\x05"
                                         "ab"),
                  "protobuf");
  pb::MetricFamily c = Family("a_total", pb::COUNTER);
  c.add_metric()->mutable_gauge()->set_value(1);
  EXPECT_CATEGORY(CheckProtobufDelimited(Delimited({c})), "protobuf");
  pb::MetricFamily bad_label = Family("a", pb::GAUGE);
  auto* l = bad_label.add_metric();
  l->mutable_gauge();
  l->add_label()->set_name("x");
  l->mutable_label(0)->set_value("\xc0\x80");
  EXPECT_CATEGORY(CheckProtobufDelimited(Delimited({bad_label})), "utf8");
  pb::MetricFamily dup = Family("a", pb::GAUGE);
  dup.add_metric()->mutable_gauge();
  dup.add_metric()->mutable_gauge();
  EXPECT_CATEGORY(CheckProtobufDelimited(Delimited({dup})), "duplicate");
  pb::MetricFamily g = Family("a", pb::GAUGE);
  EXPECT_CATEGORY(CheckProtobufDelimited(Delimited({g, g})), "metadata");
  pb::MetricFamily h = Family("h", pb::HISTOGRAM);
  EXPECT_CATEGORY(CheckProtobufDelimited(Delimited({h, Family("h_count", pb::GAUGE)})), "clash");
  pb::MetricFamily unit = Family("a_seconds", pb::GAUGE);
  unit.set_unit("bytes");
  EXPECT_CATEGORY(CheckProtobufDelimited(Delimited({unit})), "metadata");

  auto native = [](auto edit) {
    pb::MetricFamily f = Family("n", pb::HISTOGRAM);
    pb::Histogram* x = f.add_metric()->mutable_histogram();
    x->set_sample_count(2);
    x->set_schema(3);
    auto* s = x->add_positive_span();
    s->set_offset(0);
    s->set_length(2);
    x->add_positive_delta(1);
    x->add_positive_delta(0);
    edit(*x);
    return CheckProtobufDelimited(Delimited({f}));
  };
  EXPECT_CATEGORY(native([](pb::Histogram&) {}), "");
  EXPECT_CATEGORY(native([](pb::Histogram& x) { x.set_schema(9); }), "native");
  EXPECT_CATEGORY(native([](pb::Histogram& x) { x.add_positive_delta(1); }), "native");
  EXPECT_CATEGORY(native([](pb::Histogram& x) { x.set_positive_delta(1, -2); }), "native");
  EXPECT_CATEGORY(native([](pb::Histogram& x) { x.add_positive_count(1); }), "native");
  EXPECT_CATEGORY(native([](pb::Histogram& x) {
                    x.set_sample_count_float(2);  // read as a float histogram: deltas ignored
                  }),
                  "native");
  EXPECT_CATEGORY(native([](pb::Histogram& x) {
                    auto* s = x.add_positive_span();
                    s->set_offset(-1);
                    s->set_length(0);
                  }),
                  "native");
  EXPECT_CATEGORY(native([](pb::Histogram& x) {
                    x.add_bucket()->set_upper_bound(2);
                    x.add_bucket()->set_upper_bound(1);
                  }),
                  "histogram");
}

// The encoders over the fuzz fixture's pristine region: every body passes.
TEST(EncodersTest, PristineFixtureRegionPassesEveryChecker) {
  RegionFixture& fixture = RegionFixture::Get();
  fixture.Restore();
  gateway::RegionReader reader(shm::Region::Open(fixture.name()));
  gateway::Snapshot snapshot;
  for (int scrape = 0; scrape < 2; ++scrape) {
    reader.Collect(snapshot);
    std::string text, om, proto;
    gateway::AppendExposition(gateway::Format::kText, reader, snapshot, text);
    gateway::AppendExposition(gateway::Format::kOpenMetrics, reader, snapshot, om);
    gateway::AppendExposition(gateway::Format::kProtobuf, reader, snapshot, proto);
    EXPECT_GT(reader.families().size(), 15u);
    EXPECT_CATEGORY(CheckText004(text), "") << text;
    EXPECT_CATEGORY(CheckOpenMetrics(om), "") << om;
    EXPECT_CATEGORY(CheckProtobufDelimited(proto), "");
  }
}

}  // namespace
}  // namespace shmetrics::fuzz
