#include "exposition_primitives.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>

namespace shmetrics::gateway {
namespace {

std::string Help(std::string_view s) {
  std::string out;
  AppendEscapedHelp(out, s);
  return out;
}
std::string Label(std::string_view s) {
  std::string out;
  AppendEscapedLabelValue(out, s);
  return out;
}
std::string Double(double v) {
  std::string out;
  AppendShortestDouble(out, v);
  return out;
}
std::string Bound(double v) {
  std::string out;
  AppendCanonicalBound(out, v);
  return out;
}

TEST(ExpositionPrimitivesTest, EscapesHelpAndLabelValues) {
  EXPECT_EQ(Help("a\\b\nc\"d"), "a\\\\b\\nc\"d");  // quotes stay in HELP
  EXPECT_EQ(Label("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
  EXPECT_EQ(Label("żółw ✓"), "żółw ✓");  // UTF-8 passes through
}

TEST(ExpositionPrimitivesTest, SpecialValuesAsGoParsesThem) {
  EXPECT_EQ(Double(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(Double(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(Double(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(Double(0), "0");
  EXPECT_EQ(Double(42), "42");
  EXPECT_EQ(Double(0.1), "0.1");
}

TEST(ExpositionPrimitivesTest, DoublesRoundTripExactly) {
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t bits = rng();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    if (!std::isfinite(v)) continue;
    const std::string s = Double(v);
    EXPECT_EQ(std::strtod(s.c_str(), nullptr), v) << s;
  }
  for (double v : {1e-300, 123456789012345678.0, 0.30000000000000004, 9007199254740993.0}) {
    EXPECT_EQ(std::strtod(Double(v).c_str(), nullptr), v);
  }
}

TEST(ExpositionPrimitivesTest, BoundsAreCanonical) {
  EXPECT_EQ(Bound(1), "1.0");
  EXPECT_EQ(Bound(0.25), "0.25");
  EXPECT_EQ(Bound(1e-05), "1e-05");
  EXPECT_EQ(Bound(0.0001), "0.0001");  // as Go spells it: no exponent until 1e-05
  EXPECT_EQ(Bound(1234567), "1.234567e+06");
  EXPECT_EQ(Bound(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(Bound(100), "100.0");
}

}  // namespace
}  // namespace shmetrics::gateway
