// Text exposition building blocks (Prometheus text 0.0.4): escaping and number formatting that
// round-trip. Written here rather than taken from prometheus-cpp's TextSerializer, which does not
// escape HELP, prints NaN as "Nan" and uses 16 significant digits.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "shmetrics/shm/layout.h"

namespace shmetrics::gateway::text {

// `name suffix{labels[,extra_name="extra_value"]}`: the series part of a sample line, shared by the
// text and OpenMetrics encoders (labels and extra_value already escaped).
void AppendSeriesName(std::string& out, std::string_view name, std::string_view suffix,
                      std::string_view labels, const char* extra_name,
                      std::string_view extra_value);
// The TYPE word of a family ("counter", "gauge", "histogram", "summary").
const char* TypeName(shm::MetricType type);

// HELP text: backslash and newline escaped.
void AppendHelp(std::string& out, std::string_view help);
// Label value: backslash, double quote and newline escaped.
void AppendLabelValue(std::string& out, std::string_view value);
// `a="x",b="y"`: a series' label pairs, values escaped, no braces.
std::string LabelPairs(const std::vector<std::string>& names,
                       const std::vector<std::string>& values);
// Shortest decimal that parses back to the same double; NaN, +Inf, -Inf as Go's ParseFloat reads.
void AppendDouble(std::string& out, double v);
// A histogram bound as OpenMetrics' canonical form ("1.0", "0.25", "1e-05", "+Inf"), used in
// every format so the `le` label is the same series whichever format Prometheus negotiates.
void AppendBound(std::string& out, double v);

}  // namespace shmetrics::gateway::text
