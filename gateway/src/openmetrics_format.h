// OpenMetrics 1.0 text encoder (application/openmetrics-text; version=1.0.0), from the same data
// the text 0.0.4 encoder reads: a RegistryView (the reader's decoded families and series) and a
// Snapshot, then the prometheus-cpp self-metric families, then `# EOF`.
//
// What differs from text 0.0.4, per the OpenMetrics spec and the strict parser in
// python3-prometheus-client (prometheus_client.openmetrics.parser), which the tests run:
//  - Metadata is TYPE, UNIT (only when the unit is a `_unit` suffix of the name, as the spec and
//    Prometheus' protobuf parser require), HELP (omitted when empty). HELP escapes `\`, newline
//    and `"`.
//  - A counter family is named without `_total` (`# TYPE foo counter`), its samples are
//    `foo_total` and `foo_created`.
//  - `_created` (seconds since the epoch) for counters and histograms: the series' registration
//    time in the region. The region's counters never reset while the region lives (dead workers
//    are folded in), so that is the start of the count. Prometheus 2.42 stores these lines as
//    ordinary series (`foo_created`); later versions read them as created timestamps.
//  - Numbers in Go's %g form with ".0" appended to integers ("1.0", "1e-05", "1.5e+06"), which is
//    how Prometheus' protobuf parser spells `le`, so a histogram keeps its series whichever of
//    OpenMetrics and protobuf it is scraped in.
//  - Counter-like samples may not be negative or NaN. A counter or histogram series whose counts
//    are not finite non-negative integers (only a corrupt region holds such) is left out; a
//    histogram with a negative bound, or whose sum is negative or NaN, is served without `_sum`
//    and `_count`, which OpenMetrics forbids there (text 0.0.4 and protobuf still carry them); a
//    summary whose sum is negative or NaN is served with its `_count` only.
//  - The exposition ends with `# EOF` (AppendOpenMetricsEof), after the self-metrics.
//
// Thread-safety: pure functions of their arguments.
#pragma once

#include <prometheus/metric_family.h>

#include <string>
#include <string_view>
#include <vector>

#include "registry_view.h"

namespace shmetrics::gateway {

// Appends the region's families (families without series are left out, as in text 0.0.4).
void AppendOpenMetrics(const RegistryView& registry, const Snapshot& snapshot, std::string& out);
// Appends prometheus-cpp families (the gateway's self-metrics; counters named `..._total`).
void AppendOpenMetrics(const std::vector<prometheus::MetricFamily>& families, std::string& out);
// The mandatory last line.
void AppendOpenMetricsEof(std::string& out);

namespace om {

// Go's strconv.FormatFloat(v, 'g', -1, 64): shortest digits that round-trip, exponent form when
// the decimal exponent is < -4 or >= 6 ("100000", "1e+06", "0.0001", "1e-05"); "+Inf", "-Inf",
// "NaN".
void AppendGoFloat(std::string& out, double v);
// An OpenMetrics canonical number: AppendGoFloat, plus ".0" when that has neither '.' nor 'e'.
void AppendNumber(std::string& out, double v);
// Whether `unit` may be declared for a family whose name (without a counter's `_total`) is
// `name`: non-empty and `name` ends with "_" + unit.
bool UnitMatchesName(std::string_view name, std::string_view unit);

}  // namespace om
}  // namespace shmetrics::gateway
