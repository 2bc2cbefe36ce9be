// OpenMetrics 1.0 text (application/openmetrics-text; version=1.0.0).
//
// What differs from text 0.0.4, per the OpenMetrics spec and the strict parser in
// python3-prometheus-client (prometheus_client.openmetrics.parser), which the tests run:
//  - Metadata is TYPE, UNIT (only when the unit is a `_unit` suffix of the name, as the spec and
//    Prometheus' protobuf parser require), HELP (omitted when empty). HELP escapes `\`, newline
//    and `"`.
//  - A counter family is named without `_total` (`# TYPE foo counter`), its samples are
//    `foo_total` and `foo_created`.
//  - `_created` (seconds since the epoch) for counters and histograms: the series' registration
//    time in the region. The region's counters never reset while the region lives (dead workers
//    are folded in), so that is the start of the count. Prometheus 2.42 stores these lines as
//    ordinary series (`foo_created`); later versions read them as created timestamps.
//  - Numbers in Go's %g form with ".0" appended to integers ("1.0", "1e-05", "1.5e+06"), which is
//    how Prometheus' protobuf parser spells `le`, so a histogram keeps its series whichever of
//    OpenMetrics and protobuf it is scraped in.
//  - Counter-like samples may not be negative or NaN. A counter or histogram series whose counts
//    are not finite non-negative integers (only a corrupt region holds such) is left out; a
//    histogram with a negative bound, or whose sum is negative or NaN, is served without `_sum`
//    and `_count`, which OpenMetrics forbids there (text 0.0.4 and protobuf still carry them); a
//    summary whose sum is negative or NaN is served with its `_count` only.
//  - The exposition ends with `# EOF` (Finish), after the gateway's own families.
#include <cmath>
#include <limits>

#include "exposition.h"
#include "exposition_primitives.h"

namespace shmetrics::gateway {
namespace {

// Counts as OpenMetrics wants them: finite, non-negative integers.
bool ValidCount(double v) { return v >= 0 && std::isfinite(v) && v == std::trunc(v); }

class OpenMetricsRenderer final : public Renderer {
 public:
  explicit OpenMetricsRenderer(std::string& out) : out_(out) {}

  void BeginFamily(const FamilyDesc& f) override {
    name_ = f.name;
    out_ += "# TYPE ";
    out_ += f.name;
    out_ += ' ';
    out_ += TypeName(f.type);
    out_ += '\n';
    if (UnitMatchesName(f.name, f.unit)) {
      out_ += "# UNIT ";
      out_ += f.name;
      out_ += ' ';
      out_ += f.unit;
      out_ += '\n';
    }
    if (!f.help.empty()) {
      out_ += "# HELP ";
      out_ += f.name;
      out_ += ' ';
      AppendEscapedLabelValue(out_, f.help);  // OpenMetrics escapes `"` in HELP too
      out_ += '\n';
    }
  }

  void Counter(const SeriesDesc& s, double value, const ExemplarValue* exemplar) override {
    if (!(value >= 0)) return;  // negative or NaN: only a corrupt region; OpenMetrics forbids it
    Sample("_total", s.escaped_labels, nullptr, {}, value, exemplar);
    Created(s);
  }

  void Gauge(const SeriesDesc& s, const std::string* pid, double value) override {
    if (pid == nullptr) {
      Sample("", s.escaped_labels, nullptr, {}, value);
      return;
    }
    scratch_.clear();
    AppendEscapedLabelValue(scratch_, *pid);
    Sample("", s.escaped_labels, "pid", scratch_, value);
  }

  void Histogram(const SeriesDesc& s, const HistogramDesc& h) override {
    for (double count : h.counts) {
      if (!ValidCount(count)) return;  // corrupt counts: leave the series out
    }
    double cumulative = 0;
    for (size_t b = 0; b < h.counts.size(); ++b) {
      cumulative += h.counts[b];
      scratch_.clear();
      AppendOpenMetricsNumber(
          scratch_, b < h.bounds.size() ? h.bounds[b] : std::numeric_limits<double>::infinity());
      const ExemplarValue* ex =
          h.exemplars != nullptr && b < h.exemplars->size() ? &(*h.exemplars)[b] : nullptr;
      Sample("_bucket", s.escaped_labels, "le", scratch_, cumulative, ex);
    }
    const bool negative_bounds = !h.bounds.empty() && h.bounds.front() < 0;
    if (!negative_bounds && h.sum >= 0) {  // false for NaN too
      Sample("_count", s.escaped_labels, nullptr, {}, cumulative);
      Sample("_sum", s.escaped_labels, nullptr, {}, h.sum);
    }
    Created(s);
  }

  void Summary(const SeriesDesc& s, const SummaryDesc& q) override {
    if (!ValidCount(q.count)) return;
    for (const auto& [quantile, value] : q.quantiles) {
      scratch_.clear();
      AppendOpenMetricsNumber(scratch_, quantile);
      Sample("", s.escaped_labels, "quantile", scratch_, value);
    }
    Sample("_count", s.escaped_labels, nullptr, {}, q.count);
    // A summary's _sum is counter-like in OpenMetrics: never NaN (a NaN observation) nor negative
    // (negative observations). Such a sum is left out, its count stays; text and protobuf serve
    // it.
    if (q.sum >= 0) Sample("_sum", s.escaped_labels, nullptr, {}, q.sum);
    Created(s);
  }

  void EndFamily() override {}
  void Finish() override { out_ += "# EOF\n"; }

 private:
  // name suffix{labels[,extra_name="extra_value"]} value[ # {labels} value timestamp]
  void Sample(const char* suffix, std::string_view labels, const char* extra_name,
              std::string_view extra_value, double value, const ExemplarValue* exemplar = nullptr) {
    AppendSeriesName(out_, name_, suffix, labels, extra_name, extra_value);
    out_ += ' ';
    AppendOpenMetricsNumber(out_, value);
    if (exemplar != nullptr && exemplar->present) {
      out_ += " # {";
      for (size_t i = 0; i < exemplar->labels.size(); ++i) {
        if (i) out_ += ',';
        out_ += exemplar->labels[i].first;
        out_ += "=\"";
        AppendEscapedLabelValue(out_, exemplar->labels[i].second);
        out_ += '"';
      }
      out_ += "} ";
      AppendOpenMetricsNumber(out_, exemplar->value);
      out_ += ' ';
      AppendOpenMetricsNumber(out_, static_cast<double>(exemplar->unix_ns) / 1e9);
    }
    out_ += '\n';
  }

  void Created(const SeriesDesc& s) {
    if (s.created_unix_ns == 0) return;  // unknown
    Sample("_created", s.escaped_labels, nullptr, {}, static_cast<double>(s.created_unix_ns) / 1e9);
  }

  std::string& out_;
  std::string name_;     // the family's base name
  std::string scratch_;  // an escaped pid, le or quantile
};

}  // namespace

std::unique_ptr<Renderer> MakeOpenMetricsRenderer(std::string& out) {
  return std::make_unique<OpenMetricsRenderer>(out);
}

}  // namespace shmetrics::gateway
