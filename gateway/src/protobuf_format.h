// Protobuf delimited encoder (application/vnd.google.protobuf;
// proto=io.prometheus.client.MetricFamily; encoding=delimited): one [uvarint length][MetricFamily]
// record per family, the framing of Go's pbutil.WriteDelimited, from the same data the text
// encoders read (a RegistryView + Snapshot).
//
// Mapping (proto/metrics.proto):
//  - MetricFamily.name is the series name: a counter's includes `_total` (Prometheus adds no
//    suffix to protobuf counters); `unit` is set when it is a `_unit` suffix of the name, because
//    Prometheus' protobuf parser rejects the whole scrape otherwise.
//  - Counter: value and created_timestamp (the series' registration time, see
//    openmetrics_format.h). Gauge: value, per-worker modes as one Metric per worker with label pid.
//  - Histogram: cumulative buckets without the +Inf one (it is sample_count, and optional on the
//    wire, as client_golang writes it), sample_count, sample_sum, created_timestamp. Counts are
//    uint64 when they are integers below 2^53 (always, unless the region is corrupt), otherwise
//    every count of that histogram goes in the *_float fields.
//  - Nothing is escaped: HELP and label values are raw UTF-8 strings.
//
// The generated classes stay inside protobuf_format.cc: callers see strings only.
// Thread-safety: pure functions of their arguments.
#pragma once

#include <prometheus/metric_family.h>

#include <string>
#include <vector>

#include "registry_view.h"

namespace shmetrics::gateway {

// Appends the region's families (families without series are left out).
void AppendProtobuf(const RegistryView& registry, const Snapshot& snapshot, std::string& out);
// Appends prometheus-cpp families (the gateway's self-metrics).
void AppendProtobuf(const std::vector<prometheus::MetricFamily>& families, std::string& out);

}  // namespace shmetrics::gateway
