#include "exposition_checker.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/delimited_message_util.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "metrics.pb.h"

namespace shmetrics::fuzz {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string Fail(const char* category, const std::string& what, size_t line = 0) {
  std::string s = std::string(category) + ": " + what;
  if (line != 0) s += ", line " + std::to_string(line);
  return s;
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool IsMetricName(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (!(IsAlpha(c) || c == '_' || c == ':' || (i > 0 && IsDigit(c)))) return false;
  }
  return true;
}

// [a-zA-Z_][a-zA-Z0-9_]*, and not the "__" prefix Prometheus reserves for itself.
bool IsLabelName(std::string_view s) {
  if (s.empty() || s.starts_with("__")) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (!(IsAlpha(c) || c == '_' || (i > 0 && IsDigit(c)))) return false;
  }
  return true;
}

// A decimal number: [sign] (1*DIGIT ["." *DIGIT] / "." 1*DIGIT) ["e" [sign] 1*DIGIT], or the
// special values [sign] inf / infinity and nan (case-insensitive). This is OpenMetrics' `number`
// and the part of Go's strconv.ParseFloat the text format uses (no hex floats, no underscores).
// A literal outside the double range is an error, as ParseFloat's ErrRange is to the text parser.
std::optional<double> ParseNumber(std::string_view s) {
  std::string_view t = s;
  bool negative = false;
  if (!t.empty() && (t[0] == '+' || t[0] == '-')) {
    negative = t[0] == '-';
    t.remove_prefix(1);
  }
  if (IEquals(t, "inf") || IEquals(t, "infinity")) return negative ? -kInf : kInf;
  if (IEquals(t, "nan")) {
    if (t.size() != s.size()) return std::nullopt;  // no sign on NaN
    return std::numeric_limits<double>::quiet_NaN();
  }
  size_t i = 0, int_digits = 0, frac_digits = 0;
  while (i < t.size() && IsDigit(t[i])) ++i, ++int_digits;
  if (i < t.size() && t[i] == '.') {
    ++i;
    while (i < t.size() && IsDigit(t[i])) ++i, ++frac_digits;
  }
  if (int_digits + frac_digits == 0) return std::nullopt;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < t.size() && IsDigit(t[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return std::nullopt;
  }
  if (i != t.size()) return std::nullopt;
  double v = 0;
  const auto r = std::from_chars(t.data(), t.data() + t.size(), v);
  if (r.ec == std::errc::result_out_of_range) {
    // from_chars also says so for an underflow to zero or a denormal; only overflow is an error.
    bool nonzero_mantissa = false;
    for (char c : t) {
      if (c == 'e' || c == 'E') break;
      nonzero_mantissa = nonzero_mantissa || (c >= '1' && c <= '9');
    }
    const size_t e = t.find_first_of("eE");
    const bool negative_exponent =
        e != std::string_view::npos && e + 1 < t.size() && t[e + 1] == '-';
    if (nonzero_mantissa && !negative_exponent) return std::nullopt;
    v = 0;
  } else if (r.ec != std::errc() || r.ptr != t.data() + t.size()) {
    return std::nullopt;
  }
  return negative ? -v : v;
}

// Python's float.is_integer(), which the strict OpenMetrics parser applies to counts.
bool IsInteger(double v) { return std::isfinite(v) && v == std::trunc(v); }

bool SameValue(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

std::string SeriesKey(std::string_view name, Labels labels) {
  std::sort(labels.begin(), labels.end());
  std::string key(name);
  key += '{';
  for (const auto& [k, v] : labels) {
    key += k;
    key += '\x01';
    key += v;
    key += '\x02';
  }
  key += '}';
  return key;
}

// Labels without `drop` (le, quantile), as a sorted key: the MetricPoint a sample belongs to.
std::string GroupKey(const Labels& labels, std::string_view drop) {
  Labels g;
  for (const auto& l : labels) {
    if (l.first != drop) g.push_back(l);
  }
  return SeriesKey("", std::move(g));
}

const std::string* FindLabel(const Labels& labels, std::string_view name) {
  for (const auto& l : labels) {
    if (l.first == name) return &l.second;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Shared by the two text formats: one sample line taken apart.

enum class Dialect { kText004, kOpenMetrics };

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
  bool has_exemplar = false;
  Labels exemplar_labels;
};

class LineParser {
 public:
  LineParser(std::string_view line, Dialect d, size_t line_no)
      : s_(line), dialect_(d), line_no_(line_no) {}

  bool AtEnd() const { return i_ >= s_.size(); }
  char Peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  size_t pos() const { return i_; }
  std::string_view Rest() const { return s_.substr(std::min(i_, s_.size())); }

  void SkipBlanks() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  bool Expect(char c) {
    if (Peek() != c) return false;
    ++i_;
    return true;
  }
  std::string_view Token() {  // up to the next blank
    const size_t start = i_;
    while (i_ < s_.size() && s_[i_] != ' ' && s_[i_] != '\t') ++i_;
    return s_.substr(start, i_ - start);
  }
  std::string_view Name(bool metric) {
    const size_t start = i_;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      const bool ok = IsAlpha(c) || c == '_' || (metric && c == ':') || (i_ > start && IsDigit(c));
      if (!ok) break;
      ++i_;
    }
    return s_.substr(start, i_ - start);
  }

  // `{a="x",b="y"}`; the caller has seen '{'. Returns "" or the error.
  std::string ParseLabels(Labels& out) {
    ++i_;  // '{'
    const bool text = dialect_ == Dialect::kText004;
    if (text) SkipBlanks();
    if (Expect('}')) return {};
    while (true) {
      const std::string_view raw_name = Name(false);
      if (raw_name.empty())
        return Fail("label", "expected a label name at byte " + std::to_string(i_), line_no_);
      if (!IsLabelName(raw_name))
        return Fail("label", "label name \"" + std::string(raw_name) + "\" is reserved", line_no_);
      if (text) SkipBlanks();
      if (!Expect('=')) return Fail("label", "expected '=' after label name", line_no_);
      if (text) SkipBlanks();
      if (!Expect('"')) return Fail("label", "expected '\"' to open a label value", line_no_);
      std::string value;
      if (std::string e = Quoted(value, /*allow_quote_escape=*/true); !e.empty()) return e;
      for (const auto& l : out) {
        if (l.first == raw_name)
          return Fail("label", "label name \"" + std::string(raw_name) + "\" twice", line_no_);
      }
      out.emplace_back(std::string(raw_name), std::move(value));
      if (text) SkipBlanks();
      if (Expect('}')) return {};
      if (!Expect(',')) return Fail("label", "expected ',' or '}' after a label", line_no_);
      if (text) {
        SkipBlanks();
        if (Expect('}')) return {};  // Go's parser takes a trailing comma
      }
    }
  }

  // The rest of a quoted string up to the closing '"' (consumed), unescaped into `out`.
  std::string Quoted(std::string& out, bool allow_quote_escape) {
    while (i_ < s_.size()) {
      const char c = s_[i_++];
      if (c == '"') return {};
      if (c == '\\') {
        if (i_ >= s_.size()) break;
        const char e = s_[i_++];
        if (e == '\\') {
          out += '\\';
        } else if (e == 'n') {
          out += '\n';
        } else if (e == '"' && allow_quote_escape) {
          out += '"';
        } else {
          return Fail("escape", std::string("invalid escape \\") + e, line_no_);
        }
      } else {
        out += c;
      }
    }
    return Fail("label", "unterminated label value", line_no_);
  }

  // A whole sample line. Returns "" or the error.
  std::string ParseSample(Sample& out) {
    const bool text = dialect_ == Dialect::kText004;
    const std::string_view name = Name(true);
    if (name.empty() || !IsMetricName(name))
      return Fail("name", "expected a metric name at the start of a sample", line_no_);
    out.name = std::string(name);
    const size_t after_name = i_;
    if (text) SkipBlanks();
    const bool labels = Peek() == '{';
    if (labels) {
      if (std::string e = ParseLabels(out.labels); !e.empty()) return e;
    }
    // The value, separated by one space (OpenMetrics) or blanks (text).
    if (text) {
      const size_t before = i_;
      SkipBlanks();
      if (i_ == before && (labels || i_ == after_name))
        return Fail("number", "expected a blank before the value", line_no_);
    } else if (!Expect(' ')) {
      return Fail("number", "expected one space before the value", line_no_);
    }
    const std::string_view value = Token();
    const auto v = ParseNumber(value);
    if (!v) return Fail("number", "invalid value \"" + std::string(value) + "\"", line_no_);
    out.value = *v;
    if (text) {
      SkipBlanks();
      if (!AtEnd()) {  // timestamp: an int64 of milliseconds (strconv.ParseInt)
        const std::string_view ts = Token();
        std::string_view digits = ts;
        if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);
        int64_t ms = 0;
        const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), ms);
        if (digits.empty() || r.ec != std::errc() || r.ptr != digits.data() + digits.size())
          return Fail("number", "invalid timestamp \"" + std::string(ts) + "\"", line_no_);
        SkipBlanks();
        if (!AtEnd()) return Fail("number", "text after the timestamp", line_no_);
      }
      return {};
    }
    // OpenMetrics: [SP timestamp] [SP "#" SP labels SP number [SP timestamp]]
    if (AtEnd()) return {};
    if (!Expect(' ')) return Fail("number", "expected a space after the value", line_no_);
    if (Peek() != '#') {
      const std::string_view ts = Token();
      const auto t = ParseNumber(ts);
      if (!t || !std::isfinite(*t))
        return Fail("number", "invalid timestamp \"" + std::string(ts) + "\"", line_no_);
      if (AtEnd()) return {};
      if (!Expect(' ')) return Fail("number", "expected a space after the timestamp", line_no_);
    }
    if (!Expect('#') || !Expect(' ') || Peek() != '{')
      return Fail("exemplar", "expected \" # {\" to start an exemplar", line_no_);
    if (std::string e = ParseLabels(out.exemplar_labels); !e.empty()) return e;
    out.has_exemplar = true;
    if (!Expect(' '))
      return Fail("exemplar", "expected a space before the exemplar value", line_no_);
    const std::string_view ev = Token();
    if (!ParseNumber(ev))
      return Fail("exemplar", "invalid exemplar value \"" + std::string(ev) + "\"", line_no_);
    if (AtEnd()) return {};
    if (!Expect(' '))
      return Fail("exemplar", "expected a space after the exemplar value", line_no_);
    const std::string_view ets = Token();
    const auto et = ParseNumber(ets);
    if (!et || !std::isfinite(*et))
      return Fail("exemplar", "invalid exemplar timestamp \"" + std::string(ets) + "\"", line_no_);
    if (!AtEnd()) return Fail("exemplar", "text after the exemplar", line_no_);
    return {};
  }

 private:
  std::string_view s_;
  Dialect dialect_;
  size_t line_no_;
  size_t i_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Family bookkeeping shared by the two text formats.

