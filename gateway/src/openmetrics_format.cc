#include "openmetrics_format.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "text_format.h"

namespace shmetrics::gateway {
namespace om {

void AppendGoFloat(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[40];
  // Integers below 1e6 (most counters and counts) print as themselves: no exponent in Go's %g.
  if (v == std::trunc(v) && std::fabs(v) < 1e6) {
    if (v == 0 && std::signbit(v)) {
      out += "-0";
      return;
    }
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(v));
    out.append(buf, r.ptr);
    return;
  }
  // Shortest round-trip digits in scientific form tell the decimal exponent; Go's %g with the
  // shortest precision uses the exponent form when it is < -4 or >= 6 (strconv's eprec = 6).
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const char* e = std::find(buf, r.ptr, 'e');
  const char* digits = e + 1 < r.ptr && e[1] == '+' ? e + 2 : e + 1;  // "e+06" / "e-05"
  int exponent = 0;
  std::from_chars(digits, r.ptr, exponent);
  if (exponent < -4 || exponent >= 6) {
    out.append(buf, r.ptr);  // "1.5e+06": the same spelling as Go (sign, at least two digits)
    return;
  }
  r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);  // shortest, fixed
  out.append(buf, r.ptr);
}

void AppendNumber(std::string& out, double v) {
  const size_t start = out.size();
  AppendGoFloat(out, v);
  if (!std::isfinite(v)) return;
  if (out.find_first_of(".e", start) == std::string::npos) out += ".0";
}

bool UnitMatchesName(std::string_view name, std::string_view unit) {
  return !unit.empty() && name.size() > unit.size() + 1 && name.ends_with(unit) &&
         name[name.size() - unit.size() - 1] == '_';
}

}  // namespace om

namespace {

// Counts as OpenMetrics wants them: finite, non-negative integers.
bool ValidCount(double v) { return v >= 0 && std::isfinite(v) && v == std::trunc(v); }

void AppendMetadata(std::string& out, std::string_view name, const char* type,
                    std::string_view unit, std::string_view help) {
  out += "# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
  if (om::UnitMatchesName(name, unit)) {
    out += "# UNIT ";
    out += name;
    out += ' ';
    out += unit;
    out += '\n';
  }
  if (!help.empty()) {
    out += "# HELP ";
    out += name;
    out += ' ';
    text::AppendLabelValue(out, help);  // OpenMetrics escapes `"` in HELP too
    out += '\n';
  }
}

// name suffix{labels[,extra_name="extra_value"]} value
void AppendSample(std::string& out, std::string_view name, const char* suffix,
                  std::string_view labels, const char* extra_name, std::string_view extra_value,
                  double value, const ExemplarValue* exemplar = nullptr) {
  text::AppendSeriesName(out, name, suffix, labels, extra_name, extra_value);
  out += ' ';
  om::AppendNumber(out, value);
  if (exemplar != nullptr && exemplar->present) {  // " # {labels} value timestamp"
    out += " # {";
    for (size_t i = 0; i < exemplar->labels.size(); ++i) {
      if (i) out += ',';
      out += exemplar->labels[i].first;
      out += "=\"";
      text::AppendLabelValue(out, exemplar->labels[i].second);
      out += '"';
    }
    out += "} ";
    om::AppendNumber(out, exemplar->value);
    out += ' ';
    om::AppendNumber(out, static_cast<double>(exemplar->unix_ns) / 1e9);
  }
  out += '\n';
}

void AppendCreated(std::string& out, std::string_view name, std::string_view labels,
                   uint64_t unix_ns) {
  if (unix_ns == 0) return;  // unknown
  AppendSample(out, name, "_created", labels, nullptr, {}, static_cast<double>(unix_ns) / 1e9);
}

// One classic histogram series from per-bucket (non-cumulative) counts, +Inf last.
template <typename BucketCount>
void AppendHistogram(std::string& out, std::string_view name, std::string_view labels,
                     const std::vector<double>& bounds, BucketCount count_of, double sum,
                     uint64_t created_ns, const std::vector<ExemplarValue>* exemplars = nullptr) {
  const size_t n = bounds.size() + 1;
  for (size_t b = 0; b < n; ++b) {
    if (!ValidCount(count_of(b))) return;  // corrupt counts: leave the series out
  }
  std::string bound;
  double cumulative = 0;
  for (size_t b = 0; b < n; ++b) {
    cumulative += count_of(b);
    bound.clear();
    om::AppendNumber(bound,
                     b < bounds.size() ? bounds[b] : std::numeric_limits<double>::infinity());
    const ExemplarValue* ex =
        exemplars != nullptr && b < exemplars->size() ? &(*exemplars)[b] : nullptr;
    AppendSample(out, name, "_bucket", labels, "le", bound, cumulative, ex);
  }
  const bool negative_bounds = !bounds.empty() && bounds.front() < 0;
  if (!negative_bounds && sum >= 0) {  // false for NaN too
    AppendSample(out, name, "_count", labels, nullptr, {}, cumulative);
    AppendSample(out, name, "_sum", labels, nullptr, {}, sum);
  }
  AppendCreated(out, name, labels, created_ns);
}

}  // namespace

