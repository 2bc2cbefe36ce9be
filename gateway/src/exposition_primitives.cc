#include "exposition_primitives.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace shmetrics::gateway {

void AppendEscapedHelp(std::string& out, std::string_view help) {
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

void AppendEscapedLabelValue(std::string& out, std::string_view value) {
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

void AppendEscapedLabels(std::string& out, std::span<const std::string> names,
                         std::span<const std::string> values) {
  const size_t n = std::min(names.size(), values.size());
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ',';
    out += names[i];
    out += "=\"";
    AppendEscapedLabelValue(out, values[i]);
    out += '"';
  }
}

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

void AppendSampleLine(std::string& out, std::string_view name, std::string_view suffix,
                      std::string_view labels, std::string_view extra_name,
                      std::string_view extra_value, std::string_view value) {
  const bool braces = !labels.empty() || !extra_name.empty();
  size_t size = name.size() + suffix.size() + 1 + value.size() + 1;
  if (braces) size += 2 + labels.size();
  if (!extra_name.empty()) {
    size += (labels.empty() ? 0 : 1) + extra_name.size() + 3 + extra_value.size();
  }
  const size_t at = out.size();
  out.resize(at + size);
  char* p = out.data() + at;
  const auto put = [&p](std::string_view s) {
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  };
  put(name);
  put(suffix);
  if (braces) {
    *p++ = '{';
    put(labels);
    if (!extra_name.empty()) {
      if (!labels.empty()) *p++ = ',';
      put(extra_name);
      put("=\"");
      put(extra_value);
      *p++ = '"';
    }
    *p++ = '}';
  }
  *p++ = ' ';
  put(value);
  *p = '\n';
}

size_t FormatShortestDouble(char (&buf)[32], double v) {
  std::string_view fixed;
  if (std::isnan(v)) {
    fixed = "NaN";
  } else if (std::isinf(v)) {
    fixed = v > 0 ? "+Inf" : "-Inf";
  } else if (v >= 0 && v < 1e15 && v == static_cast<double>(static_cast<uint64_t>(v)) &&
             !std::signbit(v)) {
    // Integral values (every count) as integers: a few divisions instead of the shortest
    // round-trip search, which was 30% of a scrape. Parses back to the same double.
    return static_cast<size_t>(std::to_chars(buf, buf + sizeof buf, static_cast<uint64_t>(v)).ptr -
                               buf);
  } else {
    // The shortest round-trip representation.
    return static_cast<size_t>(std::to_chars(buf, buf + sizeof buf, v).ptr - buf);
  }
  std::memcpy(buf, fixed.data(), fixed.size());
  return fixed.size();
}

void AppendShortestDouble(std::string& out, double v) {
  char buf[32];
  out.append(buf, FormatShortestDouble(buf, v));
}

void AppendGoFloat(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[40];
  // Integers below 1e6 (most counters and counts) print as themselves: no exponent in Go's %g.
  if (v == std::trunc(v) && std::fabs(v) < 1e6) {
    if (v == 0 && std::signbit(v)) {
      out += "-0";
      return;
    }
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(v));
    out.append(buf, static_cast<size_t>(r.ptr - buf));
    return;
  }
  // Shortest round-trip digits in scientific form tell the decimal exponent; Go's %g with the
  // shortest precision uses the exponent form when it is < -4 or >= 6 (strconv's eprec = 6).
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const char* e = std::find(buf, r.ptr, 'e');
  const char* digits = e + 1 < r.ptr && e[1] == '+' ? e + 2 : e + 1;  // "e+06" / "e-05"
  int exponent = 0;
  std::from_chars(digits, r.ptr, exponent);
  if (exponent < -4 || exponent >= 6) {
    out.append(buf,
               static_cast<size_t>(
                   r.ptr - buf));  // "1.5e+06": the same spelling as Go (sign, at least two digits)
    return;
  }
  r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);  // shortest, fixed
  out.append(buf, static_cast<size_t>(r.ptr - buf));
}

void AppendOpenMetricsNumber(std::string& out, double v) {
  const size_t start = out.size();
  AppendGoFloat(out, v);
  if (!std::isfinite(v)) return;
  if (out.find_first_of(".e", start) == std::string::npos) out += ".0";
}

bool UnitMatchesName(std::string_view name, std::string_view unit) {
  return !unit.empty() && name.size() > unit.size() + 1 && name.ends_with(unit) &&
         name[name.size() - unit.size() - 1] == '_';
}

}  // namespace shmetrics::gateway
