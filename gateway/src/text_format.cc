#include "text_format.h"

#include <charconv>
#include <cmath>

#include "openmetrics_format.h"

namespace shmetrics::gateway::text {

void AppendSeriesName(std::string& out, std::string_view name, std::string_view suffix,
                      std::string_view labels, const char* extra_name,
                      std::string_view extra_value) {
  out += name;
  out += suffix;
  if (labels.empty() && extra_name == nullptr) return;
  out += '{';
  out += labels;
  if (extra_name != nullptr) {
    if (!labels.empty()) out += ',';
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
}

const char* TypeName(shm::MetricType type) {
  switch (type) {
    case shm::MetricType::kCounter:
      return "counter";
    case shm::MetricType::kGauge:
      return "gauge";
    case shm::MetricType::kHistogram:
      return "histogram";
    case shm::MetricType::kSummary:
      return "summary";
  }
  return "unknown";  // not a valid type: ReadFamily rejects it before any encoder sees it
}

void AppendHelp(std::string& out, std::string_view help) {
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void AppendLabelValue(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

std::string LabelPairs(const std::vector<std::string>& names,
                       const std::vector<std::string>& values) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (i) out += ',';
    out += names[i];
    out += "=\"";
    AppendLabelValue(out, values[i]);
    out += '"';
  }
  return out;
}

void AppendDouble(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else if (v >= 0 && v < 1e15 && v == static_cast<double>(static_cast<uint64_t>(v)) &&
             !std::signbit(v)) {
    // Integral values (every count) as integers: a few divisions instead of the shortest
    // round-trip search, which was 30% of a scrape. Parses back to the same double.
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<uint64_t>(v));
    out.append(buf, r.ptr);
  } else {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip representation
    out.append(buf, r.ptr);
  }
}

// Go's shortest %g plus ".0" (OpenMetrics' canonical form): the spelling Prometheus derives from
// protobuf too, so `le` names the same series whichever format was negotiated.
void AppendBound(std::string& out, double v) { om::AppendNumber(out, v); }

}  // namespace shmetrics::gateway::text
