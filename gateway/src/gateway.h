// Gateway: one region served over HTTP. Wires the RegionReader (reap, fold, merge), the renderers,
// the self-metrics and the HTTP server, and runs the periodic reaper.
//
// The region is not ours: anyone who may write it can truncate, overwrite or replace it. Before
// each reap and scrape the gateway checks that the mapped object is intact (size, header) and
// that the name still points at it; a SIGBUS in the mapping (a truncation racing that check) is
// turned into zero pages by the SIGBUS guard. Once the mapping is lost the gateway never touches
// it again and serves the last snapshot it collected (encoders read gateway memory only). A name
// that points at another object is attached only when that object opens without blocking, is
// trusted, sized, initialised and valid; until then every reap retries (never waiting for a
// creator) and the gateway keeps serving what it has. Each degraded state is logged once per
// distinct reason and shows in shmetrics_region_attached and the counters by reason.
//
// Thread-safety: Start/Stop from one controlling thread; RenderMetrics and ReapNow from any
// thread. They serialise on one mutex; nothing under it waits on the region (opens are
// non-blocking, attaching never waits for a creator).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "exposition.h"
#include "http_server.h"
#include "metrics_endpoint.h"
#include "negotiation.h"
#include "region_reader.h"
#include "shmetrics/shm/region.h"
#include "sigbus_guard.h"

namespace shmetrics::gateway {

struct GatewayOptions {
  std::string region;
  shm::RegionOptions region_options;  // used only if the gateway creates the region
  ReaderOptions reader;
  HttpServerOptions http;
  std::chrono::milliseconds reap_interval{1000};
  std::string telemetry_path = "/metrics";  // where the metrics are served (--web.telemetry-path)
  // Scrapes rendered at once; more are answered 503 at once and counted. 0: no limit.
  uint32_t max_requests = 40;
  // Tests only: runs in every admitted scrape before it renders.
  std::function<void()> before_render;
};

// "0.1.0": the project's version, as --version and shmetrics_gateway_build_info give it.
const char* GatewayVersion();

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
  // 503 until the first reap has folded what died before the gateway started, 200 from then on
  // (the region is attached before: the constructor throws otherwise). It stays 200 when the
  // region is later lost: as a Kubernetes sidecar the gateway's readiness gates the app's pod, so
  // a degraded region shows in shmetrics_region_attached and the log, not here.
  HttpResponse HandleReady(const HttpRequestInfo& request);
  HttpResponse HandleLandingPage(const HttpRequestInfo& request);

  // One round of the reaper (every reap_interval once started): checks the region, re-attaches
  // a replaced one when it is valid, then reaps dead writers. Callable directly (tests).
  void ReapNow();

 private:
  struct EventMetrics;
  void ReaperLoop();
  // Marks the region lost if its object was resized or overwritten, or faulted (every scrape).
  void CheckIntactLocked();
  // That, then whether the name still points at it; re-attaches if it points at a valid region.
  void CheckRegionLocked();
  void TryReattachLocked();
  // Collects into snapshot_ unless the mapping turns out lost (before or during the collect).
  void CollectLocked();
  // From now on reader_'s mapping is not touched; renders use frozen_families_ and snapshot_.
  void MarkLostLocked(const std::string& reason, const std::string& what);
  void FailedAttachLocked(const std::string& reason, const std::string& what);
  // LogWarn, once per distinct message until the region is attached again.
  void WarnOnceLocked(const std::string& message);
  void SetAttachedLocked(bool attached);

  GatewayOptions options_;
  std::mutex mu_;                         // everything below up to events_
  std::unique_ptr<RegionReader> reader_;  // the region served (when lost_: served last)
  GuardedMapping guard_;  // reader_'s mapping; declared after it so it unregisters first
  bool lost_ = false;
  Snapshot snapshot_;  // the last good collect
  Snapshot scratch_;   // the collect in progress: becomes snapshot_ only if the mapping held
  size_t snapshot_series_ = 0;               // reader_->series() that snapshot_ covers
  std::vector<FamilyInfo> frozen_families_;  // when lost_: families with snapshot_'s series only
  std::set<std::string> warned_;
  LabelTextCache label_text_;  // for reader_'s series; reset when another region is attached
  std::shared_ptr<prometheus::Registry> registry_;  // the gateway's event counts (and endpoint's)
  std::unique_ptr<EventMetrics> events_;
  std::unique_ptr<MetricsEndpoint> endpoint_;  // negotiation, deadline, gzip for /metrics
  std::unique_ptr<HttpServer> server_;
  std::atomic<bool> ready_{false};  // the first reap is done
  std::atomic<uint32_t> scrapes_in_flight_{0};
  std::thread reaper_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
};

}  // namespace shmetrics::gateway
