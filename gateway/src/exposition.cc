#include "exposition.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "text_format.h"

namespace shmetrics::gateway {
namespace {

void AppendHeader(std::string& out, const std::string& name, const std::string& help,
                  const char* type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  text::AppendHelp(out, help);
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

// name{labels[,extra_name="extra_value"]} value
void AppendSample(std::string& out, const std::string& name, const char* suffix,
                  const std::string& labels, const char* extra_name, const std::string& extra_value,
                  double value) {
  text::AppendSeriesName(out, name, suffix, labels, extra_name, extra_value);
  out += ' ';
  text::AppendDouble(out, value);
  out += '\n';
}

}  // namespace

void AppendText(const RegistryView& registry, const Snapshot& snap, std::string& out) {
  const auto& families = registry.families;
  const auto& series = registry.series;
  std::string name, bound, pid_value;
  for (uint32_t fi : registry.family_order) {
    const FamilyInfo& f = families[fi];
    if (f.series.empty()) continue;
    const shm::FamilyView& fv = f.view;
    name = fv.name;
    if (fv.type == shm::MetricType::kCounter) name += "_total";
    AppendHeader(out, name, fv.help, text::TypeName(fv.type));
    for (uint32_t si : f.series) {
      const SeriesInfo& s = series[si];
      const std::string text_labels = text::LabelPairs(fv.label_names, s.view.label_values);
      const uint32_t base = s.view.cell_base;
      switch (fv.type) {
        case shm::MetricType::kCounter:
          AppendSample(out, name, "", text_labels, nullptr, {}, snap.cells[base]);
          break;
        case shm::MetricType::kGauge:
          snap.ForEachGaugeSample(si, fv.gauge_mode, [&](const std::string* pid, double v) {
            if (pid == nullptr) {
              AppendSample(out, name, "", text_labels, nullptr, {}, v);
            } else {
              pid_value.clear();
              text::AppendLabelValue(pid_value, *pid);
              AppendSample(out, name, "", text_labels, "pid", pid_value, v);
            }
          });
          break;
        case shm::MetricType::kHistogram: {
          // Cumulative, so never decreasing, and +Inf is the total, which is also _count.
          double cumulative = 0;
          for (size_t b = 0; b <= fv.bounds.size(); ++b) {
            cumulative += snap.cells[base + b];
            bound.clear();
            text::AppendBound(bound, b < fv.bounds.size()
                                         ? fv.bounds[b]
                                         : std::numeric_limits<double>::infinity());
            AppendSample(out, name, "_bucket", text_labels, "le", bound, cumulative);
          }
          AppendSample(out, name, "_sum", text_labels, nullptr, {},
                       snap.cells[base + fv.bounds.size() + 1]);
          AppendSample(out, name, "_count", text_labels, nullptr, {}, cumulative);
          break;
        }
        case shm::MetricType::kSummary:
          AppendSample(out, name, "_sum", text_labels, nullptr, {}, snap.cells[base + 1]);
          AppendSample(out, name, "_count", text_labels, nullptr, {}, snap.cells[base]);
          break;
      }
    }
  }
}

void AppendText(const std::vector<prometheus::MetricFamily>& families, std::string& out) {
  std::string labels, bound;
  for (const prometheus::MetricFamily& f : families) {
    if (f.metric.empty()) continue;
    const char* type = "untyped";
    switch (f.type) {
      case prometheus::MetricType::Counter:
        type = "counter";
        break;
      case prometheus::MetricType::Gauge:
        type = "gauge";
        break;
      case prometheus::MetricType::Histogram:
        type = "histogram";
        break;
      case prometheus::MetricType::Summary:
        type = "summary";
        break;
      default:
        break;
    }
    AppendHeader(out, f.name, f.help, type);
    for (const prometheus::ClientMetric& m : f.metric) {
      labels.clear();
      for (const auto& l : m.label) {
        if (!labels.empty()) labels += ',';
        labels += l.name;
        labels += "=\"";
        text::AppendLabelValue(labels, l.value);
        labels += '"';
      }
      switch (f.type) {
        case prometheus::MetricType::Counter:
          AppendSample(out, f.name, "", labels, nullptr, {}, m.counter.value);
          break;
        case prometheus::MetricType::Gauge:
          AppendSample(out, f.name, "", labels, nullptr, {}, m.gauge.value);
          break;
        case prometheus::MetricType::Histogram: {
          for (const auto& b : m.histogram.bucket) {
            bound.clear();
            text::AppendBound(bound, b.upper_bound);
            AppendSample(out, f.name, "_bucket", labels, "le", bound,
                         static_cast<double>(b.cumulative_count));
          }
          if (m.histogram.bucket.empty() || !std::isinf(m.histogram.bucket.back().upper_bound)) {
            AppendSample(out, f.name, "_bucket", labels, "le", "+Inf",
                         static_cast<double>(m.histogram.sample_count));
          }
          AppendSample(out, f.name, "_sum", labels, nullptr, {}, m.histogram.sample_sum);
          AppendSample(out, f.name, "_count", labels, nullptr, {},
                       static_cast<double>(m.histogram.sample_count));
          break;
        }
        case prometheus::MetricType::Summary:
          for (const auto& q : m.summary.quantile) {
            bound.clear();
            text::AppendBound(bound, q.quantile);
            AppendSample(out, f.name, "", labels, "quantile", bound, q.value);
          }
          AppendSample(out, f.name, "_sum", labels, nullptr, {}, m.summary.sample_sum);
          AppendSample(out, f.name, "_count", labels, nullptr, {},
                       static_cast<double>(m.summary.sample_count));
          break;
        default:
          AppendSample(out, f.name, "", labels, nullptr, {}, m.untyped.value);
          break;
      }
    }
  }
}

}  // namespace shmetrics::gateway
