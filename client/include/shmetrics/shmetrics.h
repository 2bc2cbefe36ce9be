// shmetrics client: Prometheus metrics for pre-forked workers, written into one shared-memory
// region that shmetrics-gateway merges and serves.
//
//   auto& client = shmetrics::Client::Attach("myapp");
//   auto& requests = shmetrics::BuildCounter().Name("http_requests_total")
//                        .Help("Requests served.").Labels({"method", "code"}).Register(client);
//   shmetrics::Counter& ok = requests.Add({"GET", "200"});  // look up once, keep the reference
//   ok.Inc();                                                // a few ns, no lock, no syscall
//
// Who may call what:
//  - Attach, Build*().Register and Family::Add are the control plane: any thread, any time,
//    before or after fork(). They may take locks, allocate and throw RegistrationError /
//    RegionError with a message that names the metric or region.
//  - Counter, Gauge and Histogram methods are the data plane: any thread, noexcept, no lock, no
//    allocation, no syscall. After fork() the child's updates go to the child's own slot.
//  - Handles (Family&, Counter&, ...) live as long as the process; never delete them.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shmetrics/detail/writer.h"
#include "shmetrics/shm/layout.h"
#include "shmetrics/shm/region.h"
#include "shmetrics/shm/registry.h"

namespace shmetrics {

using shm::GaugeMode;
using shm::RegionError;
using shm::RegionOptions;
using shm::RegistrationError;

class Client;
namespace detail {
class FamilyCore;
}

// The data every child handle carries: where its cells are and where its drops are counted.
// `dropped` children are ones the region or the family's series cap had no room for.
struct HandleData {
  uint32_t region = 0;
  uint32_t cell_base = 0;
  uint32_t drop_cell = 0;     // where a dropped child counts its updates; 0: the region header
  uint32_t invalid_cell = 0;  // where invalid values (negative counter increments) are counted
  bool dropped = false;
  bool most_recent = false;   // gauges: also stamp the time of each write
  uint32_t bucket_count = 0;  // histograms: finite bounds
  // Histograms: the bounds as detail::OrderKey()s, then a UINT64_MAX sentinel (so a search may
  // step onto +Inf without a range check). Integer compares: an FP load + compare on the bucket
  // search's dependency chain cost ~1 ns per Observe. Lives with the family.
  const uint64_t* bound_keys = nullptr;
  // Histograms: for each sign+exponent of a double (its top 12 bits), the first bucket whose
  // bound can hold such a value; then `bucket_steps` compares (1 for most bucket layouts). All
  // zeros with bucket_steps = kSearchAllBuckets when some octave holds too many bounds.
  const uint8_t* bucket_table = nullptr;
  uint32_t bucket_steps = 0;
  // Histograms: not dropped, not native, and one compare finds any bucket: Observe takes the
  // short path, which tests this one flag instead of three.
  bool short_observe = false;
  uint32_t exemplar_offset = 0;  // 0: this family keeps no exemplars
  detail::NativeParams native;   // window 0: not a native histogram
};

// One label of an exemplar, e.g. {"trace_id", "4bf92f3577b34da6"}. Names and values together are
// at most 128 bytes (OpenMetrics); a longer exemplar is dropped and counted.
struct ExemplarLabel {
  std::string_view name;
  std::string_view value;
};

class Counter {
 public:
  // Hot path. A counter only goes up: a negative or NaN Add is dropped and counted.
  void Inc() noexcept {
    if (__builtin_expect(d_.dropped, 0)) return detail::CountDrop(d_.region, d_.drop_cell);
    detail::CounterInc(*detail::ThreadCells(d_.region, d_.cell_base));  // own cell: no lock
  }
  void Add(double v) noexcept {
    if (__builtin_expect(d_.dropped, 0)) return detail::CountDrop(d_.region, d_.drop_cell);
    if (__builtin_expect(!(v >= 0.0), 0)) return detail::CountDrop(d_.region, d_.invalid_cell);
    detail::CounterAdd(*detail::ThreadCells(d_.region, d_.cell_base), v);  // own cell: no lock
  }
  // With an exemplar (families built with .Exemplars()): the value, then the exemplar under its
  // seqlock, so the gateway never serves a torn one. Costs a clock read and a small copy.
  void Add(double v, std::initializer_list<ExemplarLabel> exemplar) noexcept {
    Add(v);
    if (__builtin_expect(d_.dropped || !(v >= 0.0), 0)) return;
    detail::WriteExemplar(
        d_.region,
        d_.exemplar_offset ? detail::ThreadCells(d_.region, d_.cell_base) + d_.exemplar_offset
                           : nullptr,
        v, reinterpret_cast<const detail::ExemplarLabelView*>(exemplar.begin()), exemplar.size());
  }