struct HistogramGroup {
  bool any_bucket = false;
  double last_le = -kInf;
  double last_value = 0;
  bool inf_seen = false;
  double inf_value = 0;
  bool has_count = false;
  double count = 0;
  bool has_sum = false;
  bool negative_bucket = false;
};

struct Family {
  std::string name;
  std::string type;  // "" until TYPE
  bool has_help = false, has_type = false, has_unit = false;
  std::string unit;
  bool has_samples = false;
  std::set<std::string> seen_groups;
  std::optional<std::string> group;  // the MetricPoint being read
  HistogramGroup hist;
  size_t group_line = 0;
};

class Checker {
 public:
  explicit Checker(Dialect d) : dialect_(d) {}

  std::string Metadata(std::string_view keyword, std::string_view name, std::string_view rest,
                       size_t line) {
    if (!IsMetricName(name))
      return Fail("name",
                  "invalid metric name \"" + std::string(name) + "\" in " + std::string(keyword),
                  line);
    if (!family_ || family_->name != name) {
      if (std::string e = FinishFamily(); !e.empty()) return e;
      if (family_names_.count(std::string(name)) != 0)
        return Fail("metadata",
                    "family " + std::string(name) +
                        " appears twice (families must be contiguous and unique)",
                    line);
      family_names_.insert(std::string(name));
      family_.emplace();
      family_->name = std::string(name);
    } else if (family_->has_samples) {
      return Fail("metadata",
                  std::string(keyword) + " for " + std::string(name) + " after its samples", line);
    }
    Family& f = *family_;
    if (keyword == "HELP") {
      if (f.has_help) return Fail("metadata", "second HELP for " + f.name, line);
      f.has_help = true;
      return CheckHelp(rest, line);
    }
    if (keyword == "UNIT") {
      if (f.has_unit) return Fail("metadata", "second UNIT for " + f.name, line);
      f.has_unit = true;
      for (char c : rest) {
        if (!(IsAlpha(c) || IsDigit(c) || c == '_' || c == ':'))
          return Fail("metadata", "invalid UNIT \"" + std::string(rest) + "\"", line);
      }
      f.unit = std::string(rest);
      if (!f.unit.empty() && !f.name.ends_with("_" + f.unit))
        return Fail("metadata", "UNIT " + f.unit + " is not a suffix of " + f.name, line);
      if (!f.unit.empty() && f.has_type && (f.type == "info" || f.type == "stateset"))
        return Fail("metadata", "UNIT on an " + f.type + " family", line);
      return {};
    }
    // TYPE
    if (f.has_type) return Fail("metadata", "second TYPE for " + f.name, line);
    static const std::set<std::string_view> kText = {"counter", "gauge", "histogram", "summary",
                                                     "untyped"};
    static const std::set<std::string_view> kOm = {"counter",        "gauge",    "histogram",
                                                   "gaugehistogram", "stateset", "info",
                                                   "summary",        "unknown"};
    if ((dialect_ == Dialect::kText004 ? kText : kOm).count(rest) == 0)
      return Fail("metadata", "unknown TYPE \"" + std::string(rest) + "\"", line);
    f.has_type = true;
    f.type = std::string(rest);
    if (!f.unit.empty() && (f.type == "info" || f.type == "stateset"))
      return Fail("metadata", "UNIT on an " + f.type + " family", line);
    for (const std::string& n : ClaimedNames(f)) {
      auto [it, inserted] = claimed_.emplace(n, f.name);
      if (!inserted && it->second != f.name)
        return Fail("clash", "name " + n + " belongs to families " + it->second + " and " + f.name,
                    line);
    }
    return {};
  }

