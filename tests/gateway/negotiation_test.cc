// Content negotiation: Prometheus 2.42's exact Accept headers (captured from /usr/bin/prometheus),
// q-values, wildcards, parameters, fallbacks; Accept-Encoding; the ?format= override.
#include "negotiation.h"

#include <gtest/gtest.h>

namespace shmetrics::gateway {
namespace {

// What Debian's prometheus 2.42.0+ds sends, verbatim.
constexpr const char* kPrometheus242Accept =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
constexpr const char* kPrometheus242NativeHistogramsAccept =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,application/"
    "openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

TEST(NegotiationTest, Prometheus242DefaultHeaderGetsOpenMetrics) {
  EXPECT_EQ(NegotiateFormat(kPrometheus242Accept), Format::kOpenMetrics);
}

TEST(NegotiationTest, Prometheus242NativeHistogramsHeaderGetsProtobuf) {
  EXPECT_EQ(NegotiateFormat(kPrometheus242NativeHistogramsAccept), Format::kProtobuf);
}

TEST(NegotiationTest, AbsentWildcardOrGarbageFallsBackToText) {
  EXPECT_EQ(NegotiateFormat(""), Format::kText);
  EXPECT_EQ(NegotiateFormat("*/*"), Format::kText);
  EXPECT_EQ(NegotiateFormat("text/*"), Format::kText);
  EXPECT_EQ(NegotiateFormat("garbage"), Format::kText);
  EXPECT_EQ(NegotiateFormat(",,;;==//"), Format::kText);
  EXPECT_EQ(NegotiateFormat("application/json"), Format::kText);
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;q=0"),
            Format::kText);  // refused: fallback
  EXPECT_EQ(NegotiateFormat("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            Format::kText);  // a browser
}

TEST(NegotiationTest, TextVersions) {
  EXPECT_EQ(NegotiateFormat("text/plain"), Format::kText);
  EXPECT_EQ(NegotiateFormat("text/plain;version=0.0.4"), Format::kText);
  // Prometheus 3's text 1.0.0 is not ours; with OpenMetrics listed too, that wins.
  EXPECT_EQ(
      NegotiateFormat("text/plain;version=1.0.0;escaping=allow-utf-8,"
                      "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5"),
      Format::kOpenMetrics);
}

TEST(NegotiationTest, OpenMetricsVersions) {
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text"), Format::kOpenMetrics);
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;version=1.0.0"), Format::kOpenMetrics);
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;version=0.0.1"), Format::kOpenMetrics);
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;version=\"1.0.0\""),
            Format::kOpenMetrics);
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;version=2.0.0"), Format::kText);
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;version=1.0.0;charset=utf-8"),
            Format::kOpenMetrics);
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;version=1.0.0;unknown=1"), Format::kText);
}

TEST(NegotiationTest, ProtobufNeedsMessageAndDelimitedEncoding) {
  EXPECT_EQ(NegotiateFormat("application/vnd.google.protobuf"), Format::kText);
  EXPECT_EQ(
      NegotiateFormat("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily"),
      Format::kText);
  EXPECT_EQ(
      NegotiateFormat("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
                      "encoding=text"),
      Format::kText);
  EXPECT_EQ(
      NegotiateFormat("application/vnd.google.protobuf;proto=other.Message;encoding=delimited"),
      Format::kText);
  EXPECT_EQ(NegotiateFormat("application/vnd.google.protobuf;encoding=delimited;"
                            "proto=io.prometheus.client.MetricFamily"),
            Format::kProtobuf);
}

TEST(NegotiationTest, HighestQWins) {
  EXPECT_EQ(NegotiateFormat("text/plain;q=0.9,application/openmetrics-text;q=0.8"), Format::kText);
  EXPECT_EQ(NegotiateFormat("text/plain;q=0.5,application/openmetrics-text;q=0.8"),
            Format::kOpenMetrics);
  EXPECT_EQ(NegotiateFormat("*/*;q=0.1,application/openmetrics-text"), Format::kOpenMetrics);
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;q=0.1,*/*;q=0.2"), Format::kText);
  // Invalid q: the range is ignored, not read as 1.
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;q=abc,text/plain;q=0.5"), Format::kText);
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;q=1.5,text/plain;q=0.5"), Format::kText);
}

TEST(NegotiationTest, TiesGoToTheMoreSpecificThenTheFirstListed) {
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text,text/plain"), Format::kOpenMetrics);
  EXPECT_EQ(NegotiateFormat("text/plain,application/openmetrics-text"), Format::kText);
  EXPECT_EQ(NegotiateFormat("*/*,application/openmetrics-text"), Format::kOpenMetrics);
  EXPECT_EQ(NegotiateFormat("application/*"), Format::kOpenMetrics);
}

