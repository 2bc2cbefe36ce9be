// The gateway's metrics about the region it serves and its HTTP server, as data: absolute values
// read each scrape from the Snapshot, ReaderStats, HttpServerStats and the region's layout, turned
// into prometheus-cpp families for the renderers. Nothing is mirrored into prometheus-cpp
// counters: a count kept elsewhere is served as it is read there, so a re-created region starts
// its counts again (a counter reset to Prometheus' rate()).
//
// What the gateway counts as events itself (scrape durations, scrapes served, deadline actions,
// regions lost, failed attaches, whether it is attached) stays in its prometheus-cpp registry.
//
// Thread-safety: a pure function of its arguments.
#pragma once

#include <prometheus/metric_family.h>

#include <vector>

#include "http_server.h"
#include "region_reader.h"

namespace shmetrics::gateway {

struct SelfStats {
  const Snapshot& snapshot;
  const std::vector<FamilyInfo>& families;  // the region's, for the per-family drop counts
  size_t series = 0;                        // series registered in the region
  const shm::Layout& layout;
  ReaderStats reader;
  HttpServerStats http;  // all zero while the server is not running
};

// Appends one family per metric (each once, counters named `..._total`). A family with no
// series (no family has dropped anything) is left out.
void AppendSelfStats(const SelfStats& stats, std::vector<prometheus::MetricFamily>& out);

}  // namespace shmetrics::gateway