  std::string SampleLine(const Sample& s, size_t line) {
    if (!family_ || !family_->has_type)
      return Fail("metadata", "sample " + s.name + " without a TYPE line for its family", line);
    Family& f = *family_;
    if (!s.name.starts_with(f.name))
      return Fail("metadata", "sample " + s.name + " under the TYPE of " + f.name, line);
    const std::string suffix = s.name.substr(f.name.size());
    bool owned = false;
    for (const std::string& x : Suffixes(f.type)) owned = owned || x == suffix;
    if (!owned)
      return Fail("metadata",
                  "sample " + s.name + " is not a sample name of " + f.type + " " + f.name, line);
    f.has_samples = true;

    if (!series_.insert(SeriesKey(s.name, s.labels)).second)
      return Fail("duplicate", "series " + s.name + " twice", line);

    const bool om = dialect_ == Dialect::kOpenMetrics;
    const bool histogram = f.type == "histogram" || f.type == "gaugehistogram";
    const bool bucket = histogram && suffix == "_bucket";
    const bool quantile = f.type == "summary" && suffix.empty();
    std::string g = GroupKey(s.labels, bucket ? "le" : quantile ? "quantile" : "");
    if (om && f.type == "info") g.clear();
    if (!f.group || *f.group != g) {
      if (std::string e = FinishGroup(); !e.empty()) return e;
      if (f.seen_groups.count(g) != 0)
        return Fail("grouping", "samples of one series of " + f.name + " are not contiguous", line);
      f.seen_groups.insert(g);
      f.group = g;
      f.hist = HistogramGroup{};
      f.group_line = line;
    }

    if (om) {
      static const std::set<std::string> kNoNaN = {"_total",  "_sum",    "_count",
                                                   "_bucket", "_gcount", "_gsum"};
      static const std::set<std::string> kNoNegative = {"_total", "_sum", "_count", "_bucket",
                                                        "_gcount"};
      if (kNoNaN.count(suffix) && std::isnan(s.value))
        return Fail("counter", "counter-like sample " + s.name + " is NaN", line);
      if (kNoNegative.count(suffix) && s.value < 0)
        return Fail("counter", "counter-like sample " + s.name + " is negative", line);
      if ((bucket || suffix == "_count" || suffix == "_gcount") && !IsInteger(s.value))
        return Fail("histogram", "count " + s.name + " is not an integer", line);
      if (s.has_exemplar) {
        const bool allowed = bucket || (f.type == "counter" && suffix == "_total");
        if (!allowed) return Fail("exemplar", "exemplar on " + s.name, line);
        size_t length = 0;
        for (const auto& [k, v] : s.exemplar_labels) length += CodePoints(k) + CodePoints(v);
        if (length > 128)
          return Fail("exemplar",
                      "exemplar labels of " + std::to_string(length) + " code points (> 128)",
                      line);
      }
      if (f.type == "stateset" &&
          (FindLabel(s.labels, f.name) == nullptr || (s.value != 0 && s.value != 1)))
        return Fail("metadata", "invalid stateset sample", line);
      if (f.type == "info" && s.value != 1) return Fail("metadata", "info sample not 1", line);
    } else if (s.has_exemplar) {
      return Fail("exemplar", "exemplar in text 0.0.4", line);
    }

    if (quantile) {
      const std::string* q = FindLabel(s.labels, "quantile");
      const auto qv = q ? ParseNumber(*q) : std::nullopt;
      if (!qv || !(*qv >= 0 && *qv <= 1))
        return Fail("summary", "quantile label missing or outside [0, 1] on " + s.name, line);
      if (om && s.value < 0) return Fail("summary", "negative quantile value", line);
    }
    if (histogram) {
      HistogramGroup& h = f.hist;
      if (bucket) {
        const std::string* le = FindLabel(s.labels, "le");
        const auto lv = le ? ParseNumber(*le) : std::nullopt;
        if (!lv || std::isnan(*lv)) return Fail("histogram", "bucket without a numeric le", line);
        if (om && std::isinf(*lv) && *lv > 0 && *le != "+Inf")
          return Fail("histogram", "le \"" + *le + "\" is not the canonical +Inf", line);
        if (h.any_bucket && !(*lv > h.last_le))
          return Fail("histogram", "le not increasing in " + f.name, line);
        if (std::isnan(s.value) || (h.any_bucket && s.value < h.last_value))
          return Fail("histogram", "cumulative bucket counts decrease in " + f.name, line);
        h.any_bucket = true;
        h.last_le = *lv;
        h.last_value = s.value;
        if (*lv < 0) h.negative_bucket = true;
        if (std::isinf(*lv) && *lv > 0) {
          h.inf_seen = true;
          h.inf_value = s.value;
        }
      } else if (suffix == "_count" || suffix == "_gcount") {
        h.has_count = true;
        h.count = s.value;
      } else if (suffix == "_sum" || suffix == "_gsum") {
        h.has_sum = true;
      }
    }
    return {};
  }

