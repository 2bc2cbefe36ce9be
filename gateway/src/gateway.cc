#include "gateway.h"

#include <prometheus/histogram.h>

#include <algorithm>

#include "exposition.h"
#include "log.h"
#include "registry_view.h"
#include "self_metrics.h"

namespace shmetrics::gateway {
namespace {

// Label values of shmetrics_region_attach_failures_total: shm::ReasonName()s, and the gateway's.
constexpr const char* kAttachFailureReasons[] = {"not_found", "access",    "not_regular",
                                                 "untrusted", "not_ready", "invalid",
                                                 "locked",    "fault",     "other"};
constexpr const char* kLostReasons[] = {"truncated", "overwritten", "fault"};
// Distinct warnings kept (and logged) per attachment; past it they are suppressed.
constexpr size_t kMaxWarnings = 64;

}  // namespace

// What the gateway counts as events itself; everything it reads from elsewhere is served as data
// (self_metrics.h).
struct Gateway::EventMetrics {
  explicit EventMetrics(prometheus::Registry& r)
      : scrape(prometheus::BuildHistogram()
                   .Name("shmetrics_scrape_duration_seconds")
                   .Help("Time to reap, merge and encode one /metrics body.")
                   .Register(r)),
        scrape_duration(scrape.Add(
            {}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                        0.05, 0.1, 0.25, 0.5, 1, 2.5})),
        attached_family(
            prometheus::BuildGauge()
                .Name("shmetrics_region_attached")
                .Help("1 while the gateway reads the region /dev/shm/NAME points at and it is "
                      "intact; 0 while it serves what it had because that region was truncated, "
                      "overwritten, removed or replaced by one it could not attach (see "
                      "shmetrics_region_lost_total, shmetrics_region_attach_failures_total and "
                      "the log).")
                .Register(r)),
        attached(attached_family.Add({})),
        lost(prometheus::BuildCounter()
                 .Name("shmetrics_region_lost_total")
                 .Help("Times the region being served stopped being intact, by reason: truncated "
                       "(resized under the mapping), overwritten (its header), fault (a SIGBUS in "
                       "the mapping). The gateway then serves its last snapshot.")
                 .Register(r)),
        build_info(prometheus::BuildGauge()
                       .Name("shmetrics_gateway_build_info")
                       .Help("1, labelled with the gateway's version and the region layout "
                             "version it reads.")
                       .Register(r)),
        refused(prometheus::BuildCounter()
                    .Name("shmetrics_scrapes_refused_total")
                    .Help("Scrapes answered 503 at once because --web.max-requests were being "
                          "rendered.")
                    .Register(r)
                    .Add({})),
        attach_failures(
            prometheus::BuildCounter()
                .Name("shmetrics_region_attach_failures_total")
                .Help("Reaps that found /dev/shm/NAME pointing at another object and could not "
                      "attach it, by reason: not_found, access, not_regular (a FIFO, link, ...), "
                      "untrusted (owner or mode), not_ready (not sized or initialised yet), "
                      "invalid (not a region this build reads), locked (another gateway serves "
                      "it), fault (truncated while attaching), other. Retried every reap.")
                .Register(r)) {
    attached.Set(1);
    build_info.Add({{"version", GatewayVersion()}, {"layout", std::to_string(shm::kLayoutVersion)}})
        .Set(1);
    for (const char* reason : kLostReasons) lost.Add({{"reason", reason}});
    for (const char* reason : kAttachFailureReasons) attach_failures.Add({{"reason", reason}});
  }

  prometheus::Family<prometheus::Histogram>& scrape;
  prometheus::Histogram& scrape_duration;
  prometheus::Family<prometheus::Gauge>& attached_family;
  prometheus::Gauge& attached;
  prometheus::Family<prometheus::Counter>& lost;
  prometheus::Family<prometheus::Gauge>& build_info;
  prometheus::Counter& refused;
  prometheus::Family<prometheus::Counter>& attach_failures;
};

const char* GatewayVersion() { return SHMETRICS_VERSION; }

