// Content negotiation for /metrics: which exposition format and which content coding a scrape gets,
// from its Accept and Accept-Encoding headers (as Prometheus 2.x sends them) and the `?format=`
// query override for humans with curl. Pure functions over header text: no I/O, no allocation
// beyond small vectors, callable from any thread.
//
// Accept (RFC 9110 §12.5.1, and Prometheus' docs/instrumenting/content_negotiation.md):
//  - Each format's q is the q of the most specific media range that matches it (type/subtype with
//    parameters > type/subtype > type/* > */*; equal specificity: the first listed). The format
//    with the highest q wins; ties go to the more specific match, then to the range listed first,
//    then to text 0.0.4 > OpenMetrics > protobuf (so `*/*` alone gets text).
//  - text/plain matches text 0.0.4 when its version is absent or 0.0.4 (Prometheus 3's
//    `version=1.0.0` does not match).
//  - application/openmetrics-text matches OpenMetrics when its version is absent, 1.0.0 or 0.0.1.
//    A client that asks for 0.0.1 is served 1.0.0, labelled version=1.0.0: 0.0.1 is the pre-1.0
//    identifier Prometheus 2.x still lists (at q=0.75), its OpenMetrics parser is chosen by the
//    media type alone and reads 1.0.0 whatever version it asked for, and client_golang sends the
//    same bytes for both.
//  - application/vnd.google.protobuf matches only with proto=io.prometheus.client.MetricFamily and
//    encoding=delimited (the only encoding we write).
//  - Parameters charset and escaping are ignored (we write UTF-8, and legacy names look the same
//    under every escaping scheme); any other unknown parameter makes a type/subtype range match
//    nothing. Parameters on `type/*` and `*/*` are ignored: they name no format to check them for.
//  - No acceptable format (an absent, empty or unparseable header, only unknown types, q=0
//    everywhere): text 0.0.4, never 406. Every Prometheus reads text, and v2 parses an unexpected
//    Content-Type as text anyway.
// Accept-Encoding (RFC 9110 §12.5.3): gzip when "gzip" (or "x-gzip"; else "*") has q > 0 and
// "identity" (explicitly, or through "*") is not preferred over it. When the client refuses
// identity and gzip alike we still send identity rather than a 406.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace shmetrics::gateway {

enum class Format { kText, kOpenMetrics, kProtobuf };

inline constexpr const char* kTextContentType = "text/plain; version=0.0.4; charset=utf-8";
inline constexpr const char* kOpenMetricsContentType =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
inline constexpr const char* kProtobufContentType =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

// The exact Content-Type of each format.
const char* ContentType(Format format);
// "text", "openmetrics", "protobuf": the `?format=` values and the self-metric label.
const char* FormatName(Format format);

// The best format the Accept header allows (text 0.0.4 when none).
Format NegotiateFormat(std::string_view accept);

// Whether the response may be gzip-coded.
bool AcceptsGzip(std::string_view accept_encoding);

// The `format` parameter of a query string ("format=openmetrics&x=1"). nullopt when absent; when
// present with an unknown value, nullopt and *error says which values are valid.
std::optional<Format> FormatFromQuery(std::string_view query, std::string* error);

}  // namespace shmetrics::gateway