 private:
  friend class detail::FamilyCore;
  HandleData d_;
};

class Gauge {
 public:
  // Hot path. Gauge cells belong to the process (threads share them): Set is a plain store, Add
  // an atomic compare-exchange loop among this process's threads only.
  void Set(double v) noexcept {
    if (__builtin_expect(d_.dropped, 0)) return detail::CountDrop(d_.region, d_.drop_cell);
    shm::Cell* c = detail::ProcessCells(d_.region, d_.cell_base);
    c[0].store(detail::EncodeGauge(v), std::memory_order_relaxed);
    if (d_.most_recent) c[1].store(detail::NowUnixNs(), std::memory_order_relaxed);
  }
  void Add(double v) noexcept {
    if (__builtin_expect(d_.dropped, 0)) return detail::CountDrop(d_.region, d_.drop_cell);
    shm::Cell* c = detail::ProcessCells(d_.region, d_.cell_base);
    uint64_t old = c[0].load(std::memory_order_relaxed);
    while (!c[0].compare_exchange_weak(old, detail::EncodeGauge(detail::DecodeGauge(old) + v),
                                       std::memory_order_relaxed)) {
    }
    if (d_.most_recent) c[1].store(detail::NowUnixNs(), std::memory_order_relaxed);
  }
  void Sub(double v) noexcept { Add(-v); }
  void Inc() noexcept { Add(1.0); }
  void Dec() noexcept { Add(-1.0); }
  void SetToCurrentTime() noexcept { Set(static_cast<double>(detail::NowUnixNs()) / 1e9); }

 private:
  friend class detail::FamilyCore;
  HandleData d_;
};

class Histogram {
 public:
  // Hot path: find the bucket, then two single-writer adds (sum, bucket count). The count is the
  // sum of the buckets, so +Inf always equals _count. NaN lands in +Inf.
  void Observe(double v) noexcept {
    if (__builtin_expect(d_.short_observe, 1)) {  // one flag test instead of three
      AddSumAndCount(v, FirstBucket(v));
      return;
    }
    if (__builtin_expect(d_.dropped, 0)) return detail::CountDrop(d_.region, d_.drop_cell);
    ObserveInto(v, BucketIndex(v));
  }
  // With an exemplar for the bucket `v` falls in (families built with .Exemplars()).
  void Observe(double v, std::initializer_list<ExemplarLabel> exemplar) noexcept {
    if (__builtin_expect(d_.dropped, 0)) return detail::CountDrop(d_.region, d_.drop_cell);
    const uint32_t b = BucketIndex(v);
    shm::Cell* c = ObserveInto(v, b);
    detail::WriteExemplar(
        d_.region, d_.exemplar_offset ? c + d_.exemplar_offset + b * shm::kExemplarCells : nullptr,
        v, reinterpret_cast<const detail::ExemplarLabelView*>(exemplar.begin()), exemplar.size());
  }

