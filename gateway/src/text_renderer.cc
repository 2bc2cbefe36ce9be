// Prometheus text format 0.0.4 (text/plain; version=0.0.4). A family is `# HELP` (backslash and
// newline escaped) then `# TYPE`; a counter family and its samples are named `..._total`;
// histograms are cumulative `_bucket{le}` lines (+Inf is the total, which is also `_count`), then
// `_sum` and `_count`. Every value is served as it is, NaN and negative included: the format has
// no rule against them. No exemplars, native buckets or `_created` in this format.
#include <limits>

#include "exposition.h"
#include "exposition_primitives.h"

namespace shmetrics::gateway {
namespace {

class TextRenderer final : public Renderer {
 public:
  explicit TextRenderer(std::string& out) : out_(out) {}

  void BeginFamily(const FamilyDesc& f) override {
    name_ = f.name;
    if (f.type == shm::MetricType::kCounter) name_ += "_total";
    out_ += "# HELP ";
    out_ += name_;
    out_ += ' ';
    AppendEscapedHelp(out_, f.help);
    out_ += "\n# TYPE ";
    out_ += name_;
    out_ += ' ';
    out_ += TypeName(f.type);
    out_ += '\n';
  }

  void Counter(const SeriesDesc& s, double value, const ExemplarValue*) override {
    Sample("", s.escaped_labels, {}, {}, value);
  }

  void Gauge(const SeriesDesc& s, const std::string* pid, double value) override {
    if (pid == nullptr) {
      Sample("", s.escaped_labels, {}, {}, value);
      return;
    }
    scratch_.clear();
    AppendEscapedLabelValue(scratch_, *pid);
    Sample("", s.escaped_labels, "pid", scratch_, value);
  }

  void Histogram(const SeriesDesc& s, const HistogramDesc& h) override {
    double cumulative = 0;
    for (size_t b = 0; b < h.counts.size(); ++b) {
      cumulative += h.counts[b];
      scratch_.clear();
      AppendCanonicalBound(
          scratch_, b < h.bounds.size() ? h.bounds[b] : std::numeric_limits<double>::infinity());
      Sample("_bucket", s.escaped_labels, "le", scratch_, cumulative);
    }
    Sample("_sum", s.escaped_labels, {}, {}, h.sum);
    Sample("_count", s.escaped_labels, {}, {}, cumulative);
  }

  void Summary(const SeriesDesc& s, const SummaryDesc& q) override {
    for (const auto& [quantile, value] : q.quantiles) {
      scratch_.clear();
      AppendCanonicalBound(scratch_, quantile);
      Sample("", s.escaped_labels, "quantile", scratch_, value);
    }
    Sample("_sum", s.escaped_labels, {}, {}, q.sum);
    Sample("_count", s.escaped_labels, {}, {}, q.count);
  }

  void EndFamily() override {}
  void Finish() override {}

 private:
  void Sample(std::string_view suffix, std::string_view labels, std::string_view extra_name,
              std::string_view extra_value, double value) {
    char number[32];
    const size_t n = FormatShortestDouble(number, value);
    AppendSampleLine(out_, name_, suffix, labels, extra_name, extra_value, {number, n});
  }

  std::string& out_;
  std::string name_;     // the family's sample name
  std::string scratch_;  // an escaped pid, le or quantile
};

}  // namespace

std::unique_ptr<Renderer> MakeTextRenderer(std::string& out) {
  return std::make_unique<TextRenderer>(out);
}

}  // namespace shmetrics::gateway
