#include "self_metrics.h"

#include <limits>
#include <string>
#include <utility>

namespace shmetrics::gateway {
namespace {

using Labels = std::vector<prometheus::ClientMetric::Label>;

class FamilyBuilder {
 public:
  FamilyBuilder(std::vector<prometheus::MetricFamily>& out, const char* name, const char* help,
                prometheus::MetricType type)
      : family_(out.emplace_back()) {
    family_.name = name;
    family_.help = help;
    family_.type = type;
  }

  FamilyBuilder& Add(Labels labels, double value) {
    prometheus::ClientMetric& m = family_.metric.emplace_back();
    m.label = std::move(labels);
    if (family_.type == prometheus::MetricType::Counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    return *this;
  }
  template <typename T>
  FamilyBuilder& Add(Labels labels, T count) {
    return Add(std::move(labels), static_cast<double>(count));
  }

 private:
  prometheus::MetricFamily& family_;
};

constexpr auto kCounter = prometheus::MetricType::Counter;
constexpr auto kGauge = prometheus::MetricType::Gauge;

}  // namespace

void AppendSelfStats(const SelfStats& in, std::vector<prometheus::MetricFamily>& out) {
  const Snapshot& snap = in.snapshot;
  const shm::Layout& l = in.layout;
  FamilyBuilder(out, "shmetrics_workers", "Worker processes with a live slot in the region.",
                kGauge)
      .Add({{"state", "live"}}, snap.live_workers);
  FamilyBuilder(out, "shmetrics_workers_dead_total",
                "Worker processes found dead and folded into the accumulator.", kCounter)
      .Add({}, snap.folded_workers);
  FamilyBuilder(out, "shmetrics_writers", "Writer slots (one per writing thread) in use.", kGauge)
      .Add({{"state", "live"}}, snap.live_writers);
  FamilyBuilder(out, "shmetrics_writers_folded_total",
                "Writer slots (threads or processes) folded into the accumulator.", kCounter)
      .Add({}, snap.folded_writers);
  FamilyBuilder(out, "shmetrics_slots", "Writer slots in the region.", kGauge)
      .Add({{"state", "used"}}, snap.live_writers)
      .Add({{"state", "total"}}, l.max_slots);
  FamilyBuilder(out, "shmetrics_series", "Series registered in the region.", kGauge)
      .Add({}, in.series);
  FamilyBuilder(out, "shmetrics_families", "Metric families registered in the region.", kGauge)
      .Add({}, in.families.size());
  FamilyBuilder(out, "shmetrics_region_bytes",
                "Size of the shared-memory region: total, and used (fixed sections plus pages "
                "handed out).",
                kGauge)
      .Add({{"kind", "used"}}, l.pages_offset + snap.pages_used * shm::kPageBytes)
      .Add({{"kind", "total"}}, l.region_bytes);
  FamilyBuilder(out, "shmetrics_region_bytes_per_series_writer",
                "Page bytes held by live writers divided by the cells they have written: the "
                "region's cost per (series, writer that touched it) for counters (histograms use "
                "buckets + 2 cells per series). NaN before any write.",
                kGauge)
      .Add({}, snap.writer_cells_touched == 0
                   ? std::numeric_limits<double>::quiet_NaN()
                   : static_cast<double>(snap.writer_pages * shm::kPageBytes) /
                         static_cast<double>(snap.writer_cells_touched));

  // Drops counted per family in the region: summed here, and per family once non-zero.
  double series_limit = 0, invalid_value = 0;
  std::vector<prometheus::MetricFamily> per_family;
  FamilyBuilder family_dropped(
      per_family, "shmetrics_family_dropped_updates_total",
      "Updates dropped per family and reason (series_limit, invalid_value).", kCounter);
  for (const FamilyInfo& f : in.families) {
    const uint32_t cell = f.view.drop_cell;
    if (cell + shm::kFamilyDropCells > snap.cells.size()) continue;
    const double cap = snap.cells[cell + shm::kDropSeriesLimit];
    const double invalid = snap.cells[cell + shm::kDropInvalidValue];
    series_limit += cap;
    invalid_value += invalid;
    if (cap > 0) family_dropped.Add({{"family", f.view.name}, {"reason", "series_limit"}}, cap);
    if (invalid > 0) {
      family_dropped.Add({{"family", f.view.name}, {"reason", "invalid_value"}}, invalid);
    }
  }
  FamilyBuilder(out, "shmetrics_dropped_updates_total",
                "Updates that could not be stored, by reason: series_limit (a family's cap), "
                "invalid_value (a negative or NaN counter increment), region_full (no room for "
                "the family or series), no_slot (no free writer slot), no_page (page pool "
                "exhausted), exemplar (an exemplar over 128 bytes or on a family without "
                "exemplars; its value was stored).",
                kCounter)
      .Add({{"reason", "series_limit"}}, series_limit)
      .Add({{"reason", "invalid_value"}}, invalid_value)
      .Add({{"reason", "exemplar"}}, snap.dropped_exemplars)
      .Add({{"reason", "region_full"}}, snap.dropped_region_full)
      .Add({{"reason", "no_slot"}}, snap.dropped_no_slot)
      .Add({{"reason", "no_page"}}, snap.dropped_no_page);
  if (!per_family.front().metric.empty()) out.push_back(std::move(per_family.front()));

  FamilyBuilder(out, "shmetrics_registration_errors_total",
                "Families or series refused for lack of room in the region.", kCounter)
      .Add({}, snap.registration_errors);
  FamilyBuilder(
      out, "shmetrics_region_invalid_records_total",
      "Region records the gateway skipped as invalid (corrupt or hostile data): registry records, "
      "slot headers and directories, native histogram or exemplar blocks, blocks still torn "
      "after the scrape's retry budget.",
      kCounter)
      .Add({{"kind", "registry"}}, in.reader.corrupt_records)
      .Add({{"kind", "slot"}}, in.reader.corrupt_slots)
      .Add({{"kind", "block"}}, in.reader.corrupt_blocks)
      .Add({{"kind", "torn_block"}}, in.reader.torn_reads);
  FamilyBuilder(out, "shmetrics_slot_probe_errors_total",
                "Liveness probes of a writer slot's lock that failed with an error; the slot is "
                "then kept as live (never folded on an error), and the error logged.",
                kCounter)
      .Add({}, in.reader.probe_errors);
  FamilyBuilder(out, "shmetrics_fold_rounds_total",
                "Rounds that folded dead writers into the accumulator.", kCounter)
      .Add({{"result", "ok"}}, in.reader.fold_rounds)
      .Add({{"result", "no_room"}}, in.reader.fold_failures);
  const HttpServerStats& h = in.http;
  FamilyBuilder(out, "shmetrics_http_errors_total",
                "HTTP requests the gateway refused or could not serve, by reason.", kCounter)
      .Add({{"reason", "bad_request"}}, h.bad_requests)
      .Add({{"reason", "not_found"}}, h.not_found)
      .Add({{"reason", "method_not_allowed"}}, h.method_not_allowed)
      .Add({{"reason", "timeout"}}, h.timeouts)
      .Add({{"reason", "too_many_connections"}}, h.rejected_connections)
      .Add({{"reason", "handler_error"}}, h.handler_errors)
      .Add({{"reason", "idle_evicted"}}, h.evictions)
      .Add({{"reason", "unauthorized"}}, h.auth_failures)
      .Add({{"reason", "auth_throttled"}}, h.auth_throttled)
      .Add({{"reason", "rate_limited"}}, h.rate_limited)
      .Add({{"reason", "tls_handshake"}}, h.tls_handshake_errors)
      .Add({{"reason", "web_config_invalid"}}, h.web_config_errors);
}

}  // namespace shmetrics::gateway