 private:
  friend class detail::FamilyCore;
  // The sum goes first: its load-add-store chain runs from one Observe to the next, and starting
  // it before the bucket's store (whose address is known late) measured ~0.3 ns faster.
  shm::Cell* AddSumAndCount(double v, uint32_t b) noexcept {
    shm::Cell* c = detail::ThreadCells(d_.region, d_.cell_base);
    detail::SingleWriterAdd(c[d_.bucket_count + 1], v);
    detail::CountInc(c[b]);
    return c;
  }
  shm::Cell* ObserveInto(double v, uint32_t b) noexcept {
    shm::Cell* c = AddSumAndCount(v, b);
    if (d_.native.window != 0) detail::NativeObserve(c + d_.native.offset, v, d_.native);
    return c;
  }
  // The octave's first candidate bucket and one integer compare, no branch on the value: the
  // bucket itself for most layouts (bucket_steps <= 1). bucket_count (+Inf) for NaN.
  uint32_t FirstBucket(double v) const noexcept {
    if (__builtin_expect(v != v, 0)) return d_.bucket_count;
    const uint32_t i = d_.bucket_table[std::bit_cast<uint64_t>(v) >> 52];
    return i + (detail::OrderKey(v) > d_.bound_keys[i]);  // bound_keys[bucket_count]: sentinel
  }
  // The first bucket whose bound is >= v; bucket_count (+Inf) above every bound and for NaN.
  uint32_t BucketIndex(double v) const noexcept {
    const uint32_t i = FirstBucket(v);
    if (__builtin_expect(d_.bucket_steps <= 1, 1)) return i;
    return detail::FinishBucketSearch(d_.bound_keys, d_.bucket_count, d_.bucket_steps,
                                      detail::OrderKey(v), i);  // NaN stays at bucket_count
  }
  HandleData d_;
};

// Count and sum of observations, merged over workers. No quantiles: a quantile of merged workers
// cannot be computed from per-worker quantiles; use a native Histogram and histogram_quantile().
class Summary {
 public:
  // Hot path: two single-writer adds.
  void Observe(double v) noexcept {
    if (__builtin_expect(d_.dropped, 0)) return detail::CountDrop(d_.region, d_.drop_cell);
    shm::Cell* c = detail::ThreadCells(d_.region, d_.cell_base);
    detail::CountInc(c[0]);
    detail::SingleWriterAdd(c[1], v);
  }

 private:
  friend class detail::FamilyCore;
  HandleData d_;
};

namespace detail {

// The type-independent part of a family: the process-local, lock-free child lookup table and
// registration in the region. Use it through Family<T>.
class FamilyCore {
 public:
  FamilyCore(Client& client, shm::FamilySpec spec, const shm::FamilyResult& registered);
  ~FamilyCore() = delete;  // lives as long as the process

  const shm::FamilySpec& spec() const { return spec_; }
  // Returns the child for `values` (in label-name order), creating it on first use.
  HandleData* Resolve(std::span<const std::string_view> values);

 private:
  struct Entry;
  struct Table;
  HandleData* Create(std::span<const std::string_view> values, uint64_t hash);

  Client& client_;
  shm::FamilySpec spec_;
  shm::FamilyResult registered_;
  std::atomic<Table*> table_;
  std::vector<uint64_t> bound_keys_;   // histograms: see HandleData::bound_keys
  std::vector<uint8_t> bucket_table_;  // histograms: see HandleData::bucket_table
  uint32_t bucket_steps_ = 0;
};

}  // namespace detail

template <typename T>
class Family {
 public:
  // Label values in the order of the family's label names. Throws RegistrationError when their
  // number is wrong; never for capacity (a child the region has no room for counts its updates as
  // drops instead). Keep the reference: repeated Add is a hash lookup, the update itself is not.
  T& Add(std::initializer_list<std::string_view> values) {
    return Cast(core_->Resolve(std::span<const std::string_view>(values.begin(), values.size())));
  }
  T& Add(std::span<const std::string_view> values) { return Cast(core_->Resolve(values)); }
  T& Add(const std::vector<std::string>& values) {
    std::vector<std::string_view> views(values.begin(), values.end());
    return Cast(core_->Resolve(views));
  }
  // The family's only child when it has no labels.
  T& Get() { return Add(std::span<const std::string_view>()); }

  const std::string& name() const { return core_->spec().name; }
  explicit Family(detail::FamilyCore* core) : core_(core) {}