TEST(NegotiationTest, MostSpecificRangeDecidesAFormatsQ) {
  // text/plain is refused explicitly; */* still admits the others.
  EXPECT_EQ(NegotiateFormat("text/plain;q=0,*/*"), Format::kOpenMetrics);
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;q=0,application/*"), Format::kProtobuf);
}

TEST(NegotiationTest, CaseAndWhitespaceAreTolerated) {
  EXPECT_EQ(NegotiateFormat(
                "  Application/OpenMetrics-Text ; Version=1.0.0 ; Q=0.9 , text/plain ; q=0.1"),
            Format::kOpenMetrics);
  EXPECT_EQ(NegotiateFormat("TEXT/PLAIN"), Format::kText);
}

TEST(NegotiationTest, ExactContentTypes) {
  EXPECT_STREQ(ContentType(Format::kText), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_STREQ(ContentType(Format::kText), kTextContentType);
  EXPECT_STREQ(ContentType(Format::kOpenMetrics),
               "application/openmetrics-text; version=1.0.0; charset=utf-8");
  EXPECT_STREQ(ContentType(Format::kProtobuf),
               "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
               "encoding=delimited");
}

TEST(NegotiationTest, AcceptEncoding) {
  EXPECT_TRUE(AcceptsGzip("gzip"));  // what Prometheus sends
  EXPECT_TRUE(AcceptsGzip("GZIP"));
  EXPECT_TRUE(AcceptsGzip("x-gzip"));
  EXPECT_TRUE(AcceptsGzip("gzip, deflate, br"));
  EXPECT_TRUE(AcceptsGzip("br;q=1.0, gzip;q=0.8, *;q=0.1"));
  EXPECT_TRUE(AcceptsGzip("gzip;q=0.5"));  // identity not listed: no stated preference over gzip
  EXPECT_TRUE(AcceptsGzip("*"));
  EXPECT_TRUE(AcceptsGzip("gzip, identity;q=0"));
  EXPECT_TRUE(AcceptsGzip("identity;q=0.5, gzip"));
  EXPECT_FALSE(AcceptsGzip(""));
  EXPECT_FALSE(AcceptsGzip("identity"));
  EXPECT_FALSE(AcceptsGzip("deflate, br"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0.000"));
  EXPECT_FALSE(AcceptsGzip("*;q=0"));
  EXPECT_FALSE(AcceptsGzip("identity;q=0"));  // refuses both: we still send identity
  EXPECT_FALSE(AcceptsGzip("identity;q=1, gzip;q=0.5"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=abc"));
  EXPECT_FALSE(AcceptsGzip("*, gzip;q=0"));  // the specific entry wins over *
}

TEST(NegotiationTest, FormatQueryOverride) {
  std::string error;
  EXPECT_EQ(FormatFromQuery("format=openmetrics", &error), Format::kOpenMetrics);
  EXPECT_EQ(FormatFromQuery("a=1&format=protobuf", &error), Format::kProtobuf);
  EXPECT_EQ(FormatFromQuery("format=TEXT", &error), Format::kText);
  EXPECT_TRUE(error.empty());
  EXPECT_EQ(FormatFromQuery("", &error), std::nullopt);
  EXPECT_EQ(FormatFromQuery("formats=text&x", &error), std::nullopt);
  EXPECT_TRUE(error.empty());
  EXPECT_EQ(FormatFromQuery("format=xml", &error), std::nullopt);
  EXPECT_NE(error.find("unknown format 'xml'"), std::string::npos) << error;
  error.clear();
  EXPECT_EQ(FormatFromQuery("format=", &error), std::nullopt);
  EXPECT_FALSE(error.empty());
}

// Found by negotiation_fuzz_test: the query was split like a header, outside quoted strings, so a
// '"' in an earlier parameter hid the format parameter behind it. A query string has no quoting.
TEST(NegotiationTest, FormatQueryIgnoresQuotesInOtherParameters) {
  std::string error;
  EXPECT_EQ(FormatFromQuery("a=\"&format=protobuf", &error), Format::kProtobuf);
  EXPECT_EQ(FormatFromQuery("a=\"&&format=text&format=xml", &error), Format::kText);
  EXPECT_EQ(FormatFromQuery("a=\"x&format=openmetrics&b=\"", &error), Format::kOpenMetrics);
  EXPECT_TRUE(error.empty()) << error;
  EXPECT_EQ(FormatFromQuery("a=\"x&format=xml\"", &error), std::nullopt);
  EXPECT_NE(error.find("unknown format 'xml\"'"), std::string::npos) << error;
}

}  // namespace
}  // namespace shmetrics::gateway
