// Encoders from a merged Snapshot (and prometheus-cpp self-metric families) to an exposition
// body. Every family is written once with one HELP and one TYPE line, every series once.
#pragma once

#include <prometheus/metric_family.h>

#include <string>
#include <vector>

#include "registry_view.h"

namespace shmetrics::gateway {

// Prometheus text format 0.0.4.
inline constexpr const char* kTextContentType = "text/plain; version=0.0.4; charset=utf-8";

// Appends the region's families in text format 0.0.4.
void AppendText(const RegistryView& registry, const Snapshot& snapshot, std::string& out);
// Appends prometheus-cpp families (the gateway's self-metrics) in text format 0.0.4.
void AppendText(const std::vector<prometheus::MetricFamily>& families, std::string& out);

}  // namespace shmetrics::gateway