  std::string Finish() { return FinishFamily(); }

 private:
  // HELP escapes: \\ and \n in text 0.0.4; OpenMetrics adds \" and forbids a raw '"'.
  std::string CheckHelp(std::string_view help, size_t line) const {
    const bool om = dialect_ == Dialect::kOpenMetrics;
    for (size_t i = 0; i < help.size(); ++i) {
      const char c = help[i];
      if (c == '"' && om) return Fail("escape", "raw '\"' in HELP", line);
      if (c != '\\') continue;
      const char e = i + 1 < help.size() ? help[i + 1] : '\0';
      if (!(e == '\\' || e == 'n' || (om && e == '"')))
        return Fail("escape",
                    std::string("invalid escape in HELP: \\") + (e ? std::string(1, e) : "<end>"),
                    line);
      ++i;
    }
    return {};
  }

  std::vector<std::string> Suffixes(const std::string& type) const {
    if (dialect_ == Dialect::kText004) {
      if (type == "histogram") return {"_bucket", "_sum", "_count"};
      if (type == "summary") return {"", "_sum", "_count"};
      return {""};
    }
    if (type == "counter") return {"_total", "_created"};
    if (type == "histogram") return {"_bucket", "_count", "_sum", "_created"};
    if (type == "gaugehistogram") return {"_bucket", "_gcount", "_gsum"};
    if (type == "summary") return {"", "_count", "_sum", "_created"};
    if (type == "info") return {"_info"};
    return {""};
  }

