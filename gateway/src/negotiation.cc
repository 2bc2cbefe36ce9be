#include "negotiation.h"

#include <charconv>
#include <utility>
#include <vector>

namespace shmetrics::gateway {
namespace {

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

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits on `sep` outside double-quoted strings (a quoted parameter value may hold ',' or ';').
std::vector<std::string_view> SplitOutsideQuotes(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  bool quoted = false;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted && c == '\\') {
      ++i;  // quoted-pair
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == sep && !quoted) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(s.substr(start));
  return parts;
}

// A quoted-string parameter value without its quotes and escapes.
std::string Unquote(std::string_view v) {
  if (v.size() < 2 || v.front() != '"' || v.back() != '"') return std::string(v);
  std::string out;
  for (size_t i = 1; i + 1 < v.size(); ++i) {
    if (v[i] == '\\' && i + 2 < v.size()) ++i;
    out += v[i];
  }
  return out;
}

// RFC 9110 qvalue: 0..1 with up to three decimals; we accept any decimal in [0, 1].
std::optional<double> ParseQ(std::string_view v) {
  v = Trim(v);
  double q = 0;
  const char* end = v.data() + v.size();
  auto [p, ec] = std::from_chars(v.data(), end, q, std::chars_format::fixed);
  if (ec != std::errc() || p != end || !(q >= 0 && q <= 1)) return std::nullopt;
  return q;
}

struct Param {
  std::string_view name;
  std::string value;
};

struct MediaRange {
  std::string_view type, subtype;
  std::vector<Param>
      params;  // media-type parameters: those before q (accept-ext after q is dropped)
  double q = 1;
  size_t position = 0;
};

// Parses one element of Accept; false if it is malformed (then it is ignored).
bool ParseMediaRange(std::string_view element, size_t position, MediaRange& out) {
  const auto parts = SplitOutsideQuotes(element, ';');
  const std::string_view media = Trim(parts[0]);
  const size_t slash = media.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == media.size()) return false;
  out.type = media.substr(0, slash);
  out.subtype = media.substr(slash + 1);
  if (out.type == "*" && out.subtype != "*") return false;
  out.position = position;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string_view p = Trim(parts[i]);
    if (p.empty()) continue;
    const size_t eq = p.find('=');
    if (eq == std::string_view::npos) return false;
    const std::string_view name = Trim(p.substr(0, eq));
    const std::string_view value = Trim(p.substr(eq + 1));
    if (IEquals(name, "q")) {
      const auto q = ParseQ(value);
      if (!q) return false;
      out.q = *q;
      break;  // what follows q is accept-ext, not part of the media type
    }
    out.params.push_back(Param{name, Unquote(value)});
  }
  return true;
}

struct Supported {
  Format format;
  std::string_view type, subtype;
};
constexpr Supported kSupported[] = {
    // In server preference order (the last tie-breaker).
    {Format::kText, "text", "plain"},
    {Format::kOpenMetrics, "application", "openmetrics-text"},
    {Format::kProtobuf, "application", "vnd.google.protobuf"},
};

// Whether an exact-type range's parameters select this format.
bool ParamsMatch(Format format, const std::vector<Param>& params) {
  bool proto = false, delimited = false;
  for (const Param& p : params) {
    if (IEquals(p.name, "charset") || IEquals(p.name, "escaping")) continue;
    if (format == Format::kText && IEquals(p.name, "version")) {
      if (p.value != "0.0.4") return false;
    } else if (format == Format::kOpenMetrics && IEquals(p.name, "version")) {
      if (p.value != "1.0.0" && p.value != "0.0.1") return false;
    } else if (format == Format::kProtobuf && IEquals(p.name, "proto")) {
      if (p.value != "io.prometheus.client.MetricFamily") return false;
      proto = true;
    } else if (format == Format::kProtobuf && IEquals(p.name, "encoding")) {
      if (p.value != "delimited") return false;
      delimited = true;
    } else {
      return false;
    }
  }
  return format != Format::kProtobuf || (proto && delimited);
}

