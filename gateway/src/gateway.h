// Gateway: one region served over HTTP. Wires the RegionReader (reap, fold, merge), the encoders,
// the self-metrics registry and the HTTP server, and runs the periodic reaper.
//
// Thread-safety: Start/Stop from one controlling thread; RenderMetrics from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "http_server.h"
#include "metrics_endpoint.h"
#include "negotiation.h"
#include "region_reader.h"
#include "shmetrics/shm/region.h"

namespace shmetrics::gateway {

struct GatewayOptions {
  std::string region;
  shm::RegionOptions region_options;  // used only if the gateway creates the region
  ReaderOptions reader;
  HttpServerOptions http;
  std::chrono::milliseconds reap_interval{1000};
};

class Gateway {
 public:
  // Attaches to (or creates) the region and takes the gateway lock. Throws shm::RegionError.
  explicit Gateway(GatewayOptions options);
  ~Gateway();

  // Starts the HTTP server and the reaper. Throws std::runtime_error if it cannot listen.
  void Start();
  void Stop();
  uint16_t port() const;

  // The /metrics body in text format 0.0.4: the region merged, then the self-metrics.
  std::string RenderMetrics();
  // The same in any format (OpenMetrics ends with # EOF; protobuf is binary, delimited).
  std::string Render(Format format);
  HttpResponse HandleMetrics(const HttpRequestInfo& request);
  HttpResponse HandleHealth(const HttpRequestInfo& request);

 private:
  struct SelfMetrics;
  void ReaperLoop();
  void UpdateSelfMetricsLocked(const Snapshot& snap);
  void CheckRecreatedLocked();

  GatewayOptions options_;
  std::mutex mu_;  // reader_, snapshot_, self-metric syncing
  std::unique_ptr<RegionReader> reader_;
  Snapshot snapshot_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<SelfMetrics> self_;
  std::unique_ptr<MetricsEndpoint> endpoint_;  // negotiation, deadline, gzip for /metrics
  std::unique_ptr<HttpServer> server_;
  std::thread reaper_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
};

}  // namespace shmetrics::gateway