  std::vector<std::string> ClaimedNames(const Family& f) const {
    std::vector<std::string> names = {f.name};
    for (const std::string& s : Suffixes(f.type)) {
      if (!s.empty()) names.push_back(f.name + s);
    }
    return names;
  }

  std::string FinishGroup() {
    if (!family_ || !family_->group) return {};
    Family& f = *family_;
    const HistogramGroup& h = f.hist;
    const size_t line = f.group_line;
    f.group.reset();
    if (f.type != "histogram" && f.type != "gaugehistogram") return {};
    if (!h.inf_seen) return Fail("histogram", "series of " + f.name + " has no +Inf bucket", line);
    if (h.has_count && !SameValue(h.count, h.inf_value))
      return Fail("histogram", "_count of " + f.name + " differs from its +Inf bucket", line);
    if (dialect_ == Dialect::kOpenMetrics) {
      if (h.has_sum != h.has_count)
        return Fail("histogram",
                    "series of " + f.name + " has one of _count and _sum without the other", line);
      if (h.negative_bucket && h.has_sum && f.type == "histogram")
        return Fail("histogram", "_sum beside negative buckets in " + f.name, line);
    }
    return {};
  }

  std::string FinishFamily() {
    if (!family_) return {};
    std::string e = FinishGroup();
    family_.reset();
    return e;
  }

  Dialect dialect_;
  std::optional<Family> family_;
  std::set<std::string> family_names_;
  std::map<std::string, std::string> claimed_;  // sample/family name -> family that owns it
  std::set<std::string> series_;
};

size_t Utf8ValidPrefix(std::string_view s);

// Where valid UTF-8 ends in `s`: "at byte 12, line 3".
std::string WhereUtf8Breaks(std::string_view s) {
  const size_t good = Utf8ValidPrefix(s);
  const size_t line = 1 + static_cast<size_t>(std::count(s.begin(), s.begin() + good, '\n'));
  return "at byte " + std::to_string(good) + ", line " + std::to_string(line);
}

std::vector<std::string_view> SplitLines(std::string_view body) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string_view::npos) end = body.size();
    lines.push_back(body.substr(pos, end - pos));
    pos = end + 1;
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Protobuf.

namespace pb = io::prometheus::client;

std::string CheckLabelPairs(const google::protobuf::RepeatedPtrField<pb::LabelPair>& labels,
                            const std::string& where, Labels* out) {
  for (const pb::LabelPair& l : labels) {
    if (!IsValidUtf8(l.name()) || !IsValidUtf8(l.value()))
      return Fail("utf8", "label of " + where + " is not UTF-8");
    if (!IsLabelName(l.name()))
      return Fail("label", "invalid label name \"" + l.name() + "\" in " + where);
    for (const auto& o : *out) {
      if (o.first == l.name())
        return Fail("label", "label name " + l.name() + " twice in " + where);
    }
    out->emplace_back(l.name(), l.value());
  }
  return {};
}

