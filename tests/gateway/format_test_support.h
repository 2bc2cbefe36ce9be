// Helpers for the exposition-format tests: a region filled with every metric type and the awkward
// cases (escapes, units, special values, negative buckets, dead workers), and three independent
// readers that turn a body into comparable samples: a text 0.0.4 parser, a protobuf decoder built
// on the generated classes, and the strict OpenMetrics parser of Debian's python3-prometheus-client
// run in a subprocess.
//
// Samples are keyed `name{a=v,b=w}` with labels sorted by name and raw (unescaped) values; `le` and
// `quantile` values are rewritten as the double they denote, so formats that spell a bound
// differently ("1e-04" vs "0.0001") still compare equal.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shmetrics/shmetrics.h"

namespace shmetrics::gateway::testing {

using Labels = std::vector<std::pair<std::string, std::string>>;
using Samples = std::map<std::string, double>;

std::string SeriesKey(std::string_view name, Labels labels);

// Values equal bit for bit, NaN equal to NaN. Appends a line per difference to *diff.
bool SameSamples(const Samples& a, const Samples& b, std::string* diff);

// Registers the test families in `client` and writes known values from this process and from one
// forked worker that exits (so "dead worker" paths are exercised). Call once per region.
void PopulateRegion(Client& client);

// Text 0.0.4 -> samples. Lines it cannot parse go to *errors.
Samples ParseText(std::string_view body, std::vector<std::string>* errors);

// Protobuf delimited -> samples (a histogram's +Inf bucket comes from sample_count when absent).
// Also the families' name, type, unit and help, one line each ("name|TYPE|unit|help").
Samples DecodeProtobuf(std::string_view body, std::vector<std::string>* families,
                       std::string* error);

// Runs prometheus_client.openmetrics.parser.text_string_to_metric_families (the strict parser)
// with /usr/bin/python3 over `body`. ok is true when it parsed; otherwise error holds the
// exception. Samples as the parser read them; metadata as "name|type|unit|help" lines.
struct StrictParse {
  bool ok = false;
  std::string error;
  Samples samples;
  std::vector<std::string> families;
};
StrictParse ParseOpenMetricsStrictly(const std::string& body);

}  // namespace shmetrics::gateway::testing
