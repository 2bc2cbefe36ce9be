#include "protobuf_format.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "metrics.pb.h"
#include "openmetrics_format.h"

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
bool ClassicCountsAreIntegers(const std::vector<double>& bounds, BucketCount count_of) {
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
void FillHistogram(pb::Histogram* h, const std::vector<double>& bounds, BucketCount count_of,
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
void FillNative(pb::Histogram* h, const shm::FamilyView& fv, const shm::native::Sparse* merged,
                bool integer) {
  const shm::native::Sparse empty = shm::native::Sparse::At(fv.native_schema);
  const shm::native::Sparse* source = merged ? merged : &empty;
  // Prometheus reads the *_float fields only when sample_count_float or zero_count_float is > 0.
  // Float buckets beside a float count of 0 (only a corrupt region holds such) could not be read
  // as what they are: the native part is then served without buckets.
  if (!integer && !(h->sample_count_float() > 0) && !(source->zero_count > 0)) source = &empty;
  const shm::native::Sparse& n = *source;
  h->set_schema(n.schema);
  h->set_zero_threshold(fv.native_zero_threshold);
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

}  // namespace

void AppendProtobuf(const RegistryView& registry, const Snapshot& snap, std::string& out) {
  const auto& families = registry.families;
  const auto& series = registry.series;
  // One message reused for every family: Clear() keeps the sub-messages and strings it allocated,
  // so after the first families encoding allocates almost nothing.
  pb::MetricFamily mf;
  for (uint32_t fi : registry.family_order) {
    const FamilyInfo& f = families[fi];
    if (f.series.empty()) continue;
    const shm::FamilyView& fv = f.view;
    mf.Clear();
    if (fv.type == shm::MetricType::kCounter) {
      mf.set_name(fv.name + "_total");
    } else {
      mf.set_name(fv.name);
    }
    if (!fv.help.empty()) mf.set_help(fv.help);
    if (om::UnitMatchesName(fv.name, fv.unit)) mf.set_unit(fv.unit);
    switch (fv.type) {
      case shm::MetricType::kCounter:
        mf.set_type(pb::COUNTER);
        break;
      case shm::MetricType::kGauge:
        mf.set_type(pb::GAUGE);
        break;
      case shm::MetricType::kHistogram:
        mf.set_type(pb::HISTOGRAM);
        break;
      case shm::MetricType::kSummary:
        mf.set_type(pb::SUMMARY);
        break;
    }
    auto add_metric = [&](const SeriesInfo& s) {
      pb::Metric* m = mf.add_metric();
      for (size_t i = 0; i < fv.label_names.size() && i < s.view.label_values.size(); ++i) {
        AddLabel(m, fv.label_names[i], s.view.label_values[i]);
      }
      return m;
    };
    for (uint32_t si : f.series) {
      const SeriesInfo& s = series[si];
      const uint32_t base = s.view.cell_base;
      switch (fv.type) {
        case shm::MetricType::kCounter: {
          pb::Counter* c = add_metric(s)->mutable_counter();
          c->set_value(snap.cells[base]);
          if (si < snap.exemplars.size() && !snap.exemplars[si].empty() &&
              snap.exemplars[si][0].present) {
            FillExemplar(c->mutable_exemplar(), snap.exemplars[si][0]);
          }
          if (s.view.created_unix_ns != 0)
            SetTimestamp(c->mutable_created_timestamp(), s.view.created_unix_ns);
          break;
        }
        case shm::MetricType::kGauge:
          snap.ForEachGaugeSample(si, fv.gauge_mode, [&](const std::string* pid, double v) {
            pb::Metric* m = add_metric(s);
            if (pid != nullptr) AddLabel(m, "pid", *pid);
            m->mutable_gauge()->set_value(v);
          });
          break;
        case shm::MetricType::kHistogram: {
          pb::Histogram* h = add_metric(s)->mutable_histogram();
          auto count_of = [&](size_t b) { return snap.cells[base + b]; };
          const shm::native::Sparse* native =
              fv.native && si < snap.native.size() && snap.native[si] ? &*snap.native[si] : nullptr;
          // One choice for the whole histogram: Prometheus takes every count, classic and native,
          // from the *_float fields once sample_count_float (or zero_count_float) is > 0, and from
          // the integer ones otherwise.
          const bool integer = ClassicCountsAreIntegers(fv.bounds, count_of) &&
                               (native == nullptr || NativeCountsAreIntegers(*native));
          FillHistogram(h, fv.bounds, count_of, snap.cells[base + fv.bounds.size() + 1], integer);
          if (s.view.created_unix_ns != 0)
            SetTimestamp(h->mutable_created_timestamp(), s.view.created_unix_ns);
          if (fv.native) FillNative(h, fv, native, integer);
          if (si < snap.exemplars.size() && !snap.exemplars[si].empty()) {
            FillBucketExemplars(h, fv.bounds.size(), snap.exemplars[si]);
          }
          break;
        }
        case shm::MetricType::kSummary: {
          pb::Summary* sm = add_metric(s)->mutable_summary();
          const double count = snap.cells[base];
          sm->set_sample_count(IntegerCount(count) ? static_cast<uint64_t>(count) : 0);
          sm->set_sample_sum(snap.cells[base + 1]);
          if (s.view.created_unix_ns != 0)
            SetTimestamp(sm->mutable_created_timestamp(), s.view.created_unix_ns);
          break;
        }
      }
    }
    if (mf.metric_size() > 0) AppendDelimited(mf, out);
  }
}

void AppendProtobuf(const std::vector<prometheus::MetricFamily>& families, std::string& out) {
  pb::MetricFamily mf;
  for (const prometheus::MetricFamily& f : families) {
    if (f.metric.empty()) continue;
    mf.Clear();
    mf.set_name(f.name);
    if (!f.help.empty()) mf.set_help(f.help);
    switch (f.type) {
      case prometheus::MetricType::Counter:
        mf.set_type(pb::COUNTER);
        break;
      case prometheus::MetricType::Gauge:
        mf.set_type(pb::GAUGE);
        break;
      case prometheus::MetricType::Histogram:
        mf.set_type(pb::HISTOGRAM);
        break;
      case prometheus::MetricType::Summary:
        mf.set_type(pb::SUMMARY);
        break;
      default:
        mf.set_type(pb::UNTYPED);
        break;
    }
    for (const prometheus::ClientMetric& cm : f.metric) {
      pb::Metric* m = mf.add_metric();
      for (const auto& l : cm.label) AddLabel(m, l.name, l.value);
      switch (f.type) {
        case prometheus::MetricType::Counter:
          m->mutable_counter()->set_value(cm.counter.value);
          break;
        case prometheus::MetricType::Gauge:
          m->mutable_gauge()->set_value(cm.gauge.value);
          break;
        case prometheus::MetricType::Histogram: {
          pb::Histogram* h = m->mutable_histogram();
          for (const auto& b : cm.histogram.bucket) {
            if (std::isinf(b.upper_bound) && b.upper_bound > 0) break;  // +Inf is sample_count
            pb::Bucket* bucket = h->add_bucket();
            bucket->set_upper_bound(b.upper_bound);
            bucket->set_cumulative_count(b.cumulative_count);
          }
          h->set_sample_count(cm.histogram.sample_count);
          h->set_sample_sum(cm.histogram.sample_sum);
          break;
        }
        case prometheus::MetricType::Summary: {
          pb::Summary* s = m->mutable_summary();
          for (const auto& q : cm.summary.quantile) {
            pb::Quantile* pq = s->add_quantile();
            pq->set_quantile(q.quantile);
            pq->set_value(q.value);
          }
          s->set_sample_count(cm.summary.sample_count);
          s->set_sample_sum(cm.summary.sample_sum);
          break;
        }
        default:
          m->mutable_untyped()->set_value(cm.untyped.value);
          break;
      }
      if (cm.timestamp_ms != 0) m->set_timestamp_ms(cm.timestamp_ms);
    }
    AppendDelimited(mf, out);
  }
}

}  // namespace shmetrics::gateway