std::string CheckExemplar(const pb::Exemplar& e, const std::string& where, bool needs_timestamp) {
  Labels labels;
  if (std::string err = CheckLabelPairs(e.label(), "exemplar of " + where, &labels); !err.empty())
    return Fail("exemplar", err);
  size_t length = 0;
  for (const auto& [k, v] : labels) length += CodePoints(k) + CodePoints(v);
  if (length > 128) return Fail("exemplar", "exemplar labels over 128 code points in " + where);
  if (needs_timestamp && !e.has_timestamp())
    return Fail("exemplar", "native exemplar without timestamp in " + where);
  if (e.has_timestamp() && (e.timestamp().nanos() < 0 || e.timestamp().nanos() > 999999999))
    return Fail("exemplar", "exemplar timestamp nanos out of range in " + where);
  return {};
}

// One sign of a native histogram: spans against deltas (integer) or counts (float).
std::string CheckNativeSign(const google::protobuf::RepeatedPtrField<pb::BucketSpan>& spans,
                            const google::protobuf::RepeatedField<int64_t>& deltas,
                            const google::protobuf::RepeatedField<double>& counts, bool is_float,
                            const std::string& where) {
  uint64_t buckets = 0;
  for (int i = 0; i < spans.size(); ++i) {
    if (i > 0 && spans[i].offset() < 0)
      return Fail("native", "span " + std::to_string(i) + " has a negative offset in " + where);
    buckets += spans[i].length();
  }
  if (is_float) {
    if (!deltas.empty())
      return Fail("native", "float histogram carries integer deltas in " + where);
    if (static_cast<uint64_t>(counts.size()) != buckets)
      return Fail("native", "spans need " + std::to_string(buckets) + " buckets, counts has " +
                                std::to_string(counts.size()) + " in " + where);
    for (double c : counts) {
      if (!(c >= 0)) return Fail("native", "negative or NaN float bucket count in " + where);
    }
    return {};
  }
  if (!counts.empty()) return Fail("native", "integer histogram carries float counts in " + where);
  if (static_cast<uint64_t>(deltas.size()) != buckets)
    return Fail("native", "spans need " + std::to_string(buckets) + " buckets, deltas has " +
                              std::to_string(deltas.size()) + " in " + where);
  __int128 absolute = 0;
  for (int64_t d : deltas) {
    absolute += d;
    if (absolute < 0) return Fail("native", "a bucket count below zero in " + where);
  }
  return {};
}

std::string CheckHistogram(const pb::Histogram& h, const std::string& where) {
  // Prometheus reads the float fields when sample_count_float (or zero_count_float) is > 0.
  const bool is_float = h.sample_count_float() > 0 || h.zero_count_float() > 0;
  const double count = is_float ? h.sample_count_float() : static_cast<double>(h.sample_count());
  double last_bound = -kInf, last_count = 0;
  for (int i = 0; i < h.bucket_size(); ++i) {
    const pb::Bucket& b = h.bucket(i);
    if (std::isnan(b.upper_bound())) return Fail("histogram", "NaN upper bound in " + where);
    if (i > 0 && !(b.upper_bound() > last_bound))
      return Fail("histogram", "upper bounds not increasing in " + where);
    if (is_float && b.cumulative_count() != 0)
      return Fail("histogram", "float histogram bucket carries an integer count in " + where);
    const double c =
        is_float ? b.cumulative_count_float() : static_cast<double>(b.cumulative_count());
    if (!(c >= 0) || (i > 0 && c < last_count))
      return Fail("histogram", "cumulative counts decrease in " + where);
    if (std::isinf(b.upper_bound()) && b.upper_bound() > 0 && c != count)
      return Fail("histogram", "+Inf bucket differs from the sample count in " + where);
    if (b.has_exemplar()) {
      if (std::string e = CheckExemplar(b.exemplar(), where, false); !e.empty()) return e;
    }
    last_bound = b.upper_bound();
    last_count = c;
  }
  if (h.bucket_size() > 0 && last_count > count && !(std::isinf(last_bound)))
    return Fail("histogram", "a bucket holds more than the sample count in " + where);
  const bool native = h.positive_span_size() > 0 || h.negative_span_size() > 0 ||
                      h.zero_threshold() > 0 || h.zero_count() > 0 || h.zero_count_float() > 0;
  if (!native) {
    if (h.positive_delta_size() || h.negative_delta_size() || h.positive_count_size() ||
        h.negative_count_size())
      return Fail("native", "native buckets without spans in " + where);
    return {};
  }
  if (h.schema() < -4 || h.schema() > 8)
    return Fail("native", "schema " + std::to_string(h.schema()) + " outside -4..8 in " + where);
  if (!(h.zero_threshold() >= 0) || std::isinf(h.zero_threshold()))
    return Fail("native", "invalid zero threshold in " + where);
  if (is_float && !(h.zero_count_float() >= 0))
    return Fail("native", "negative or NaN zero count in " + where);
  if (std::string e = CheckNativeSign(h.positive_span(), h.positive_delta(), h.positive_count(),
                                      is_float, where + " (positive)");
      !e.empty())
    return e;
  if (std::string e = CheckNativeSign(h.negative_span(), h.negative_delta(), h.negative_count(),
                                      is_float, where + " (negative)");
      !e.empty())
    return e;
  for (const pb::Exemplar& x : h.exemplars()) {
    if (std::string e = CheckExemplar(x, where, true); !e.empty()) return e;
  }
  return {};
}

}  // namespace