Gateway::Gateway(GatewayOptions options) : options_(std::move(options)) {
  auto region = shm::Region::OpenOrCreate(options_.region, options_.region_options);
  guard_ = GuardedMapping(region->mapping_base(), region->mapping_bytes());
  reader_ = std::make_unique<RegionReader>(std::move(region), options_.reader);
  registry_ = std::make_shared<prometheus::Registry>();
  events_ = std::make_unique<EventMetrics>(*registry_);
  endpoint_ = std::make_unique<MetricsEndpoint>(*registry_);
  const shm::Layout& l = reader_->region().layout();
  LogInfo("region \"" + options_.region + "\" " +
          (reader_->region().created() ? "created" : "attached") + ": " +
          std::to_string(l.region_bytes) + " bytes, " + std::to_string(l.max_slots) + " slots, " +
          std::to_string(l.max_series) + " series, " + std::to_string(l.page_count) + " pages");
  std::lock_guard lock(mu_);
  if (guard_.faulted()) MarkLostLocked("fault", "was truncated while being attached");
}

Gateway::~Gateway() { Stop(); }

void Gateway::Start() {
  std::map<std::string, HttpHandler> routes;
  routes["/healthz"] = [this](const HttpRequestInfo& r) { return HandleHealth(r); };
  routes["/-/healthy"] = [this](const HttpRequestInfo& r) { return HandleHealth(r); };
  routes["/-/ready"] = [this](const HttpRequestInfo& r) { return HandleReady(r); };
  routes["/"] = [this](const HttpRequestInfo& r) { return HandleLandingPage(r); };
  // Last: a telemetry path of "/" (or another of the above) takes that route over.
  routes[options_.telemetry_path] = [this](const HttpRequestInfo& r) { return HandleMetrics(r); };
  server_ = std::make_unique<HttpServer>(options_.http, std::move(routes));
  server_->Start();
  reaper_ = std::thread([this] { ReaperLoop(); });
  std::string urls;
  for (std::size_t i = 0; i < options_.http.listen.size(); ++i) {
    std::string host = options_.http.listen[i].host;
    if (host.empty()) host = "0.0.0.0";  // every interface
    if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
    urls += (i ? ", " : "") + std::string(server_->tls() ? "https://" : "http://") + host + ":" +
            std::to_string(server_->port(i)) + options_.telemetry_path;
  }
  LogInfo("serving " + urls);
}

