// Exposition: one walk over what /metrics serves, handed to one renderer per format.
//
// Two sources feed the same renderer calls: the region (a RegistryView and a merged Snapshot,
// walked family by family in family_order, series by series) and the gateway's own metrics as
// prometheus-cpp families (converted once into the same calls). Each format is written exactly
// once, in its renderer (text_renderer.cc, openmetrics_renderer.cc, protobuf_renderer.cc); what
// differs between formats (naming, _created, # EOF, which values a format may not carry,
// native buckets and exemplars) lives there and nowhere else.
//
// A family's `name` is its base name: a counter's without `_total` (renderers add it where their
// format wants it). Every family is rendered once with its metadata, every series once.
//
// Thread-safety: renderers and walks are single-threaded over borrowed data; distinct renderers
// may run on different threads.
#pragma once

#include <prometheus/metric_family.h>

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "negotiation.h"
#include "registry_view.h"

namespace shmetrics::gateway {

// The gateway's own metrics as prometheus-cpp hands them out. Counter names end in `_total`.
using SelfFamilies = std::vector<prometheus::MetricFamily>;

struct FamilyDesc {
  std::string_view name;  // base name: a counter's without `_total`
  std::string_view help;
  std::string_view unit;  // may not match the name: renderers check (UnitMatchesName)
  shm::MetricType type = shm::MetricType::kGauge;
};

struct SeriesDesc {
  std::span<const std::string> label_names;
  std::span<const std::string> label_values;  // raw, paired with label_names
  std::string_view escaped_labels;            // the same as `a="x",b="y"` (AppendEscapedLabels)
  uint64_t created_unix_ns = 0;               // 0: unknown
};

struct HistogramDesc {
  std::span<const double> bounds;  // finite upper bounds, ascending
  std::span<const double> counts;  // per bucket, not cumulative: bounds.size() + 1, +Inf last
  double sum = 0;
  // Native part (families declared native): buckets merged over writers, nullptr when none yet.
  bool native = false;
  int32_t native_schema = 0;
  double native_zero_threshold = 0;
  const shm::native::Sparse* native_buckets = nullptr;
  // Per classic bucket, +Inf last; may be shorter (or null): no exemplar there.
  const std::vector<ExemplarValue>* exemplars = nullptr;
};

struct SummaryDesc {
  double count = 0;
  double sum = 0;
  std::span<const std::pair<double, double>> quantiles;  // (quantile, value); the region has none
};

// Called as: per family BeginFamily, one call per sample group of the family's type (a gauge
// series may have one per worker, or none), EndFamily; then Finish once.
class Renderer {
 public:
  virtual ~Renderer() = default;
  virtual void BeginFamily(const FamilyDesc& family) = 0;
  virtual void Counter(const SeriesDesc& series, double value, const ExemplarValue* exemplar) = 0;
  // pid: the worker's label value in the per-worker gauge modes, else nullptr.
  virtual void Gauge(const SeriesDesc& series, const std::string* pid, double value) = 0;
  virtual void Histogram(const SeriesDesc& series, const HistogramDesc& histogram) = 0;
  virtual void Summary(const SeriesDesc& series, const SummaryDesc& summary) = 0;
  virtual void EndFamily() = 0;
  // After the last family (OpenMetrics: `# EOF`).
  virtual void Finish() = 0;
};

// A renderer appending to `out`, which must outlive it.
std::unique_ptr<Renderer> MakeRenderer(Format format, std::string& out);
std::unique_ptr<Renderer> MakeTextRenderer(std::string& out);         // text_renderer.cc
std::unique_ptr<Renderer> MakeOpenMetricsRenderer(std::string& out);  // openmetrics_renderer.cc
std::unique_ptr<Renderer> MakeProtobufRenderer(std::string& out);     // protobuf_renderer.cc

// Escaped label text per series index, built on first use. Series indices only grow while one
// region is attached, so entries stay valid; a newly attached region starts its indices anew:
// Reset() then. The texts sit one after another in one buffer, in the order they were first
// rendered (family order, so a scrape reads the buffer front to back), not in a string each.
class LabelTextCache {
 public:
  // `index` is the series' index in RegistryView::series; `family` is the family it belongs to.
  // Valid until the next Get or Reset.
  std::string_view Get(const FamilyInfo& family, const SeriesInfo& series, uint32_t index) {
    if (index < spans_.size() && spans_[index].begin != kNotBuilt) {
      return std::string_view(text_).substr(spans_[index].begin, spans_[index].size);
    }
    return Build(family, series, index);
  }
  void Reset() {
    text_.clear();
    spans_.clear();
  }

 private:
  static constexpr uint32_t kNotBuilt = ~0u;
  struct Span {
    uint32_t begin = kNotBuilt;
    uint32_t size = 0;
  };
  std::string_view Build(const FamilyInfo& family, const SeriesInfo& series, uint32_t index);
  std::string text_;
  std::vector<Span> spans_;  // by series index
};

// The region's families, in family_order (families without series are left out).
void RenderRegion(const RegistryView& registry, const Snapshot& snapshot, LabelTextCache& labels,
                  Renderer& renderer);
// prometheus-cpp families (families without metrics are left out).
void RenderSelfFamilies(const SelfFamilies& families, Renderer& renderer);

// The whole body: the region, then `self`, then the format's end. `labels` may be null (built for
// this call only).
void AppendExposition(Format format, const RegistryView& registry, const Snapshot& snapshot,
                      const SelfFamilies& self, std::string& out, LabelTextCache* labels = nullptr);
// The region alone, as a whole body.
void AppendExposition(Format format, const RegistryView& registry, const Snapshot& snapshot,
                      std::string& out);

}  // namespace shmetrics::gateway
