// Protobuf delimited (application/vnd.google.protobuf;
// proto=io.prometheus.client.MetricFamily; encoding=delimited): one [uvarint length][MetricFamily]
// record per family, the framing of Go's pbutil.WriteDelimited.
//
// Mapping (proto/metrics.proto):
//  - MetricFamily.name is the series name: a counter's includes `_total` (Prometheus adds no
//    suffix to protobuf counters); `unit` is set when it is a `_unit` suffix of the name, because
//    Prometheus' protobuf parser rejects the whole scrape otherwise.
//  - Counter: value and created_timestamp (the series' registration time, see
//    openmetrics_renderer.cc). Gauge: value, per-worker modes as one Metric per worker with label
//    pid.
//  - Histogram: cumulative buckets without the +Inf one (it is sample_count, and optional on the
//    wire, as client_golang writes it), sample_count, sample_sum, created_timestamp. Counts are
//    uint64 when they are integers below 2^53 (always, unless the region is corrupt), otherwise
//    every count of that histogram goes in the *_float fields.
//  - Nothing is escaped: HELP and label values are raw UTF-8 strings.
//
// The generated classes stay in this file.
#include <cmath>
#include <limits>
#include <map>

#include "exposition.h"
#include "exposition_primitives.h"
#include "metrics.pb.h"

namespace shmetrics::gateway {
namespace {

namespace pb = io::prometheus::client;

// [uvarint length][message]: serialised straight into `out`, no intermediate buffer.
void AppendDelimited(const pb::MetricFamily& family, std::string& out) {
  size_t n = family.ByteSizeLong();
  uint8_t prefix[10];
  size_t len = 0;
  do {
    prefix[len] = static_cast<uint8_t>(n & 0x7f);
    n >>= 7;
    if (n != 0) prefix[len] |= 0x80;
    ++len;
  } while (n != 0);
  out.append(reinterpret_cast<const char*>(prefix), len);
  const size_t at = out.size();
  out.resize(at + family.GetCachedSize());
  family.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out.data() + at));
}

void SetTimestamp(google::protobuf::Timestamp* ts, uint64_t unix_ns) {
  ts->set_seconds(static_cast<int64_t>(unix_ns / 1000000000u));
  ts->set_nanos(static_cast<int32_t>(unix_ns % 1000000000u));
}

void AddLabel(pb::Metric* m, const std::string& name, const std::string& value) {
  pb::LabelPair* l = m->add_label();
  l->set_name(name);
  l->set_value(value);
}

// Exactly representable as uint64 and never rounded on the way: the integer fields apply.
bool IntegerCount(double v) { return v >= 0 && v < 9007199254740992.0 && v == std::trunc(v); }

// Whether a classic histogram's per-bucket counts, +Inf last, and their running totals all fit
// the integer fields.
template <typename BucketCount>
bool ClassicCountsAreIntegers(std::span<const double> bounds, BucketCount count_of) {
  double total = 0;
  for (size_t b = 0; b <= bounds.size(); ++b) {
    total += count_of(b);
    if (!IntegerCount(total) || !IntegerCount(count_of(b))) return false;
  }
  return true;
}

bool NativeCountsAreIntegers(const shm::native::Sparse& n) {
  bool integer = IntegerCount(n.zero_count);
  for (auto [k, v] : n.positive) integer = integer && IntegerCount(v);
  for (auto [k, v] : n.negative) integer = integer && IntegerCount(v);
  return integer;
}

// A classic histogram from per-bucket (non-cumulative) counts, +Inf last: in the uint64 fields
// when `integer`, otherwise in the *_float ones.
template <typename BucketCount>
void FillHistogram(pb::Histogram* h, std::span<const double> bounds, BucketCount count_of,
                   double sum, bool integer) {
  double total = 0;
  for (size_t b = 0; b <= bounds.size(); ++b) total += count_of(b);
  double cumulative = 0;
  for (size_t b = 0; b < bounds.size(); ++b) {
    cumulative += count_of(b);
    pb::Bucket* bucket = h->add_bucket();
    bucket->set_upper_bound(bounds[b]);
    if (integer)
      bucket->set_cumulative_count(static_cast<uint64_t>(cumulative));
    else
      bucket->set_cumulative_count_float(cumulative);
  }
  if (integer)
    h->set_sample_count(static_cast<uint64_t>(total));
  else
    h->set_sample_count_float(total);
  h->set_sample_sum(sum);
}