void Gateway::Stop() {
  {
    std::lock_guard lock(stop_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (server_) server_->Stop();
  if (reaper_.joinable()) reaper_.join();
}

uint16_t Gateway::port() const { return server_ ? server_->port() : 0; }

void Gateway::ReaperLoop() {
  // The first reap comes one interval after the start, as every other: /-/ready waits for it.
  std::unique_lock lock(stop_mu_);
  while (!stop_cv_.wait_for(lock, options_.reap_interval, [this] { return stopping_; })) {
    lock.unlock();
    try {
      ReapNow();
      ready_.store(true, std::memory_order_release);
    } catch (const std::exception& e) {
      LogError(std::string("reaper: ") + e.what());
    }
    lock.lock();
  }
}

void Gateway::ReapNow() {
  std::lock_guard g(mu_);
  CheckRegionLocked();
  if (lost_) return;
  reader_->Reap();
  if (guard_.faulted()) MarkLostLocked("fault", "was truncated under the mapping (SIGBUS)");
}

void Gateway::CheckIntactLocked() {
  if (lost_) return;
  std::string what;
  const shm::Region::Integrity integrity = reader_->region().CheckIntegrity(&what);
  if (integrity == shm::Region::Integrity::kResized) {
    MarkLostLocked("truncated", what);
  } else if (integrity == shm::Region::Integrity::kOverwritten) {
    MarkLostLocked("overwritten", what);
  } else if (guard_.faulted()) {
    MarkLostLocked("fault", "was truncated under the mapping (SIGBUS)");
  }
}

void Gateway::CheckRegionLocked() {
  CheckIntactLocked();
  const ino_t now = shm::Region::CurrentInode(options_.region);
  if (now == reader_->region().inode()) {
    // Intact, or lost in place: only a region created anew under the name replaces a lost one.
    SetAttachedLocked(!lost_);
    return;
  }
  SetAttachedLocked(false);
  if (now == 0) {
    WarnOnceLocked("region \"" + options_.region + "\" was removed; " +
                   (lost_ ? "serving the last snapshot"
                          : "still serving the mapping we hold (workers attached to it keep "
                            "writing into it)") +
                   " until a region of that name is created");
    return;
  }
  TryReattachLocked();
}

void Gateway::TryReattachLocked() {
  shm::RegionOptions attach = options_.region_options;
  attach.creator_wait = std::chrono::milliseconds(0);  // not ready yet: the next reap retries
  std::unique_ptr<shm::Region> region;
  try {
    region = shm::Region::Open(options_.region, attach);
  } catch (const shm::RegionError& e) {
    FailedAttachLocked(shm::ReasonName(e.reason()), e.what());
    return;
  }
  // Guarded before the reader's first access; destroyed before the reader if that fails.
  std::unique_ptr<RegionReader> reader;
  GuardedMapping guard(region->mapping_base(), region->mapping_bytes());
  try {
    reader = std::make_unique<RegionReader>(std::move(region), options_.reader);
  } catch (const shm::RegionError& e) {
    FailedAttachLocked("locked", e.what());
    return;
  } catch (const std::exception& e) {
    FailedAttachLocked("other", e.what());
    return;
  }
  if (guard.faulted()) {
    FailedAttachLocked("fault",
                       "region \"" + options_.region + "\" was truncated while being attached");
    return;
  }
  guard_ = std::move(guard);  // the old mapping is unguarded from here, and never touched again
  reader_ = std::move(reader);
  lost_ = false;
  frozen_families_.clear();
  warned_.clear();
  snapshot_ = Snapshot{};
  snapshot_series_ = 0;
  label_text_.Reset();  // the new region's series indices start again
  SetAttachedLocked(true);
  const shm::Layout& l = reader_->region().layout();
  LogInfo("region \"" + options_.region + "\" was re-created; attached the new one: " +
          std::to_string(l.region_bytes) + " bytes, " + std::to_string(l.max_slots) + " slots, " +
          std::to_string(l.max_series) + " series");
  CollectLocked();  // a snapshot of the new region to fall back on
}

void Gateway::CollectLocked() {
  CheckIntactLocked();
  if (lost_) return;
  reader_->Collect(scratch_);
  if (guard_.faulted()) {
    MarkLostLocked("fault", "was truncated under the mapping (SIGBUS)");  // scratch_ is dropped
    return;
  }
  std::swap(snapshot_, scratch_);
  snapshot_series_ = reader_->series().size();
}

void Gateway::MarkLostLocked(const std::string& reason, const std::string& what) {
  if (lost_) return;
  lost_ = true;
  // The registry cache may have grown since snapshot_ (reaps refresh it): render only the
  // series the snapshot holds values for.
  frozen_families_ = reader_->families();
  for (FamilyInfo& f : frozen_families_) {
    std::erase_if(f.series, [this](uint32_t si) { return si >= snapshot_series_; });
  }
  events_->lost.Add({{"reason", reason}}).Increment();
  SetAttachedLocked(false);
  WarnOnceLocked("region \"" + options_.region + "\" " + what +
                 "; no longer reading it, serving the last snapshot until a valid region of that "
                 "name can be attached (re-create it: shmetrics-gateway --region " +
                 options_.region + " --reset, then restart its workers)");
}

void Gateway::FailedAttachLocked(const std::string& reason, const std::string& what) {
  events_->attach_failures.Add({{"reason", reason}}).Increment();
  WarnOnceLocked(what + (what.ends_with('.') ? " " : ". ") + "Not attached (" + reason +
                 "); still serving " + (lost_ ? "the last snapshot" : "the region we hold") +
                 ", retrying every reap.");
}

void Gateway::WarnOnceLocked(const std::string& message) {
  if (warned_.size() >= kMaxWarnings || !warned_.insert(message).second) return;
  LogWarn(message + (warned_.size() == kMaxWarnings
                         ? " (further region warnings suppressed until it is attached again)"
                         : ""));
}

void Gateway::SetAttachedLocked(bool attached) { events_->attached.Set(attached ? 1 : 0); }

std::string Gateway::RenderMetrics() { return Render(Format::kText); }

std::string Gateway::Render(Format format) {
  const auto start = std::chrono::steady_clock::now();
  std::string body;
  std::lock_guard lock(mu_);
  CollectLocked();
  // Lost: the families as frozen with the last snapshot. Either way only gateway memory is read.
  const RegistryView registry =
      lost_ ? RegistryView(frozen_families_, reader_->series(), reader_->family_order())
            : RegistryView(*reader_);
  body.reserve(registry.series.size() * 64 + 4096);
  const std::unique_ptr<Renderer> renderer = MakeRenderer(format, body);
  RenderRegion(registry, snapshot_, label_text_, *renderer);
  events_->scrape_duration.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  SelfFamilies self;
  AppendSelfStats(
      {snapshot_, reader_->families(), reader_->series().size(), reader_->region().layout(),
       reader_->stats(), server_ ? server_->stats() : HttpServerStats{}},
      self);
  for (prometheus::MetricFamily& f : registry_->Collect()) self.push_back(std::move(f));
  RenderSelfFamilies(self, *renderer);
  renderer->Finish();
  return body;
}

HttpResponse Gateway::HandleMetrics(const HttpRequestInfo& request) {
  // Scrapes beyond the limit are refused before any work, so a burst cannot queue renders that
  // each hold the reader's lock in turn.
  const uint32_t now = scrapes_in_flight_.fetch_add(1, std::memory_order_relaxed) + 1;
  struct Done {
    std::atomic<uint32_t>& in_flight;
    ~Done() { in_flight.fetch_sub(1, std::memory_order_relaxed); }
  } done{scrapes_in_flight_};
  if (options_.max_requests != 0 && now > options_.max_requests) {
    events_->refused.Increment();
    HttpResponse r;
    r.status = 503;
    r.body = "too many scrapes at once: " + std::to_string(options_.max_requests) +
             " are being rendered (--web.max-requests)\n";
    return r;
  }
  if (options_.before_render) options_.before_render();
  HttpResponse r = endpoint_->Handle(request, [this](Format format) { return Render(format); });
  // Which region this body is of: a worker that renders its region through the gateway (the Node
  // package's register.metrics()) checks it, so a gateway of another app cannot answer for it.
  // Region names are [A-Za-z0-9._-], safe as a header value.
  r.headers.emplace_back("Shmetrics-Region", options_.region);
  return r;
}

HttpResponse Gateway::HandleHealth(const HttpRequestInfo& request) {
  HttpResponse r;
  // Prometheus' own answer on /-/healthy; /healthz keeps its earlier body.
  r.body = request.path == "/healthz" ? "ok\n" : "shmetrics-gateway is Healthy.\n";
  return r;
}

HttpResponse Gateway::HandleReady(const HttpRequestInfo&) {
  HttpResponse r;
  if (ready_.load(std::memory_order_acquire)) {
    r.body = "shmetrics-gateway is Ready.\n";
  } else {
    r.status = 503;
    r.body = "shmetrics-gateway is not ready: the first reap of the region has not finished.\n";
  }
  return r;
}

HttpResponse Gateway::HandleLandingPage(const HttpRequestInfo&) {
  // Region and path are [A-Za-z0-9._-] and a validated path: nothing here needs HTML escaping.
  HttpResponse r;
  r.content_type = "text/html; charset=utf-8";
  r.body =
      "<!DOCTYPE html>\n<html>\n<head><title>shmetrics-gateway</title></head>\n<body>\n"
      "<h1>shmetrics-gateway</h1>\n<p>Version " +
      std::string(GatewayVersion()) + ", serving region <code>" + options_.region +
      "</code>.</p>\n<ul>\n<li><a href=\"" + options_.telemetry_path +
      "\">Metrics</a></li>\n<li><a href=\"/-/healthy\">Health</a></li>\n"
      "<li><a href=\"/-/ready\">Readiness</a></li>\n</ul>\n</body>\n</html>\n";
  return r;
}

}  // namespace shmetrics::gateway
