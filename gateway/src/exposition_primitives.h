// The building blocks every exposition renderer shares: escaping, number spelling, the series
// part of a sample line, the TYPE word and the unit check. Written here rather than taken from
// prometheus-cpp's TextSerializer, which does not escape HELP, prints NaN as "Nan" and uses 16
// significant digits. Renderers include this file and never each other.
//
// Thread-safety: pure functions of their arguments.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "shmetrics/shm/layout.h"

namespace shmetrics::gateway {

// Text 0.0.4 HELP: backslash and newline escaped.
void AppendEscapedHelp(std::string& out, std::string_view help);
// A label value (and OpenMetrics HELP): backslash, double quote and newline escaped.
void AppendEscapedLabelValue(std::string& out, std::string_view value);
// `a="x",b="y"`, values escaped, no braces: the label part of a text or OpenMetrics series.
// Pairs up names[i] with values[i]; extra names or values are ignored.
void AppendEscapedLabels(std::string& out, std::span<const std::string> names,
                         std::span<const std::string> values);
// `name suffix{labels[,extra_name="extra_value"]}`: the series part of a sample line (labels and
// extra_value already escaped; extra_name nullptr for none).
void AppendSeriesName(std::string& out, std::string_view name, std::string_view suffix,
                      std::string_view labels, const char* extra_name,
                      std::string_view extra_value);

// A whole sample line, `name suffix{labels[,extra_name="extra_value"]} value` and a newline, in one
// append (labels, extra_value and value already spelled; extra_name empty for none). A scrape
// writes one per series: one size check and a few copies instead of a dozen appends.
void AppendSampleLine(std::string& out, std::string_view name, std::string_view suffix,
                      std::string_view labels, std::string_view extra_name,
                      std::string_view extra_value, std::string_view value);

// Shortest decimal that parses back to the same double; NaN, +Inf, -Inf as Go's ParseFloat reads.
void AppendShortestDouble(std::string& out, double v);
// The same into `buf`; returns its length.
size_t FormatShortestDouble(char (&buf)[32], double v);
// Go's strconv.FormatFloat(v, 'g', -1, 64): shortest digits that round-trip, exponent form when
// the decimal exponent is < -4 or >= 6 ("100000", "1e+06", "0.0001", "1e-05"); "+Inf", "-Inf",
// "NaN".
void AppendGoFloat(std::string& out, double v);
// An OpenMetrics canonical number: AppendGoFloat, plus ".0" when that has neither '.' nor 'e'.
void AppendOpenMetricsNumber(std::string& out, double v);
// A histogram bound or quantile as OpenMetrics' canonical number ("1.0", "0.25", "1e-05",
// "+Inf"), in every format: Prometheus derives the same spelling from protobuf, so `le` names the
// same series whichever format it negotiated.
inline void AppendCanonicalBound(std::string& out, double v) { AppendOpenMetricsNumber(out, v); }

// The TYPE word of a family ("counter", "gauge", "histogram", "summary"); ReadFamily rejects any
// other type before a renderer sees it.
constexpr const char* TypeName(shm::MetricType type) { return shm::MetricTypeName(type); }
// Whether `unit` may be declared for a family whose name (without a counter's `_total`) is
// `name`: non-empty and `name` ends with "_" + unit. OpenMetrics and Prometheus' protobuf parser
// reject any other.
bool UnitMatchesName(std::string_view name, std::string_view unit);

}  // namespace shmetrics::gateway