void FillExemplar(pb::Exemplar* e, const ExemplarValue& x) {
  for (const auto& [name, value] : x.labels) {
    pb::LabelPair* l = e->add_label();
    l->set_name(name);
    l->set_value(value);
  }
  e->set_value(x.value);
  SetTimestamp(e->mutable_timestamp(), x.unix_ns);
}

// Spans and deltas (or absolute float counts) of one sign, as the native histogram spec wants:
// a span per run of consecutive indices, the first offset absolute, later ones the gap.
void FillSign(const std::map<int32_t, double>& buckets, bool integer,
              google::protobuf::RepeatedPtrField<pb::BucketSpan>* spans,
              google::protobuf::RepeatedField<int64_t>* deltas,
              google::protobuf::RepeatedField<double>* counts) {
  int64_t next = 0;  // index after the previous bucket
  double previous = 0;
  pb::BucketSpan* span = nullptr;
  for (auto [index, count] : buckets) {
    if (span == nullptr || index != next) {
      span = spans->Add();
      span->set_offset(static_cast<int32_t>(span == &spans->at(0) ? index : index - next));
      span->set_length(0);
    }
    span->set_length(span->length() + 1);
    if (integer) {
      deltas->Add(static_cast<int64_t>(count) - static_cast<int64_t>(previous));
    } else {
      counts->Add(count);
    }
    previous = count;
    next = int64_t{index} + 1;
  }
}

// The native part, in the same fields (integer or *_float) as the classic part already in `h`.
void FillNative(pb::Histogram* h, const HistogramDesc& hd, bool integer) {
  const shm::native::Sparse empty = shm::native::Sparse::At(hd.native_schema);
  const shm::native::Sparse* source = hd.native_buckets ? hd.native_buckets : &empty;
  // Prometheus reads the *_float fields only when sample_count_float or zero_count_float is > 0.
  // Float buckets beside a float count of 0 (only a corrupt region holds such) could not be read
  // as what they are: the native part is then served without buckets.
  if (!integer && !(h->sample_count_float() > 0) && !(source->zero_count > 0)) source = &empty;
  const shm::native::Sparse& n = *source;
  h->set_schema(n.schema);
  h->set_zero_threshold(hd.native_zero_threshold);
  if (integer) {
    h->set_zero_count(static_cast<uint64_t>(n.zero_count));
  } else {
    h->set_zero_count_float(n.zero_count);
  }
  FillSign(n.positive, integer, h->mutable_positive_span(), h->mutable_positive_delta(),
           h->mutable_positive_count());
  FillSign(n.negative, integer, h->mutable_negative_span(), h->mutable_negative_delta(),
           h->mutable_negative_count());
  if (n.positive.empty() && n.negative.empty()) {
    pb::BucketSpan* noop = h->add_positive_span();  // marks the histogram native (spec)
    noop->set_offset(0);
    noop->set_length(0);
  }
}

// Exemplars of classic buckets; the +Inf bucket is implicit unless it carries one.
void FillBucketExemplars(pb::Histogram* h, size_t finite, const std::vector<ExemplarValue>& ex) {
  for (size_t b = 0; b < finite && b < ex.size(); ++b) {
    if (ex[b].present)
      FillExemplar(h->mutable_bucket(static_cast<int>(b))->mutable_exemplar(), ex[b]);
  }
  if (ex.size() > finite && ex[finite].present) {
    pb::Bucket* inf = h->add_bucket();
    inf->set_upper_bound(std::numeric_limits<double>::infinity());
    if (h->has_sample_count_float()) {
      inf->set_cumulative_count_float(h->sample_count_float());
    } else {
      inf->set_cumulative_count(h->sample_count());
    }
    FillExemplar(inf->mutable_exemplar(), ex[finite]);
  }
}

class ProtobufRenderer final : public Renderer {
 public:
  explicit ProtobufRenderer(std::string& out) : out_(out) {}

