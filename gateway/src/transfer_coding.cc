// Transfer-Encoding as a list of transfer-codings (RFC 9110 5.6.1, RFC 9112 6.1):
//   Transfer-Encoding = #transfer-coding
//   transfer-coding    = token *( OWS ";" OWS transfer-parameter )
//   transfer-parameter = token BWS "=" BWS ( token / quoted-string )
// Empty list elements are legal and ignored. Verdicts, in this order:
//  - any element that is not a transfer-coding, a list with no coding, or an HTTP/1.0 message
//    (RFC 9112 6.1: its framing must be treated as faulty): malformed, 400;
//  - chunked more than once or not last ("gzip" alone included; RFC 9112 6.3: the body length
//    cannot be determined, the server "MUST respond with 400"): malformed, 400. This MUST wins
//    over the SHOULD of the next rule;
//  - chunked last, under a coding other than chunked, or chunked with parameters: unsupported, 501
//    (RFC 9112 6.1: "SHOULD respond with 501").
#include "transfer_coding.h"

#include <cstddef>
#include <utility>

namespace shmetrics::gateway {
namespace {

constexpr std::size_t kMaxEchoed = 64;

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsOws(char c) { return c == ' ' || c == '\t'; }

void SkipOws(std::string_view s, std::size_t& i) {
  while (i < s.size() && IsOws(s[i])) ++i;
}

std::string_view Token(std::string_view s, std::size_t& i) {
  const std::size_t start = i;
  while (i < s.size() && IsTokenChar(s[i])) ++i;
  return s.substr(start, i - start);
}

// quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE; s[i] is the opening quote.
bool SkipQuotedString(std::string_view s, std::size_t& i) {
  for (++i; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"') {
      ++i;
      return true;
    }
    if (c == '\\') {
      if (++i == s.size()) return false;
      const auto escaped = static_cast<unsigned char>(s[i]);
      if (escaped < 0x20 && escaped != '\t') return false;
      if (escaped == 0x7f) return false;
    } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
      return false;
    }
  }
  return false;
}

// transfer-parameter, with the OWS before it; false if there is none.
bool SkipParameter(std::string_view s, std::size_t& i) {
  SkipOws(s, i);
  if (Token(s, i).empty()) return false;
  SkipOws(s, i);
  if (i == s.size() || s[i] != '=') return false;
  ++i;
  SkipOws(s, i);
  if (i == s.size()) return false;
  return s[i] == '"' ? SkipQuotedString(s, i) : !Token(s, i).empty();
}

bool EqualsChunked(std::string_view name) {
  constexpr std::string_view kChunked = "chunked";
  if (name.size() != kChunked.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = (name[i] >= 'A' && name[i] <= 'Z') ? static_cast<char>(name[i] + 32) : name[i];
    if (c != kChunked[i]) return false;
  }
  return true;
}

// Printable ASCII only, and short: the text goes into an error body.
std::string Echo(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, kMaxEchoed)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > kMaxEchoed) out += "...";
  return out;
}

TransferCodingCheck Verdict(TransferCodingVerdict verdict, std::string reason) {
  return {verdict, std::move(reason)};
}

}  // namespace

TransferCodingCheck CheckTransferEncoding(std::span<const std::string_view> field_values,
                                          unsigned http_version) {
  if (field_values.empty()) return {};
  if (http_version < 11) {
    return Verdict(TransferCodingVerdict::kMalformed,
                   "Transfer-Encoding in an HTTP/1.0 request: its framing cannot be trusted");
  }
  int codings = 0;
  int chunked = 0;
  bool chunked_last = false;
  std::string unsupported;  // the first coding we do not decode
  for (std::string_view value : field_values) {
    std::size_t i = 0;
    for (;;) {
      SkipOws(value, i);
      if (i == value.size()) break;
      if (value[i] == ',') {  // an empty element
        ++i;
        continue;
      }
      const std::size_t element_start = i;
      const std::string_view name = Token(value, i);
      if (name.empty()) {
        return Verdict(TransferCodingVerdict::kMalformed, "malformed Transfer-Encoding: '" +
                                                              Echo(value.substr(element_start)) +
                                                              "' is not a transfer-coding");
      }
      bool has_parameters = false;
      for (;;) {
        SkipOws(value, i);
        if (i == value.size() || value[i] != ';') break;
        ++i;
        if (!SkipParameter(value, i)) {
          return Verdict(TransferCodingVerdict::kMalformed,
                         "malformed Transfer-Encoding: bad parameter in '" +
                             Echo(value.substr(element_start)) + "'");
        }
        has_parameters = true;
      }
      if (i < value.size() && value[i] != ',') {
        return Verdict(TransferCodingVerdict::kMalformed, "malformed Transfer-Encoding: '" +
                                                              Echo(value.substr(element_start)) +
                                                              "' is not a transfer-coding");
      }
      ++codings;
      const bool is_chunked = EqualsChunked(name);
      chunked += is_chunked;
      chunked_last = is_chunked;
      if (unsupported.empty() && (!is_chunked || has_parameters)) {
        unsupported = Echo(value.substr(element_start, i - element_start));
      }
    }
  }
  if (codings == 0) {
    return Verdict(TransferCodingVerdict::kMalformed,
                   "malformed Transfer-Encoding: the field lists no transfer-coding");
  }
  if (chunked > 1 || !chunked_last) {
    return Verdict(TransferCodingVerdict::kMalformed,
                   "malformed Transfer-Encoding: chunked must be applied once, and last");
  }
  if (!unsupported.empty()) {
    return Verdict(
        TransferCodingVerdict::kUnsupported,
        "not implemented: Transfer-Encoding '" + unsupported + "'; only chunked is supported");
  }
  return {TransferCodingVerdict::kChunked, ""};
}

}  // namespace shmetrics::gateway
