// Fuzzes content negotiation (negotiation.h): NegotiateFormat (Accept), AcceptsGzip
// (Accept-Encoding) and FormatFromQuery (?format=).
//
// The first byte picks a mode:
//  0  raw bytes: the rest, split at the first two '\n', is an Accept header, an Accept-Encoding
//     header and a query string. Nothing may crash, every result is one of the supported formats,
//     FormatFromQuery returns a format or an error, never both, and the answers are stable.
//  1  a structured Accept header: the bytes choose media ranges (types, wildcards, parameters,
//     quoted values, q-values, letter case, optional whitespace, empty list elements) from
//     RFC 9110's grammar, and the answer is compared with a reference model written here from the
//     rules documented in negotiation.h: each format's q from its most specific matching range,
//     highest q wins, q=0 excludes, ties to the more specific, then the earlier range, then text >
//     OpenMetrics > protobuf, text when nothing is acceptable.
//  2  a structured Accept-Encoding header, compared with the documented rule: gzip when gzip (or
//     x-gzip, else *) has q > 0 and identity (or *) is not preferred over it.
//  3  a structured query string: the first `format` parameter decides; its value, ignoring case,
//     names a format or is an error.
// A disagreement is a finding: the input, the header and both answers are printed.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_report.h"
#include "negotiation.h"