  void BeginFamily(const FamilyDesc& f) override {
    // One message reused for every family: Clear() keeps the sub-messages and strings it
    // allocated, so after the first families encoding allocates almost nothing.
    mf_.Clear();
    if (f.type == shm::MetricType::kCounter) {
      name_ = f.name;
      name_ += "_total";
      mf_.set_name(name_);
    } else {
      mf_.set_name(std::string(f.name));
    }
    if (!f.help.empty()) mf_.set_help(std::string(f.help));
    if (UnitMatchesName(f.name, f.unit)) mf_.set_unit(std::string(f.unit));
    switch (f.type) {
      case shm::MetricType::kCounter:
        mf_.set_type(pb::COUNTER);
        break;
      case shm::MetricType::kGauge:
        mf_.set_type(pb::GAUGE);
        break;
      case shm::MetricType::kHistogram:
        mf_.set_type(pb::HISTOGRAM);
        break;
      case shm::MetricType::kSummary:
        mf_.set_type(pb::SUMMARY);
        break;
    }
  }

  void Counter(const SeriesDesc& s, double value, const ExemplarValue* exemplar) override {
    pb::Counter* c = AddMetric(s)->mutable_counter();
    c->set_value(value);
    if (exemplar != nullptr && exemplar->present) FillExemplar(c->mutable_exemplar(), *exemplar);
    if (s.created_unix_ns != 0) SetTimestamp(c->mutable_created_timestamp(), s.created_unix_ns);
  }

  void Gauge(const SeriesDesc& s, const std::string* pid, double value) override {
    pb::Metric* m = AddMetric(s);
    if (pid != nullptr) AddLabel(m, "pid", *pid);
    m->mutable_gauge()->set_value(value);
  }

  void Histogram(const SeriesDesc& s, const HistogramDesc& hd) override {
    pb::Histogram* h = AddMetric(s)->mutable_histogram();
    auto count_of = [&](size_t b) { return hd.counts[b]; };
    // One choice for the whole histogram: Prometheus takes every count, classic and native, from
    // the *_float fields once sample_count_float (or zero_count_float) is > 0, and from the
    // integer ones otherwise.
    const bool integer =
        ClassicCountsAreIntegers(hd.bounds, count_of) &&
        (hd.native_buckets == nullptr || NativeCountsAreIntegers(*hd.native_buckets));
    FillHistogram(h, hd.bounds, count_of, hd.sum, integer);
    if (s.created_unix_ns != 0) SetTimestamp(h->mutable_created_timestamp(), s.created_unix_ns);
    if (hd.native) FillNative(h, hd, integer);
    if (hd.exemplars != nullptr) FillBucketExemplars(h, hd.bounds.size(), *hd.exemplars);
  }

  void Summary(const SeriesDesc& s, const SummaryDesc& q) override {
    pb::Summary* sm = AddMetric(s)->mutable_summary();
    for (const auto& [quantile, value] : q.quantiles) {
      pb::Quantile* pq = sm->add_quantile();
      pq->set_quantile(quantile);
      pq->set_value(value);
    }
    sm->set_sample_count(IntegerCount(q.count) ? static_cast<uint64_t>(q.count) : 0);
    sm->set_sample_sum(q.sum);
    if (s.created_unix_ns != 0) SetTimestamp(sm->mutable_created_timestamp(), s.created_unix_ns);
  }

  // A family whose series all had nothing to serve (gauges never set) is left out.
  void EndFamily() override {
    if (mf_.metric_size() > 0) AppendDelimited(mf_, out_);
  }
  void Finish() override {}

 private:
  pb::Metric* AddMetric(const SeriesDesc& s) {
    pb::Metric* m = mf_.add_metric();
    for (size_t i = 0; i < s.label_names.size() && i < s.label_values.size(); ++i) {
      AddLabel(m, s.label_names[i], s.label_values[i]);
    }
    return m;
  }

  std::string& out_;
  pb::MetricFamily mf_;
  std::string name_;
};

}  // namespace

std::unique_ptr<Renderer> MakeProtobufRenderer(std::string& out) {
  return std::make_unique<ProtobufRenderer>(out);
}

}  // namespace shmetrics::gateway
