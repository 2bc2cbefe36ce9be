#include "gateway.h"

#include <prometheus/histogram.h>

#include <algorithm>
#include <limits>

#include "exposition.h"
#include "log.h"
#include "openmetrics_format.h"
#include "protobuf_format.h"
#include "registry_view.h"

namespace shmetrics::gateway {
namespace {

// Mirrors a monotonic count read from the region into a prometheus-cpp Counter, which only
// increments. A region re-creation resets `last` (the count restarts; so does the counter's
// meaning, which Prometheus' rate() treats as a reset).
void Sync(prometheus::Counter& counter, double now, double& last) {
  if (now > last) counter.Increment(now - last);
  last = now;
}

// Label values of shmetrics_region_attach_failures_total: shm::ReasonName()s, and the gateway's.
constexpr const char* kAttachFailureReasons[] = {"not_found", "access",    "not_regular",
                                                 "untrusted", "not_ready", "invalid",
                                                 "locked",    "fault",     "other"};
constexpr const char* kLostReasons[] = {"truncated", "overwritten", "fault"};
// Distinct warnings kept (and logged) per attachment; past it they are suppressed.
constexpr size_t kMaxWarnings = 64;

}  // namespace

struct Gateway::SelfMetrics {
  explicit SelfMetrics(prometheus::Registry& r)
      : workers(prometheus::BuildGauge()
                    .Name("shmetrics_workers")
                    .Help("Worker processes with a live slot in the region.")
                    .Register(r)),
        workers_live(workers.Add({{"state", "live"}})),
        dead(prometheus::BuildCounter()
                 .Name("shmetrics_workers_dead_total")
                 .Help("Worker processes found dead and folded into the accumulator.")
                 .Register(r)),
        dead_workers(dead.Add({})),
        writers(prometheus::BuildGauge()
                    .Name("shmetrics_writers")
                    .Help("Writer slots (one per writing thread) in use.")
                    .Register(r)),
        writers_live(writers.Add({{"state", "live"}})),
        writers_folded_family(
            prometheus::BuildCounter()
                .Name("shmetrics_writers_folded_total")
                .Help("Writer slots (threads or processes) folded into the accumulator.")
                .Register(r)),
        writers_folded(writers_folded_family.Add({})),
        slots(prometheus::BuildGauge()
                  .Name("shmetrics_slots")
                  .Help("Writer slots in the region.")
                  .Register(r)),
        slots_used(slots.Add({{"state", "used"}})),
        slots_total(slots.Add({{"state", "total"}})),
        series(prometheus::BuildGauge()
                   .Name("shmetrics_series")
                   .Help("Series registered in the region.")
                   .Register(r)),
        series_count(series.Add({})),
        families(prometheus::BuildGauge()
                     .Name("shmetrics_families")
                     .Help("Metric families registered in the region.")
                     .Register(r)),
        families_count(families.Add({})),
        bytes(prometheus::BuildGauge()
                  .Name("shmetrics_region_bytes")
                  .Help("Size of the shared-memory region: total, and used (fixed sections plus "
                        "pages handed out).")
                  .Register(r)),
        bytes_used(bytes.Add({{"kind", "used"}})),
        bytes_total(bytes.Add({{"kind", "total"}})),
        footprint(
            prometheus::BuildGauge()
                .Name("shmetrics_region_bytes_per_series_writer")
                .Help("Page bytes held by live writers divided by the cells they have written: the "
                      "region's cost per (series, writer that touched it) for counters (histograms "
                      "use buckets + 2 cells per series). NaN before any write.")
                .Register(r)),
        bytes_per_series_writer(footprint.Add({})),
        dropped(prometheus::BuildCounter()
                    .Name("shmetrics_dropped_updates_total")
                    .Help("Updates that could not be stored, by reason: series_limit (a family's "
                          "cap), invalid_value (a negative or NaN counter increment), region_full "
                          "(no room for the family or series), no_slot (no free writer slot), "
                          "no_page (page pool exhausted), exemplar (an exemplar over 128 bytes or "
                          "on a family without exemplars; its value was stored).")
                    .Register(r)),
        dropped_series_limit(dropped.Add({{"reason", "series_limit"}})),
        dropped_invalid_value(dropped.Add({{"reason", "invalid_value"}})),
        dropped_exemplar(dropped.Add({{"reason", "exemplar"}})),
        dropped_region_full(dropped.Add({{"reason", "region_full"}})),
        dropped_no_slot(dropped.Add({{"reason", "no_slot"}})),
        dropped_no_page(dropped.Add({{"reason", "no_page"}})),
        family_dropped(
            prometheus::BuildCounter()
                .Name("shmetrics_family_dropped_updates_total")
                .Help("Updates dropped per family and reason (series_limit, invalid_value).")
                .Register(r)),
        registration(prometheus::BuildCounter()
                         .Name("shmetrics_registration_errors_total")
                         .Help("Families or series refused for lack of room in the region.")
                         .Register(r)),
        registration_errors(registration.Add({})),
        invalid(
            prometheus::BuildCounter()
                .Name("shmetrics_region_invalid_records_total")
                .Help("Region records the gateway skipped as invalid (corrupt or hostile data).")
                .Register(r)),
        invalid_records(invalid.Add({{"kind", "registry"}})),
        invalid_slots(invalid.Add({{"kind", "slot"}})),
        torn_reads(invalid.Add({{"kind", "torn_block"}})),
        folds(prometheus::BuildCounter()
                  .Name("shmetrics_fold_rounds_total")
                  .Help("Rounds that folded dead writers into the accumulator.")
                  .Register(r)),
        fold_rounds(folds.Add({{"result", "ok"}})),
        fold_failures(folds.Add({{"result", "no_room"}})),
        scrape(prometheus::BuildHistogram()
                   .Name("shmetrics_scrape_duration_seconds")
                   .Help("Time to reap, merge and encode one /metrics body.")
                   .Register(r)),
        scrape_duration(scrape.Add(
            {}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                        0.05, 0.1, 0.25, 0.5, 1, 2.5})),
        http(prometheus::BuildCounter()
                 .Name("shmetrics_http_errors_total")
                 .Help("HTTP requests the gateway refused or could not serve, by reason.")
                 .Register(r)),
        http_bad(http.Add({{"reason", "bad_request"}})),
        http_not_found(http.Add({{"reason", "not_found"}})),
        http_method(http.Add({{"reason", "method_not_allowed"}})),
        http_timeouts(http.Add({{"reason", "timeout"}})),
        http_rejected(http.Add({{"reason", "too_many_connections"}})),
        http_handler(http.Add({{"reason", "handler_error"}})),
        http_evicted(http.Add({{"reason", "idle_evicted"}})),
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
    for (const char* reason : kLostReasons) lost.Add({{"reason", reason}});
    for (const char* reason : kAttachFailureReasons) attach_failures.Add({{"reason", reason}});
  }

  prometheus::Family<prometheus::Gauge>& workers;
  prometheus::Gauge& workers_live;
  prometheus::Family<prometheus::Counter>& dead;
  prometheus::Counter& dead_workers;
  prometheus::Family<prometheus::Gauge>& writers;
  prometheus::Gauge& writers_live;
  prometheus::Family<prometheus::Counter>& writers_folded_family;
  prometheus::Counter& writers_folded;
  prometheus::Family<prometheus::Gauge>& slots;
  prometheus::Gauge& slots_used;
  prometheus::Gauge& slots_total;
  prometheus::Family<prometheus::Gauge>& series;
  prometheus::Gauge& series_count;
  prometheus::Family<prometheus::Gauge>& families;
  prometheus::Gauge& families_count;
  prometheus::Family<prometheus::Gauge>& bytes;
  prometheus::Gauge& bytes_used;
  prometheus::Gauge& bytes_total;
  prometheus::Family<prometheus::Gauge>& footprint;
  prometheus::Gauge& bytes_per_series_writer;
  prometheus::Family<prometheus::Counter>& dropped;
  prometheus::Counter& dropped_series_limit;
  prometheus::Counter& dropped_invalid_value;
  prometheus::Counter& dropped_exemplar;
  prometheus::Counter& dropped_region_full;
  prometheus::Counter& dropped_no_slot;
  prometheus::Counter& dropped_no_page;
  prometheus::Family<prometheus::Counter>& family_dropped;
  prometheus::Family<prometheus::Counter>& registration;
  prometheus::Counter& registration_errors;
  prometheus::Family<prometheus::Counter>& invalid;
  prometheus::Counter& invalid_records;
  prometheus::Counter& invalid_slots;
  prometheus::Counter& torn_reads;
  prometheus::Family<prometheus::Counter>& folds;
  prometheus::Counter& fold_rounds;
  prometheus::Counter& fold_failures;
  prometheus::Family<prometheus::Histogram>& scrape;
  prometheus::Histogram& scrape_duration;
  prometheus::Family<prometheus::Counter>& http;
  prometheus::Counter& http_bad;
  prometheus::Counter& http_not_found;
  prometheus::Counter& http_method;
  prometheus::Counter& http_timeouts;
  prometheus::Counter& http_rejected;
  prometheus::Counter& http_handler;
  prometheus::Counter& http_evicted;
  prometheus::Family<prometheus::Gauge>& attached_family;
  prometheus::Gauge& attached;
  prometheus::Family<prometheus::Counter>& lost;
  prometheus::Family<prometheus::Counter>& attach_failures;

  // Last values mirrored from the region / server (see Sync).
  double last_invalid_value = 0, last_exemplar = 0, last_torn = 0;
  double last_dead = 0, last_folded = 0, last_series_limit = 0, last_region_full = 0,
         last_no_slot = 0, last_no_page = 0, last_registration = 0, last_invalid_records = 0,
         last_invalid_slots = 0, last_folds = 0, last_fold_failures = 0;
  double last_http[7] = {};
  std::map<std::string, double> last_family_dropped;
};