namespace {
// The length of the longest valid UTF-8 prefix of `s` (s.size() when all of it is valid).
size_t Utf8ValidPrefix(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 4;
      cp = c & 0x07;
    } else {
      return i;  // continuation byte, overlong 2-byte lead (c0, c1), or beyond U+10FFFF
    }
    if (i + n > s.size()) return i;
    for (size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return i;
      cp = cp << 6 | (d & 0x3f);
    }
    if (n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return i;
    if (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) return i;
    i += n;
  }
  return s.size();
}
}  // namespace

bool IsValidUtf8(std::string_view s) { return Utf8ValidPrefix(s) == s.size(); }

size_t CodePoints(std::string_view utf8) {
  size_t n = 0;
  for (char c : utf8) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

std::string CheckText004(std::string_view body) {
  if (!IsValidUtf8(body)) return Fail("utf8", "body is not valid UTF-8 " + WhereUtf8Breaks(body));
  if (!body.empty() && body.back() != '\n')
    return Fail("eof", "last line does not end in a newline");
  Checker checker(Dialect::kText004);
  const auto lines = SplitLines(body);
  for (size_t n = 0; n < lines.size(); ++n) {
    const size_t line_no = n + 1;
    const std::string_view line = lines[n];
    LineParser p(line, Dialect::kText004, line_no);
    p.SkipBlanks();
    if (p.AtEnd()) continue;  // blank lines are allowed in text 0.0.4
    if (p.Peek() == '#') {
      p.Expect('#');
      p.SkipBlanks();
      const std::string_view keyword = p.Token();
      if (keyword != "HELP" && keyword != "TYPE") continue;  // a comment
      p.SkipBlanks();
      const std::string_view name = p.Token();
      if (keyword == "HELP") {
        // One blank separates name and docstring; the docstring is the rest of the line.
        std::string_view rest = p.Rest();
        if (!rest.empty() && (rest[0] == ' ' || rest[0] == '\t')) rest.remove_prefix(1);
        if (std::string e = checker.Metadata(keyword, name, rest, line_no); !e.empty()) return e;
      } else {
        p.SkipBlanks();
        const std::string_view type = p.Token();
        p.SkipBlanks();
        if (!p.AtEnd()) return Fail("metadata", "text after the TYPE", line_no);
        if (std::string e = checker.Metadata(keyword, name, type, line_no); !e.empty()) return e;
      }
      continue;
    }
    Sample s;
    if (std::string e = p.ParseSample(s); !e.empty()) return e;
    if (std::string e = checker.SampleLine(s, line_no); !e.empty()) return e;
  }
  return checker.Finish();
}

std::string CheckOpenMetrics(std::string_view body) {
  if (!IsValidUtf8(body)) return Fail("utf8", "body is not valid UTF-8 " + WhereUtf8Breaks(body));
  const auto lines = SplitLines(body);
  if (lines.empty() || lines.back() != "# EOF") return Fail("eof", "the last line is not # EOF");
  Checker checker(Dialect::kOpenMetrics);
  for (size_t n = 0; n + 1 < lines.size(); ++n) {
    const size_t line_no = n + 1;
    const std::string_view line = lines[n];
    if (line.empty()) return Fail("eof", "blank line", line_no);
    if (line == "# EOF") return Fail("eof", "# EOF before the end", line_no);
    if (line[0] == '#') {
      // HASH SP keyword SP metricname SP rest
      const std::string_view keyword = line.size() > 6 ? line.substr(2, 4) : std::string_view();
      if (line.size() < 8 || line[1] != ' ' || line[6] != ' ' ||
          (keyword != "HELP" && keyword != "TYPE" && keyword != "UNIT")) {
        return Fail("metadata", "a '#' line that is not HELP, TYPE, UNIT or EOF", line_no);
      }
      const std::string_view after = line.substr(7);
      const size_t sp = after.find(' ');
      if (sp == std::string_view::npos)
        return Fail("metadata", "no space after the metric name", line_no);
      const std::string_view name = after.substr(0, sp);
      const std::string_view rest = after.substr(sp + 1);
      if (std::string e = checker.Metadata(keyword, name, rest, line_no); !e.empty()) return e;
      continue;
    }
    LineParser p(line, Dialect::kOpenMetrics, line_no);
    Sample s;
    if (std::string e = p.ParseSample(s); !e.empty()) return e;
    if (std::string e = checker.SampleLine(s, line_no); !e.empty()) return e;
  }
  return checker.Finish();
}

std::string CheckProtobufDelimited(std::string_view body) {
  google::protobuf::io::ArrayInputStream raw(body.data(), static_cast<int>(body.size()));
  google::protobuf::io::CodedInputStream in(&raw);
  std::set<std::string> family_names;
  std::map<std::string, std::string> claimed;
  for (size_t index = 0;; ++index) {
    pb::MetricFamily mf;
    bool clean_eof = false;
    if (!google::protobuf::util::ParseDelimitedFromCodedStream(&mf, &in, &clean_eof)) {
      if (clean_eof) break;
      return Fail("protobuf", "MetricFamily #" + std::to_string(index) + " does not parse");
    }
    const std::string where = "family #" + std::to_string(index) + " " + mf.name();
    if (!mf.unknown_fields().empty()) return Fail("protobuf", "unknown fields in " + where);
    if (!IsValidUtf8(mf.name()) || !IsValidUtf8(mf.help()) || !IsValidUtf8(mf.unit()))
      return Fail("utf8", "name, help or unit of " + where + " is not UTF-8");
    if (!IsMetricName(mf.name())) return Fail("name", "invalid metric name in " + where);
    if (!mf.has_type()) return Fail("protobuf", "no (known) type in " + where);
    if (!family_names.insert(mf.name()).second) return Fail("metadata", "family twice: " + where);
    if (mf.has_unit()) {
      std::string_view base = mf.name();
      if (mf.type() == pb::COUNTER && base.ends_with("_total")) base.remove_suffix(6);
      if (mf.unit().empty() || !base.ends_with("_" + mf.unit()))
        return Fail("metadata", "unit " + mf.unit() + " is not a suffix of " + where);
    }
    std::vector<std::string> names = {mf.name()};
    switch (mf.type()) {
      case pb::HISTOGRAM:
      case pb::GAUGE_HISTOGRAM:
        names.push_back(mf.name() + "_bucket");
        [[fallthrough]];
      case pb::SUMMARY:
        names.push_back(mf.name() + "_sum");
        names.push_back(mf.name() + "_count");
        break;
      default:
        break;
    }
    for (const std::string& n : names) {
      auto [it, inserted] = claimed.emplace(n, mf.name());
      if (!inserted && it->second != mf.name())
        return Fail("clash",
                    "name " + n + " belongs to families " + it->second + " and " + mf.name());
    }
    std::set<std::string> series;
    for (int m = 0; m < mf.metric_size(); ++m) {
      const pb::Metric& metric = mf.metric(m);
      const std::string mwhere = where + " metric #" + std::to_string(m);
      Labels labels;
      if (std::string e = CheckLabelPairs(metric.label(), mwhere, &labels); !e.empty()) return e;
      if (mf.type() == pb::SUMMARY && FindLabel(labels, "quantile"))
        return Fail("label", "label quantile on a summary in " + mwhere);
      if ((mf.type() == pb::HISTOGRAM || mf.type() == pb::GAUGE_HISTOGRAM) &&
          FindLabel(labels, "le"))
        return Fail("label", "label le on a histogram in " + mwhere);
      if (!series.insert(SeriesKey("", labels)).second)
        return Fail("duplicate", "label set twice in " + mwhere);
      const int fields = metric.has_counter() + metric.has_gauge() + metric.has_summary() +
                         metric.has_untyped() + metric.has_histogram();
      bool right = false;
      switch (mf.type()) {
        case pb::COUNTER:
          right = metric.has_counter();
          if (right && metric.counter().has_exemplar()) {
            if (std::string e = CheckExemplar(metric.counter().exemplar(), mwhere, false);
                !e.empty())
              return e;
          }
          break;
        case pb::GAUGE:
          right = metric.has_gauge();
          break;
        case pb::UNTYPED:
          right = metric.has_untyped();
          break;
        case pb::SUMMARY:
          right = metric.has_summary();
          if (right) {
            for (const pb::Quantile& q : metric.summary().quantile()) {
              if (!(q.quantile() >= 0 && q.quantile() <= 1))
                return Fail("summary", "quantile outside [0, 1] in " + mwhere);
            }
          }
          break;
        case pb::HISTOGRAM:
        case pb::GAUGE_HISTOGRAM:
          right = metric.has_histogram();
          if (right) {
            if (std::string e = CheckHistogram(metric.histogram(), mwhere); !e.empty()) return e;
          }
          break;
      }
      if (!right || fields != 1)
        return Fail("protobuf", "metric does not carry exactly the field of its type in " + mwhere);
    }
  }
  return {};
}

}  // namespace shmetrics::fuzz