namespace {

namespace gw = shmetrics::gateway;
using gw::Format;
using shmetrics::fuzz::Finding;

constexpr const char* kTarget = "negotiation_fuzz_test";

class Choices {
 public:
  Choices(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  uint8_t Next() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  bool Empty() const { return n_ == 0; }

 private:
  const uint8_t* p_;
  size_t n_;
};

const char* Name(Format f) {
  switch (f) {
    case Format::kText:
      return "text";
    case Format::kOpenMetrics:
      return "openmetrics";
    case Format::kProtobuf:
      return "protobuf";
  }
  return "<not a Format>";
}

bool Supported(Format f) {
  return f == Format::kText || f == Format::kOpenMetrics || f == Format::kProtobuf;
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// Letters of `s` in upper case where the bits of `mask` say so.
std::string Cased(std::string_view s, uint8_t mask) {
  std::string out(s);
  for (size_t i = 0; i < out.size(); ++i) {
    if ((mask >> (i % 8)) & 1 && out[i] >= 'a' && out[i] <= 'z')
      out[i] = static_cast<char>(out[i] - 'a' + 'A');
  }
  return out;
}

std::string Ows(uint8_t c) {  // optional whitespace: SP / HTAB, up to two
  static const char* kWs[] = {"", "", " ", "\t", "  ", " \t"};
  return kWs[c % 6];
}

// q-values as RFC 9110 writes them, and their value in thousandths.
struct QValue {
  const char* text;
  int thousandths;
};
constexpr QValue kQ[] = {{"0", 0},        {"0.0", 0},     {"0.000", 0},   {"0.001", 1},
                         {"0.1", 100},    {"0.5", 500},   {"0.500", 500}, {"0.75", 750},
                         {"0.8", 800},    {"0.999", 999}, {"1", 1000},    {"1.0", 1000},
                         {"1.000", 1000}, {"0.75", 750},  {"0.1", 100},   {"0.5", 500}};

// ---- Accept ----------------------------------------------------------------------------------

struct MediaType {
  const char* type;
  const char* subtype;
};
constexpr MediaType kTypes[] = {
    {"text", "plain"},
    {"application", "openmetrics-text"},
    {"application", "vnd.google.protobuf"},
    {"text", "*"},
    {"application", "*"},
    {"*", "*"},
    {"application", "json"},
    {"text", "html"},
    {"image", "*"},
    {"application", "xml"},
};
struct Param {
  const char* name;
  const char* value;
};
constexpr Param kParams[] = {
    {"version", "0.0.4"},
    {"version", "1.0.0"},
    {"version", "0.0.1"},
    {"version", "2.0.0"},
    {"proto", "io.prometheus.client.MetricFamily"},
    {"proto", "io.prometheus.client.Other"},
    {"encoding", "delimited"},
    {"encoding", "text"},
    {"encoding", "compact-text"},
    {"charset", "utf-8"},
    {"escaping", "underscores"},
    {"escaping", "allow-utf-8"},
    {"foo", "bar"},
};

struct Range {
  int type;
  std::vector<int> params;
  int q = 1000;  // thousandths
};

constexpr struct {
  Format format;
  const char* type;
  const char* subtype;
} kServed[] = {{Format::kText, "text", "plain"},
               {Format::kOpenMetrics, "application", "openmetrics-text"},
               {Format::kProtobuf, "application", "vnd.google.protobuf"}};

// Specificity of `r` for served format `s`: -1 no match, 0 */*, 1 type/*, 2 type/subtype,
// 3 type/subtype with parameters.
int Specificity(const Range& r, int s) {
  const MediaType& t = kTypes[r.type];
  if (std::string_view(t.type) == "*") return 0;
  if (std::string_view(t.type) != kServed[s].type) return -1;
  if (std::string_view(t.subtype) == "*") return 1;
  if (std::string_view(t.subtype) != kServed[s].subtype) return -1;
  bool proto = false, delimited = false;
  for (int pi : r.params) {
    const std::string_view name = kParams[pi].name, value = kParams[pi].value;
    if (name == "charset" || name == "escaping") continue;
    const Format f = kServed[s].format;
    if (f == Format::kText && name == "version") {
      if (value != "0.0.4") return -1;
    } else if (f == Format::kOpenMetrics && name == "version") {
      if (value != "1.0.0" && value != "0.0.1") return -1;
    } else if (f == Format::kProtobuf && name == "proto") {
      if (value != "io.prometheus.client.MetricFamily") return -1;
      proto = true;
    } else if (f == Format::kProtobuf && name == "encoding") {
      if (value != "delimited") return -1;
      delimited = true;
    } else {
      return -1;  // an unknown parameter: the range matches nothing
    }
  }
  if (kServed[s].format == Format::kProtobuf && !(proto && delimited)) return -1;
  return r.params.empty() ? 2 : 3;
}

Format ReferenceFormat(const std::vector<Range>& ranges) {
  std::optional<int> best;
  int best_q = 0, best_spec = -1;
  size_t best_pos = 0;
  for (int s = 0; s < 3; ++s) {
    int q = 0, spec = -1;
    size_t pos = 0;
    for (size_t i = 0; i < ranges.size(); ++i) {
      const int sp = Specificity(ranges[i], s);
      if (sp > spec) {
        spec = sp;
        q = ranges[i].q;
        pos = i;
      }
    }
    if (spec < 0 || q <= 0) continue;
    if (!best || q > best_q ||
        (q == best_q && (spec > best_spec || (spec == best_spec && pos < best_pos)))) {
      best = s;
      best_q = q;
      best_spec = spec;
      best_pos = pos;
    }
  }
  return best ? kServed[*best].format : Format::kText;
}

void FuzzAccept(Choices& c) {
  std::vector<Range> ranges;
  std::string header;
  const int count = 1 + c.Next() % 6;
  for (int i = 0; i < count; ++i) {
    if (i > 0) header += Ows(c.Next()) + "," + Ows(c.Next());
    if (c.Next() % 8 == 0) {  // an empty list element (RFC 9110 5.6.1: recipients accept them)
      header += Ows(c.Next()) + "," + Ows(c.Next());
    }
    Range r;
    r.type = c.Next() % static_cast<int>(std::size(kTypes));
    const MediaType& t = kTypes[r.type];
    const uint8_t casing = c.Next();
    header += Cased(t.type, casing) + "/" + Cased(t.subtype, static_cast<uint8_t>(casing >> 3));
    // Parameters only on exact types: what a wildcard with parameters means is not specified.
    const int nparams = std::string_view(t.subtype) == "*" ? 0 : c.Next() % 4;
    for (int p = 0; p < nparams; ++p) {
      const int pi = c.Next() % static_cast<int>(std::size(kParams));
      bool repeated = false;
      for (int other : r.params)
        repeated = repeated || IEquals(kParams[other].name, kParams[pi].name);
      if (repeated) continue;
      r.params.push_back(pi);
      const uint8_t style = c.Next();
      std::string value = kParams[pi].value;
      if (style & 1) {  // quoted-string, sometimes with a quoted-pair
        std::string quoted = "\"";
        for (size_t k = 0; k < value.size(); ++k) {
          if ((style & 2) && k == value.size() / 2) quoted += '\\';
          quoted += value[k];
        }
        value = quoted + "\"";
      }
      header +=
          Ows(style >> 2) + ";" + Ows(style >> 5) + Cased(kParams[pi].name, c.Next()) + "=" + value;
    }
    const uint8_t qc = c.Next();
    if (qc % 3 != 0) {
      const QValue& q = kQ[(qc >> 2) % std::size(kQ)];
      r.q = q.thousandths;
      header += Ows(qc >> 6) + ";" + Ows(c.Next()) + ((qc & 2) ? "Q" : "q") + "=" + q.text;
    }
    ranges.push_back(r);
  }
  const Format expected = ReferenceFormat(ranges);
  const Format got = gw::NegotiateFormat(header);
  if (got != expected) {
    Finding(kTarget, "NegotiateFormat(\"" + header + "\") = " + Name(got) +
                         ", the documented rules give " + Name(expected));
  }
}

// ---- Accept-Encoding -------------------------------------------------------------------------

void FuzzAcceptEncoding(Choices& c) {
  static const char* kCodings[] = {"gzip", "x-gzip",  "identity", "*",
                                   "br",   "deflate", "compress", "zstd"};
  std::optional<int> gzip, identity, star;
  std::vector<bool> used(std::size(kCodings), false);
  std::string header;
  const int count = c.Next() % 6;
  for (int i = 0; i < count; ++i) {
    int k = c.Next() % static_cast<int>(std::size(kCodings));
    if (used[k] || ((k == 0 || k == 1) && (used[0] || used[1]))) continue;  // each at most once
    used[k] = true;
    if (!header.empty()) header += Ows(c.Next()) + "," + Ows(c.Next());
    header += k == 3 ? std::string("*") : Cased(kCodings[k], c.Next());
    int q = 1000;
    const uint8_t qc = c.Next();
    if (qc % 3 != 0) {
      const QValue& qv = kQ[(qc >> 2) % std::size(kQ)];
      q = qv.thousandths;
      header += Ows(qc >> 6) + ";" + Ows(c.Next()) + ((qc & 2) ? "Q" : "q") + "=" + qv.text;
    }
    if (k <= 1) gzip = q;
    if (k == 2) identity = q;
    if (k == 3) star = q;
  }
  const int g = gzip ? *gzip : star.value_or(0);
  const std::optional<int> id = identity ? identity : star;
  const bool expected = g > 0 && (!id || g >= *id);
  const bool got = gw::AcceptsGzip(header);
  if (got != expected) {
    Finding(kTarget, "AcceptsGzip(\"" + header + "\") = " + (got ? "true" : "false") +
                         ", the documented rule gives " + (expected ? "true" : "false"));
  }
}

// ---- ?format= --------------------------------------------------------------------------------

void FuzzQuery(Choices& c) {
  static const char* kPairs[] = {
      "format=text",
      "format=openmetrics",
      "format=protobuf",
      "format=OpenMetrics",
      "format=PROTOBUF",
      "format=bogus",
      "format=",
      "format",
      "x=1",
      "formats=text",
      "Format=text",
      "a=\"",
      "b=\"x,y\"",
      "=",
      "",
      "format=text;q=1",
  };
  std::vector<std::string> pairs;
  const int count = c.Next() % 5;
  for (int i = 0; i < count; ++i) pairs.push_back(kPairs[c.Next() % std::size(kPairs)]);
  std::string query;
  for (size_t i = 0; i < pairs.size(); ++i) query += (i ? "&" : "") + pairs[i];
  // Reference: a query string has no quoting; '&' separates, the first "format" key decides.
  std::optional<Format> expected;
  bool expected_error = false;
  for (const std::string& pair : pairs) {
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) != "format") continue;
    const std::string value = eq == std::string::npos ? "" : pair.substr(eq + 1);
    for (Format f : {Format::kText, Format::kOpenMetrics, Format::kProtobuf}) {
      if (IEquals(value, Name(f))) expected = f;
    }
    expected_error = !expected;
    break;
  }
  std::string error;
  const std::optional<Format> got = gw::FormatFromQuery(query, &error);
  if (got != expected || error.empty() == expected_error) {
    Finding(kTarget, "FormatFromQuery(\"" + query + "\") = " + (got ? Name(*got) : "none") +
                         (error.empty() ? "" : " with error \"" + error + "\"") + ", expected " +
                         (expected ? Name(*expected) : "none") +
                         (expected_error ? " with an error" : ""));
  }
}

// ---- raw -------------------------------------------------------------------------------------

void FuzzRaw(std::string_view rest) {
  const size_t a = rest.find('\n');
  const std::string_view accept = rest.substr(0, a);
  const std::string_view after =
      a == std::string_view::npos ? std::string_view() : rest.substr(a + 1);
  const size_t b = after.find('\n');
  const std::string_view encoding = after.substr(0, b);
  const std::string_view query =
      b == std::string_view::npos ? std::string_view() : after.substr(b + 1);

  const Format f = gw::NegotiateFormat(accept);
  if (!Supported(f)) Finding(kTarget, "NegotiateFormat returned a value that is not a Format");
  if (gw::NegotiateFormat(accept) != f) Finding(kTarget, "NegotiateFormat is not stable");
  if (gw::ContentType(f) == nullptr || gw::FormatName(f) == nullptr)
    Finding(kTarget, "no Content-Type or name for a negotiated format");
  const bool gzip = gw::AcceptsGzip(encoding);
  if (gw::AcceptsGzip(encoding) != gzip) Finding(kTarget, "AcceptsGzip is not stable");
  std::string error;
  const std::optional<Format> q = gw::FormatFromQuery(query, &error);
  if (q && (!Supported(*q) || !error.empty()))
    Finding(kTarget,
            "FormatFromQuery returned a format and an error, or a value that is not a Format");
  if (!q && !error.empty() && error.size() > 200)
    Finding(kTarget, "FormatFromQuery error is unbounded");
  (void)gw::FormatFromQuery(query, nullptr);  // a null error pointer is allowed
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Choices c(data + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      FuzzRaw(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
      break;
    case 1:
      FuzzAccept(c);
      break;
    case 2:
      FuzzAcceptEncoding(c);
      break;
    case 3:
      FuzzQuery(c);
      break;
  }
  return 0;
}