Gateway::Gateway(GatewayOptions options) : options_(std::move(options)) {
  auto region = shm::Region::OpenOrCreate(options_.region, options_.region_options);
  guard_ = GuardedMapping(region->mapping_base(), region->mapping_bytes());
  reader_ = std::make_unique<RegionReader>(std::move(region), options_.reader);
  registry_ = std::make_shared<prometheus::Registry>();
  self_ = std::make_unique<SelfMetrics>(*registry_);
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
  routes["/metrics"] = [this](const HttpRequestInfo& r) { return HandleMetrics(r); };
  routes["/healthz"] = [this](const HttpRequestInfo& r) { return HandleHealth(r); };
  server_ = std::make_unique<HttpServer>(options_.http, std::move(routes));
  server_->Start();
  reaper_ = std::thread([this] { ReaperLoop(); });
  LogInfo("serving http://" + options_.http.host + ":" + std::to_string(server_->port()) +
          "/metrics");
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
  std::unique_lock lock(stop_mu_);
  while (!stop_cv_.wait_for(lock, options_.reap_interval, [this] { return stopping_; })) {
    lock.unlock();
    try {
      ReapNow();
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
  self_->lost.Add({{"reason", reason}}).Increment();
  SetAttachedLocked(false);
  WarnOnceLocked("region \"" + options_.region + "\" " + what +
                 "; no longer reading it, serving the last snapshot until a valid region of that "
                 "name can be attached (re-create it: shmetrics-gateway --region " +
                 options_.region + " --reset, then restart its workers)");
}

void Gateway::FailedAttachLocked(const std::string& reason, const std::string& what) {
  self_->attach_failures.Add({{"reason", reason}}).Increment();
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

void Gateway::SetAttachedLocked(bool attached) { self_->attached.Set(attached ? 1 : 0); }

void Gateway::UpdateSelfMetricsLocked(const Snapshot& snap) {
  SelfMetrics& m = *self_;
  const shm::Region& region = reader_->region();
  const shm::Layout& l = region.layout();
  m.workers_live.Set(static_cast<double>(snap.live_workers));
  m.writers_live.Set(static_cast<double>(snap.live_writers));
  m.slots_used.Set(static_cast<double>(snap.live_writers));
  m.slots_total.Set(l.max_slots);
  m.series_count.Set(static_cast<double>(reader_->series().size()));
  m.families_count.Set(static_cast<double>(reader_->families().size()));
  m.bytes_total.Set(static_cast<double>(l.region_bytes));
  m.bytes_used.Set(static_cast<double>(l.pages_offset + snap.pages_used * shm::kPageBytes));
  m.bytes_per_series_writer.Set(snap.writer_cells_touched == 0
                                    ? std::numeric_limits<double>::quiet_NaN()
                                    : static_cast<double>(snap.writer_pages * shm::kPageBytes) /
                                          static_cast<double>(snap.writer_cells_touched));
  Sync(m.dead_workers, static_cast<double>(snap.folded_workers), m.last_dead);
  Sync(m.writers_folded, static_cast<double>(snap.folded_writers), m.last_folded);
  double series_limit = 0, invalid_value = 0;
  for (const FamilyInfo& f : reader_->families()) {
    const uint32_t cell = f.view.drop_cell;
    if (cell + shm::kFamilyDropCells > snap.cells.size()) continue;
    const double cap = snap.cells[cell + shm::kDropSeriesLimit];
    const double invalid = snap.cells[cell + shm::kDropInvalidValue];
    series_limit += cap;
    invalid_value += invalid;
    if (cap > 0) {
      Sync(m.family_dropped.Add({{"family", f.view.name}, {"reason", "series_limit"}}), cap,
           m.last_family_dropped[f.view.name + "/series_limit"]);
    }
    if (invalid > 0) {
      Sync(m.family_dropped.Add({{"family", f.view.name}, {"reason", "invalid_value"}}), invalid,
           m.last_family_dropped[f.view.name + "/invalid_value"]);
    }
  }
  Sync(m.dropped_series_limit, series_limit, m.last_series_limit);
  Sync(m.dropped_invalid_value, invalid_value, m.last_invalid_value);
  Sync(m.dropped_exemplar, static_cast<double>(snap.dropped_exemplars), m.last_exemplar);
  Sync(m.dropped_region_full, static_cast<double>(snap.dropped_region_full), m.last_region_full);
  Sync(m.dropped_no_slot, static_cast<double>(snap.dropped_no_slot), m.last_no_slot);
  Sync(m.dropped_no_page, static_cast<double>(snap.dropped_no_page), m.last_no_page);
  Sync(m.registration_errors, static_cast<double>(snap.registration_errors), m.last_registration);
  const ReaderStats rs = reader_->stats();
  Sync(m.invalid_records, static_cast<double>(rs.corrupt_records), m.last_invalid_records);
  Sync(m.invalid_slots, static_cast<double>(rs.corrupt_slots), m.last_invalid_slots);
  Sync(m.torn_reads, static_cast<double>(rs.torn_reads), m.last_torn);
  Sync(m.fold_rounds, static_cast<double>(rs.fold_rounds), m.last_folds);
  Sync(m.fold_failures, static_cast<double>(rs.fold_failures), m.last_fold_failures);
  if (server_) {
    const HttpServerStats h = server_->stats();
    const double now[7] = {double(h.bad_requests),
                           double(h.not_found),
                           double(h.method_not_allowed),
                           double(h.timeouts),
                           double(h.rejected_connections),
                           double(h.handler_errors),
                           double(h.evictions)};
    prometheus::Counter* counters[7] = {&m.http_bad,      &m.http_not_found, &m.http_method,
                                        &m.http_timeouts, &m.http_rejected,  &m.http_handler,
                                        &m.http_evicted};
    for (int i = 0; i < 7; ++i) Sync(*counters[i], now[i], m.last_http[i]);
  }
}

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
  switch (format) {
    case Format::kText:
      AppendText(registry, snapshot_, body);
      break;
    case Format::kOpenMetrics:
      AppendOpenMetrics(registry, snapshot_, body);
      break;
    case Format::kProtobuf:
      AppendProtobuf(registry, snapshot_, body);
      break;
  }
  UpdateSelfMetricsLocked(snapshot_);
  self_->scrape_duration.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  const std::vector<prometheus::MetricFamily> self = registry_->Collect();
  switch (format) {
    case Format::kText:
      AppendText(self, body);
      break;
    case Format::kOpenMetrics:
      AppendOpenMetrics(self, body);
      AppendOpenMetricsEof(body);
      break;
    case Format::kProtobuf:
      AppendProtobuf(self, body);
      break;
  }
  return body;
}

HttpResponse Gateway::HandleMetrics(const HttpRequestInfo& request) {
  return endpoint_->Handle(request, [this](Format format) { return Render(format); });
}

HttpResponse Gateway::HandleHealth(const HttpRequestInfo&) {
  HttpResponse r;
  r.body = "ok\n";
  return r;
}

}  // namespace shmetrics::gateway
