// MetricsEndpoint: the HTTP side of /metrics around a renderer. It picks the format (`?format=`,
// else Accept; see negotiation.h) and the coding (Accept-Encoding), holds the scrape to the
// scraper's deadline, gzips, sets Content-Type, Content-Encoding and Vary, and counts what it
// served in the gateway's self-metrics registry:
//   shmetrics_scrapes_total{format="text|openmetrics|protobuf",encoding="identity|gzip"}
//   shmetrics_scrape_deadline_actions_total{action="skipped_gzip|answered_503"}
// (a body shows the responses served before it).
//
// The deadline (X-Prometheus-Scrape-Timeout-Seconds, which Prometheus sets to the scrape timeout):
//  - Collecting and encoding cannot be cut short, so the check comes after the renderer returns.
//    If that took longer than the timeout, the answer is a 503 with a one-line reason instead of
//    the late body: Prometheus has already dropped the connection and failed the scrape (its clock
//    started before ours), so the body would be wasted, and a human who set the header sees why.
//    Logged at warn (rate-limited) and counted.
//  - gzip is the one step we can skip. If the time left is less than the predicted gzip time
//    (body bytes / the throughput measured on earlier scrapes, 100 MB/s before the first), the
//    body goes out uncompressed: more bytes on the wire, but no CPU-bound step after the deadline
//    is already close. Counted.
//  - Without the header (curl, other scrapers) there is no deadline.
// Vary is always `Accept, Accept-Encoding`: the body depends on both headers.
//
// Thread-safety: Handle may run on several HTTP threads at once.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "http_server.h"
#include "negotiation.h"

namespace shmetrics::gateway {

struct MetricsEndpointOptions {
  int gzip_level = 1;                            // see gzip.h
  double initial_gzip_bytes_per_second = 100e6;  // prediction before the first measurement
};

class MetricsEndpoint {
 public:
  // Collects and encodes the whole body in `format` (Gateway::Render).
  using Renderer = std::function<std::string(Format)>;

  // Registers the endpoint's self-metric families in `registry`.
  explicit MetricsEndpoint(prometheus::Registry& registry, MetricsEndpointOptions options = {});

  HttpResponse Handle(const HttpRequestInfo& request, const Renderer& render);

  // Whether a body of `bytes` can be gzipped at `bytes_per_second` within `seconds_left`
  // (exposed for tests).
  static bool GzipFits(size_t bytes, double bytes_per_second, double seconds_left);

 private:
  MetricsEndpointOptions options_;
  prometheus::Family<prometheus::Counter>& scrapes_;
  prometheus::Counter* served_[3][2];  // [format][gzip]
  prometheus::Family<prometheus::Counter>& deadline_;
  prometheus::Counter& skipped_gzip_;
  prometheus::Counter& answered_503_;
  std::atomic<double> gzip_bytes_per_second_;
  std::atomic<uint64_t> deadline_misses_{0};
};

}  // namespace shmetrics::gateway
