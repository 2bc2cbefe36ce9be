#include "text_format.h"

#include "openmetrics_format.h"

#include <charconv>
#include <cmath>

namespace shmetrics::gateway::text {

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
