#include "text_format.h"

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
  } else {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip representation
    out.append(buf, r.ptr);
  }
}

void AppendBound(std::string& out, double v) {
  if (std::isinf(v) || std::isnan(v)) {
    AppendDouble(out, v);
    return;
  }
  const size_t start = out.size();
  AppendDouble(out, v);
  // Integral values without an exponent get ".0", as OpenMetrics' canonical numbers do.
  if (out.find_first_of(".e", start) == std::string::npos) out += ".0";
}

}  // namespace shmetrics::gateway::text
