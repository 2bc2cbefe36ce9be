#include "exposition.h"

#include <cmath>

#include "exposition_primitives.h"

namespace shmetrics::gateway {

std::unique_ptr<Renderer> MakeRenderer(Format format, std::string& out) {
  switch (format) {
    case Format::kOpenMetrics:
      return MakeOpenMetricsRenderer(out);
    case Format::kProtobuf:
      return MakeProtobufRenderer(out);
    case Format::kText:
      break;
  }
  return MakeTextRenderer(out);
}

std::string_view LabelTextCache::Build(const FamilyInfo& family, const SeriesInfo& series,
                                       uint32_t index) {
  if (index >= spans_.size()) spans_.resize(index + 1);
  const size_t begin = text_.size();
  AppendEscapedLabels(text_, family.view.label_names, series.view.label_values);
  spans_[index] = {static_cast<uint32_t>(begin), static_cast<uint32_t>(text_.size() - begin)};
  return std::string_view(text_).substr(begin);
}

void RenderRegion(const RegistryView& registry, const Snapshot& snap, LabelTextCache& labels,
                  Renderer& r) {
  for (uint32_t fi : registry.family_order) {
    const FamilyInfo& f = registry.families[fi];
    if (f.series.empty()) continue;
    const shm::FamilyView& fv = f.view;
    r.BeginFamily({fv.name, fv.help, fv.unit, fv.type});
    for (uint32_t si : f.series) {
      const SeriesInfo& s = registry.series[si];
      const SeriesDesc desc{fv.label_names, s.view.label_values, labels.Get(f, s, si),
                            s.view.created_unix_ns};
      const uint32_t base = s.view.cell_base;
      const std::vector<ExemplarValue>* exemplars =
          si < snap.exemplars.size() && !snap.exemplars[si].empty() ? &snap.exemplars[si] : nullptr;
      switch (fv.type) {
        case shm::MetricType::kCounter:
          r.Counter(desc, snap.cells[base], exemplars ? &(*exemplars)[0] : nullptr);
          break;
        case shm::MetricType::kGauge:
          snap.ForEachGaugeSample(si, fv.gauge_mode,
                                  [&](const std::string* pid, double v) { r.Gauge(desc, pid, v); });
          break;
        case shm::MetricType::kHistogram: {
          HistogramDesc h;
          h.bounds = fv.bounds;
          h.counts = std::span<const double>(snap.cells).subspan(base, fv.bounds.size() + 1);
          h.sum = snap.cells[base + fv.bounds.size() + 1];
          h.native = fv.native;
          h.native_schema = fv.native_schema;
          h.native_zero_threshold = fv.native_zero_threshold;
          if (fv.native && si < snap.native.size() && snap.native[si]) {
            h.native_buckets = &*snap.native[si];
          }
          h.exemplars = exemplars;
          r.Histogram(desc, h);
          break;
        }
        case shm::MetricType::kSummary:
          r.Summary(desc, {snap.cells[base], snap.cells[base + 1], {}});
          break;
      }
    }
    r.EndFamily();
  }
}

namespace {

// prometheus-cpp families carry no unit and no registration time.
shm::MetricType TypeOf(prometheus::MetricType type) {
  switch (type) {
    case prometheus::MetricType::Counter:
      return shm::MetricType::kCounter;
    case prometheus::MetricType::Histogram:
      return shm::MetricType::kHistogram;
    case prometheus::MetricType::Summary:
      return shm::MetricType::kSummary;
    default:
      return shm::MetricType::kGauge;  // Gauge; the gateway registers no untyped or info family
  }
}

double ValueOf(const prometheus::ClientMetric& m, prometheus::MetricType type) {
  switch (type) {
    case prometheus::MetricType::Counter:
      return m.counter.value;
    case prometheus::MetricType::Gauge:
      return m.gauge.value;
    default:
      return m.untyped.value;
  }
}

}  // namespace

void RenderSelfFamilies(const SelfFamilies& families, Renderer& r) {
  std::vector<std::string> names, values;
  std::string escaped;
  std::vector<double> bounds, counts;
  std::vector<std::pair<double, double>> quantiles;
  for (const prometheus::MetricFamily& f : families) {
    if (f.metric.empty()) continue;
    const shm::MetricType type = TypeOf(f.type);
    std::string_view name = f.name;
    if (type == shm::MetricType::kCounter && name.ends_with("_total")) {
      name.remove_suffix(6);
    }
    r.BeginFamily({name, f.help, {}, type});
    for (const prometheus::ClientMetric& m : f.metric) {
      names.clear();
      values.clear();
      for (const auto& l : m.label) {
        names.push_back(l.name);
        values.push_back(l.value);
      }
      escaped.clear();
      AppendEscapedLabels(escaped, names, values);
      const SeriesDesc desc{names, values, escaped, 0};
      switch (type) {
        case shm::MetricType::kCounter:
          r.Counter(desc, ValueOf(m, f.type), nullptr);
          break;
        case shm::MetricType::kGauge:
          r.Gauge(desc, nullptr, ValueOf(m, f.type));
          break;
        case shm::MetricType::kHistogram: {
          // prometheus-cpp gives cumulative counts, +Inf usually included: back to per-bucket.
          bounds.clear();
          counts.clear();
          double previous = 0;
          for (const auto& b : m.histogram.bucket) {
            if (std::isinf(b.upper_bound) && b.upper_bound > 0) break;
            bounds.push_back(b.upper_bound);
            counts.push_back(static_cast<double>(b.cumulative_count) - previous);
            previous = static_cast<double>(b.cumulative_count);
          }
          counts.push_back(static_cast<double>(m.histogram.sample_count) - previous);
          HistogramDesc h;
          h.bounds = bounds;
          h.counts = counts;
          h.sum = m.histogram.sample_sum;
          r.Histogram(desc, h);
          break;
        }
        case shm::MetricType::kSummary:
          quantiles.clear();
          for (const auto& q : m.summary.quantile) quantiles.emplace_back(q.quantile, q.value);
          r.Summary(desc,
                    {static_cast<double>(m.summary.sample_count), m.summary.sample_sum, quantiles});
          break;
      }
    }
    r.EndFamily();
  }
}

void AppendExposition(Format format, const RegistryView& registry, const Snapshot& snapshot,
                      const SelfFamilies& self, std::string& out, LabelTextCache* labels) {
  LabelTextCache local;
  const std::unique_ptr<Renderer> r = MakeRenderer(format, out);
  RenderRegion(registry, snapshot, labels != nullptr ? *labels : local, *r);
  RenderSelfFamilies(self, *r);
  r->Finish();
}

void AppendExposition(Format format, const RegistryView& registry, const Snapshot& snapshot,
                      std::string& out) {
  AppendExposition(format, registry, snapshot, {}, out);
}

}  // namespace shmetrics::gateway