// Specificity of `range` for `s`, or -1 when it does not match.
int Specificity(const MediaRange& range, const Supported& s) {
  if (range.type == "*") return 0;
  if (!IEquals(range.type, s.type)) return -1;
  if (range.subtype == "*") return 1;
  if (!IEquals(range.subtype, s.subtype)) return -1;
  if (!ParamsMatch(s.format, range.params)) return -1;
  return range.params.empty() ? 2 : 3;
}

}  // namespace

const char* ContentType(Format format) {
  switch (format) {
    case Format::kText:
      return kTextContentType;
    case Format::kOpenMetrics:
      return kOpenMetricsContentType;
    case Format::kProtobuf:
      return kProtobufContentType;
  }
  return kTextContentType;
}

const char* FormatName(Format format) {
  switch (format) {
    case Format::kText:
      return "text";
    case Format::kOpenMetrics:
      return "openmetrics";
    case Format::kProtobuf:
      return "protobuf";
  }
  return "text";
}

Format NegotiateFormat(std::string_view accept) {
  std::vector<MediaRange> ranges;
  size_t position = 0;
  for (std::string_view element : SplitOutsideQuotes(accept, ',')) {
    if (Trim(element).empty()) continue;
    MediaRange r;
    if (ParseMediaRange(element, position++, r)) ranges.push_back(std::move(r));
  }

  struct Score {
    double q = 0;
    int specificity = -1;
    size_t position = 0;
  };
  std::optional<Format> best;
  Score best_score;
  for (const Supported& s : kSupported) {
    // The most specific matching range decides this format's q (first listed on a tie).
    Score score;
    for (const MediaRange& r : ranges) {
      const int spec = Specificity(r, s);
      if (spec > score.specificity) score = Score{r.q, spec, r.position};
    }
    if (score.specificity < 0 || score.q <= 0) continue;
    const bool better =
        !best || score.q > best_score.q ||
        (score.q == best_score.q &&
         (score.specificity > best_score.specificity ||
          (score.specificity == best_score.specificity && score.position < best_score.position)));
    if (better) {  // equal in everything: the earlier entry of kSupported stays
      best = s.format;
      best_score = score;
    }
  }
  return best.value_or(Format::kText);
}

bool AcceptsGzip(std::string_view accept_encoding) {
  std::optional<double> gzip, identity, star;
  for (std::string_view element : SplitOutsideQuotes(accept_encoding, ',')) {
    const auto parts = SplitOutsideQuotes(element, ';');
    const std::string_view coding = Trim(parts[0]);
    if (coding.empty()) continue;
    double q = 1;
    bool valid = true;
    for (size_t i = 1; i < parts.size(); ++i) {
      const std::string_view p = Trim(parts[i]);
      const size_t eq = p.find('=');
      if (eq != std::string_view::npos && IEquals(Trim(p.substr(0, eq)), "q")) {
        const auto parsed = ParseQ(p.substr(eq + 1));
        if (!parsed)
          valid = false;
        else
          q = *parsed;
      }
    }
    if (!valid) continue;
    if (IEquals(coding, "gzip") || IEquals(coding, "x-gzip")) {
      if (!gzip || q > *gzip) gzip = q;
    } else if (IEquals(coding, "identity")) {
      identity = q;
    } else if (coding == "*") {
      star = q;
    }
  }
  const double g = gzip ? *gzip : star.value_or(0);
  if (g <= 0) return false;
  // identity is acceptable with no stated preference unless listed (or covered by "*").
  const std::optional<double> id = identity ? identity : star;
  return !id || g >= *id;
}

std::optional<Format> FormatFromQuery(std::string_view query, std::string* error) {
  // A query string has no quoted strings: every '&' separates (split as a header was, a '"' in an
  // earlier parameter hid the format parameter behind it).
  for (size_t start = 0; start <= query.size();) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    const std::string_view pair = query.substr(start, end - start);
    start = end + 1;
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) != "format") continue;
    const std::string_view value = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    for (Format f : {Format::kText, Format::kOpenMetrics, Format::kProtobuf}) {
      if (IEquals(value, FormatName(f))) return f;
    }
    if (error != nullptr) {
      *error = "unknown format '" + std::string(value.substr(0, 64)) +
               "'; use ?format=text, ?format=openmetrics or ?format=protobuf";
    }
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace shmetrics::gateway