void AppendOpenMetrics(const RegistryView& registry, const Snapshot& snap, std::string& out) {
  const auto& families = registry.families;
  const auto& series = registry.series;
  std::string pid_value;
  for (uint32_t fi : registry.family_order) {
    const FamilyInfo& f = families[fi];
    if (f.series.empty()) continue;
    const shm::FamilyView& fv = f.view;
    const std::string& name = fv.name;  // a counter's base name: samples add _total / _created
    AppendMetadata(out, name, text::TypeName(fv.type), fv.unit, fv.help);
    for (uint32_t si : f.series) {
      const SeriesInfo& s = series[si];
      const std::string text_labels = text::LabelPairs(fv.label_names, s.view.label_values);
      const uint32_t base = s.view.cell_base;
      switch (fv.type) {
        case shm::MetricType::kCounter: {
          const double v = snap.cells[base];
          if (!(v >= 0)) break;  // negative or NaN: only a corrupt region; OpenMetrics forbids it
          const bool has_exemplar = si < snap.exemplars.size() && !snap.exemplars[si].empty();
          AppendSample(out, name, "_total", text_labels, nullptr, {}, v,
                       has_exemplar ? &snap.exemplars[si][0] : nullptr);
          AppendCreated(out, name, text_labels, s.view.created_unix_ns);
          break;
        }
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
        case shm::MetricType::kHistogram:
          AppendHistogram(
              out, name, text_labels, fv.bounds, [&](size_t b) { return snap.cells[base + b]; },
              snap.cells[base + fv.bounds.size() + 1], s.view.created_unix_ns,
              si < snap.exemplars.size() ? &snap.exemplars[si] : nullptr);
          break;
        case shm::MetricType::kSummary:
          if (ValidCount(snap.cells[base])) {
            AppendSample(out, name, "_count", text_labels, nullptr, {}, snap.cells[base]);
            // A summary's _sum is counter-like in OpenMetrics: never NaN (a NaN observation) nor
            // negative (negative observations). Such a sum is left out, its count stays; text
            // and protobuf serve it.
            if (snap.cells[base + 1] >= 0)
              AppendSample(out, name, "_sum", text_labels, nullptr, {}, snap.cells[base + 1]);
            AppendCreated(out, name, text_labels, s.view.created_unix_ns);
          }
          break;
      }
    }
  }
}

void AppendOpenMetrics(const std::vector<prometheus::MetricFamily>& families, std::string& out) {
  std::string labels, base, quantile;
  std::vector<double> bounds;
  std::vector<double> counts;
  for (const prometheus::MetricFamily& f : families) {
    if (f.metric.empty()) continue;
    base = f.name;
    const char* type = "unknown";
    switch (f.type) {
      case prometheus::MetricType::Counter:
        type = "counter";
        if (base.ends_with("_total")) base.resize(base.size() - 6);
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
    AppendMetadata(out, base, type, {}, f.help);
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
          if (m.counter.value >= 0)
            AppendSample(out, base, "_total", labels, nullptr, {}, m.counter.value);
          break;
        case prometheus::MetricType::Gauge:
          AppendSample(out, base, "", labels, nullptr, {}, m.gauge.value);
          break;
        case prometheus::MetricType::Histogram: {
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
          AppendHistogram(
              out, base, labels, bounds, [&](size_t b) { return counts[b]; },
              m.histogram.sample_sum, 0);
          break;
        }
        case prometheus::MetricType::Summary:
          for (const auto& q : m.summary.quantile) {
            quantile.clear();
            om::AppendNumber(quantile, q.quantile);
            AppendSample(out, base, "", labels, "quantile", quantile, q.value);
          }
          AppendSample(out, base, "_count", labels, nullptr, {},
                       static_cast<double>(m.summary.sample_count));
          AppendSample(out, base, "_sum", labels, nullptr, {}, m.summary.sample_sum);
          break;
        default:
          AppendSample(out, base, "", labels, nullptr, {}, m.untyped.value);
          break;
      }
    }
  }
}

void AppendOpenMetricsEof(std::string& out) { out += "# EOF\n"; }

}  // namespace shmetrics::gateway
