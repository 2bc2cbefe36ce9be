// Strict checkers for the three exposition formats, written from the format specifications and
// independent of the gateway's encoders (they share no code with gateway/src): the fuzz targets
// feed them every body the gateway renders, and any violation is a finding.
//
//  - Text 0.0.4 (prometheus/docs exposition_formats.md, and what Go's expfmt TextParser rejects):
//    UTF-8; names and label names by the legacy grammar; label values with only \\ \" \n escapes,
//    HELP with only \\ \n; HELP and TYPE at most once per family and before its samples; every
//    sample under a TYPE whose family owns its name; no label name twice; no series twice; no
//    sample name owned by two families; histograms with `le` increasing, +Inf present, cumulative
//    counts never decreasing and _count equal to the +Inf bucket; summary quantiles in [0, 1].
//  - OpenMetrics 1.0 (the ABNF and rules of OpenMetrics.md, and every check of the strict parser
//    in python3-prometheus-client): the text rules above in their OpenMetrics form, plus `# EOF`
//    last, no blank lines, UNIT a suffix of the name, counter-like samples never NaN or negative,
//    integer bucket and count values, _count with _sum, no _sum beside negative buckets, exemplars
//    only on _total and _bucket and at most 128 code points of labels, clashing names, and the
//    MetricPoints of a family not interleaved.
//  - Protobuf delimited io.prometheus.client.MetricFamily: parsed with libprotobuf's generated
//    classes (ParseDelimitedFromCodedStream), then the rules Prometheus' protobuf parser and
//    histogram validation apply: names, UTF-8 strings, the metric field of the family's type,
//    unique label sets, classic buckets increasing, native histograms with a schema in -4..8, spans
//    that match their deltas or counts, non-negative absolute counts.
//
// The text checkers are deliberately strict where the encoders promise more than the spec
// requires (every family has a TYPE line, a histogram series' samples are contiguous): a change
// there shows up as a finding, and the rule can then be relaxed here on purpose.
//
// Each function returns "" when the body is valid, otherwise "<category>: <what>, line <n>" for
// the first violation. The category (utf8, name, label, escape, number, metadata, grouping,
// duplicate, clash, histogram, summary, counter, exemplar, eof, protobuf, native) lets a fuzz run
// skip a class of known findings (SHMETRICS_FUZZ_SKIP, see README.md).
#pragma once

#include <string>
#include <string_view>

namespace shmetrics::fuzz {

std::string CheckText004(std::string_view body);
std::string CheckOpenMetrics(std::string_view body);
std::string CheckProtobufDelimited(std::string_view body);

// Helpers, exposed for the checker's own tests.
bool IsValidUtf8(std::string_view s);  // RFC 3629: no overlong forms, surrogates or > U+10FFFF
size_t CodePoints(std::string_view utf8);

}  // namespace shmetrics::fuzz