 private:
  static T& Cast(HandleData* d) { return *reinterpret_cast<T*>(d); }
  detail::FamilyCore* core_;
};
static_assert(sizeof(Counter) == sizeof(HandleData) && sizeof(Gauge) == sizeof(HandleData) &&
              sizeof(Histogram) == sizeof(HandleData) && sizeof(Summary) == sizeof(HandleData));

// One attachment of this process to one region.
class Client {
 public:
  // The process-wide attachment to `region`, created on first call (the region too, with
  // `options`, if no gateway has created it yet). Later calls return the same object; `options`
  // only matter to whoever creates the region, except `group` and `creator_wait`: a region
  // another user owns is attached only if its group is `options.group` (and it is not
  // world-writable; see README "Permissions"). Throws RegionError, naming owner and mode when it
  // refuses one.
  static Client& Attach(const std::string& region, const RegionOptions& options = {});

  const shm::Region& region() const { return *region_; }
  uint32_t region_id() const { return region_id_; }

  // Used by the builders: registers or finds the family. Throws RegistrationError.
  detail::FamilyCore* RegisterFamily(shm::FamilySpec spec);

  // Ensures this thread (and process) owns a slot now, instead of at the first update. Returns
  // false if the region has no free slot (updates are then counted as drops until one frees up).
  bool ClaimSlotNow();

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() = delete;  // lives as long as the process: worker threads may update at exit

 private:
  friend struct ClientAccess;
  Client(std::unique_ptr<shm::Region> region, uint32_t id);
  std::unique_ptr<shm::Region> region_;
  uint32_t region_id_;
};

// Builders: BuildCounter().Name(..).Help(..).Labels({..}).Register(client).
template <typename T>
class Builder {
 public:
  Builder& Name(std::string name) {
    spec_.name = std::move(name);
    return *this;
  }
  Builder& Help(std::string help) {
    spec_.help = std::move(help);
    return *this;
  }
  Builder& Unit(std::string unit) {
    spec_.unit = std::move(unit);
    return *this;
  }
  Builder& Labels(std::vector<std::string> names) {
    spec_.label_names = std::move(names);
    return *this;
  }
  // Per-family cardinality cap (default 10000). Children past it count their updates as drops.
  Builder& MaxSeries(uint32_t n) {
    spec_.max_series = n;
    return *this;
  }
  // Gauges only: how the gateway merges workers (default kLiveSum).
  Builder& Mode(GaugeMode mode) {
    spec_.gauge_mode = mode;
    return *this;
  }
  // Histograms only: finite, strictly increasing upper bounds; +Inf is implicit.
  Builder& Buckets(std::vector<double> bounds) {
    spec_.bounds = std::move(bounds);
    return *this;
  }
  // Histograms only: a native (exponential) histogram, merged exactly across workers, alone or
  // beside classic Buckets(). Buckets at `schema` are 2^(2^-schema) wide (3: ~9%); each writer
  // keeps at most `max_buckets` (half per sign) and halves its resolution when a new observation
  // would need more. |v| <= zero_threshold counts in the zero bucket.
  Builder& Native(int32_t schema = 3, uint32_t max_buckets = 160,
                  double zero_threshold = 2.938735877055719e-39) {
    spec_.native = true;
    spec_.native_schema = schema;
    spec_.native_max_buckets = max_buckets;
    spec_.native_zero_threshold = zero_threshold;
    return *this;
  }
  // Counters and classic histogram buckets: keep the latest exemplar of each writer.
  Builder& Exemplars() {
    spec_.exemplars = true;
    return *this;
  }

  Family<T>& Register(Client& client);

 private:
  friend Builder<Counter> BuildCounter();
  friend Builder<Gauge> BuildGauge();
  friend Builder<Histogram> BuildHistogram();
  Builder<Summary> BuildSummary();
  friend Builder<Summary> BuildSummary();
  explicit Builder(shm::MetricType type) { spec_.type = type; }
  shm::FamilySpec spec_;
};

Builder<Counter> BuildCounter();
Builder<Gauge> BuildGauge();
Builder<Histogram> BuildHistogram();
Builder<Summary> BuildSummary();

// Bucket helpers.
std::vector<double> ExponentialBuckets(double start, double factor, uint32_t count);
std::vector<double> LinearBuckets(double start, double width, uint32_t count);
// 0.005 .. 10 seconds, as client_golang's DefBuckets.
std::vector<double> DefaultBuckets();

}  // namespace shmetrics
