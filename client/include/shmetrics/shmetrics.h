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
//  - Counter, Gauge, Histogram and Summary methods are the data plane: any thread, noexcept, no
//    lock, no allocation, no syscall. After fork() the child's updates go to the child's own slot.
//  - Handles (Family&, Counter&, ...) live at one address as long as the process; never delete
//    or copy them. A pointer to one may be kept and passed around as an opaque handle.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shmetrics/detail/writer.h"
#include "shmetrics/shm/family_spec.h"
#include "shmetrics/shm/layout.h"
#include "shmetrics/shm/region_options.h"

namespace shmetrics {

using shm::GaugeMode;
using shm::RegionError;
using shm::RegionOptions;
using shm::RegistrationError;

namespace shm {
class Region;
struct FamilyResult;
}  // namespace shm

class Client;
template <typename T>
class Family;

namespace detail {

// Per-family constants, once per family; each handle points to its family's. What varies per
// series (region, cells, whether it was dropped) is in the handle itself.
struct CounterFamily {
  uint32_t invalid_cell = 0;     // where invalid values (negative, NaN increments) are counted
  uint32_t exemplar_offset = 0;  // 0: this family keeps no exemplars
};

struct GaugeFamily {
  bool most_recent = false;  // the gateway serves the latest write: stamp its time too
};

struct HistogramFamily {
  uint32_t bucket_count = 0;  // finite bounds
  // 1 for most bucket layouts: the compares FirstBucket's table leaves to do, or
  // kSearchAllBuckets when some octave holds too many bounds (the table is then all zeros).
  uint32_t bucket_steps = 0;
  uint32_t exemplar_offset = 0;  // 0: this family keeps no exemplars
  NativeParams native;           // window 0: not a native histogram
  // Not native, and one compare finds any bucket: Observe's short path applies to its series.
  bool one_compare = false;
  // The bounds as detail::OrderKey()s, then a UINT64_MAX sentinel (so a search may step onto +Inf
  // without a range check). Integer compares: an FP load + compare on the bucket search's
  // dependency chain cost ~1 ns per Observe.
  uint64_t bound_keys[shm::kMaxBuckets + 1] = {};
  // For each sign+exponent of a double (its top 12 bits), the first bucket whose bound can hold
  // such a value; then `bucket_steps` compares. Inline, so a lookup is one load off the family.
  uint8_t bucket_table[4096] = {};
};

struct SummaryFamily {};  // a summary's series need nothing but their cells

// Where one series lives, as the control plane resolved it for a handle.
struct SeriesCells {
  uint32_t region = 0;
  uint32_t cell_base = 0;
  uint32_t drop_cell = 0;  // where a dropped series counts its updates; 0: the region header
  bool dropped = false;    // the region or the family's series cap had no room for it
};

}  // namespace detail

// Handles. Each holds exactly what its hot methods read, plus one pointer to its family's
// constants. Created only by Family<T>::Add, at a stable address for the life of the process
// (a T* may be handed out as an opaque pointer); usable from any thread; never copied.
class Counter {
 public:
  // Hot path. A counter only goes up: a negative or NaN Add is dropped and counted.
  void Inc() noexcept {
    if (__builtin_expect(dropped_, 0)) return detail::CountDrop(region_, drop_cell_);
    detail::CounterInc(*detail::ThreadCells(region_, cell_base_));  // own cell: no lock
  }
  void Add(double v) noexcept {
    if (__builtin_expect(dropped_, 0)) return detail::CountDrop(region_, drop_cell_);
    if (__builtin_expect(!(v >= 0.0), 0)) return detail::CountDrop(region_, family_->invalid_cell);
    detail::CounterAdd(*detail::ThreadCells(region_, cell_base_), v);  // own cell: no lock
  }
  // With an exemplar (families built with .Exemplars()): the value, then the exemplar under its
  // seqlock, so the gateway never serves a torn one. Costs a clock read and a small copy.
  void Add(double v, std::initializer_list<ExemplarLabel> exemplar) noexcept {
    Add(v, std::span<const ExemplarLabel>(exemplar.begin(), exemplar.size()));
  }
  // The same with labels known only at run time (the C ABI's parallel arrays).
  void Add(double v, std::span<const ExemplarLabel> exemplar) noexcept {
    Add(v);
    SetExemplar(v, exemplar);
  }
  // The exemplar of an increment of `v` already added: for callers that add and attach the
  // exemplar in two steps (prometheus_client's value API does).
  void SetExemplar(double v, std::span<const ExemplarLabel> exemplar) noexcept {
    if (__builtin_expect(dropped_ || !(v >= 0.0), 0)) return;
    const uint32_t offset = family_->exemplar_offset;
    detail::WriteExemplar(region_,
                          offset ? detail::ThreadCells(region_, cell_base_) + offset : nullptr, v,
                          exemplar.data(), exemplar.size());
  }

  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

 private:
  friend class Family<Counter>;
  using Constants = detail::CounterFamily;
  Counter(const Constants& family, const detail::SeriesCells& s)
      : family_(&family),
        region_(s.region),
        cell_base_(s.cell_base),
        drop_cell_(s.drop_cell),
        dropped_(s.dropped) {}
  const Constants* family_;
  uint32_t region_;
  uint32_t cell_base_;
  uint32_t drop_cell_;
  bool dropped_;
};

class Gauge {
 public:
  // Hot path. Gauge cells belong to the process (threads share them): Set is a plain store, Add
  // an atomic compare-exchange loop among this process's threads only.
  // The family's flag is read before the cell is written: after the store, which the compiler
  // cannot tell apart from the family, it would be two dependent loads again.
  void Set(double v) noexcept {
    if (__builtin_expect(dropped_, 0)) return detail::CountDrop(region_, drop_cell_);
    const bool stamp = family_->most_recent;
    shm::Cell* c = detail::ProcessCells(region_, cell_base_);
    c[0].store(detail::EncodeGauge(v), std::memory_order_relaxed);
    if (stamp) c[1].store(detail::NowUnixNs(), std::memory_order_relaxed);
  }
  void Add(double v) noexcept {
    if (__builtin_expect(dropped_, 0)) return detail::CountDrop(region_, drop_cell_);
    const bool stamp = family_->most_recent;
    shm::Cell* c = detail::ProcessCells(region_, cell_base_);
    uint64_t old = c[0].load(std::memory_order_relaxed);
    while (!c[0].compare_exchange_weak(old, detail::EncodeGauge(detail::DecodeGauge(old) + v),
                                       std::memory_order_relaxed)) {
    }
    if (stamp) c[1].store(detail::NowUnixNs(), std::memory_order_relaxed);
  }
  void Sub(double v) noexcept { Add(-v); }
  void Inc() noexcept { Add(1.0); }
  void Dec() noexcept { Add(-1.0); }
  void SetToCurrentTime() noexcept { Set(static_cast<double>(detail::NowUnixNs()) / 1e9); }

  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

 private:
  friend class Family<Gauge>;
  using Constants = detail::GaugeFamily;
  Gauge(const Constants& family, const detail::SeriesCells& s)
      : family_(&family),
        region_(s.region),
        cell_base_(s.cell_base),
        drop_cell_(s.drop_cell),
        dropped_(s.dropped) {}
  const Constants* family_;
  uint32_t region_;
  uint32_t cell_base_;
  uint32_t drop_cell_;
  bool dropped_;
};

class Histogram {
 public:
  // Hot path: find the bucket, then two single-writer adds (sum, bucket count). The count is the
  // sum of the buckets, so +Inf always equals _count. NaN lands in +Inf.
  void Observe(double v) noexcept {
    // One flag test instead of three (not dropped, not native, one compare). It never changes
    // for a handle, so either way it predicts perfectly; the early return only lays the short
    // path out as the fall-through.
    if (!short_observe_) return ObserveGeneral(v);
    AddSumAndCount(v, FirstBucket(v));
  }
  // With an exemplar for the bucket `v` falls in (families built with .Exemplars()).
  void Observe(double v, std::initializer_list<ExemplarLabel> exemplar) noexcept {
    Observe(v, std::span<const ExemplarLabel>(exemplar.begin(), exemplar.size()));
  }
  // The same with labels known only at run time (the C ABI's parallel arrays).
  void Observe(double v, std::span<const ExemplarLabel> exemplar) noexcept {
    if (__builtin_expect(dropped_, 0)) return detail::CountDrop(region_, drop_cell_);
    const uint32_t b = BucketIndex(v);
    shm::Cell* c = ObserveInto(v, b);
    const uint32_t offset = family_->exemplar_offset;
    detail::WriteExemplar(region_, offset ? c + offset + b * shm::kExemplarCells : nullptr, v,
                          exemplar.data(), exemplar.size());
  }

  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

 private:
  friend class Family<Histogram>;
  using Constants = detail::HistogramFamily;
  Histogram(const Constants& family, const detail::SeriesCells& s)
      : family_(&family),
        region_(s.region),
        cell_base_(s.cell_base),
        drop_cell_(s.drop_cell),
        dropped_(s.dropped),
        short_observe_(!s.dropped && family.one_compare) {}
  // The sum goes first: its load-add-store chain runs from one Observe to the next, and starting
  // it before the bucket's store (whose address is known late) measured ~0.3 ns faster.
  // The sum's index is read before ThreadCells: after its (possible) call the family would have
  // to be loaded again.
  shm::Cell* AddSumAndCount(double v, uint32_t b) noexcept {
    const uint32_t sum = family_->bucket_count + 1;
    shm::Cell* c = detail::ThreadCells(region_, cell_base_);
    detail::SingleWriterAdd(c[sum], v);
    detail::CountInc(c[b]);
    return c;
  }
  void ObserveGeneral(double v) noexcept {
    if (__builtin_expect(dropped_, 0)) return detail::CountDrop(region_, drop_cell_);
    ObserveInto(v, BucketIndex(v));
  }
  shm::Cell* ObserveInto(double v, uint32_t b) noexcept {
    shm::Cell* c = AddSumAndCount(v, b);
    const detail::NativeParams& native = family_->native;
    if (native.window != 0) detail::NativeObserve(c + native.offset, v, native);
    return c;
  }
  // The octave's first candidate bucket and one integer compare, no branch on the value: the
  // bucket itself for most layouts (bucket_steps <= 1). bucket_count (+Inf) for NaN.
  uint32_t FirstBucket(double v) const noexcept {
    if (__builtin_expect(v != v, 0)) return family_->bucket_count;
    const uint32_t i = family_->bucket_table[std::bit_cast<uint64_t>(v) >> 52];
    return i + (detail::OrderKey(v) > family_->bound_keys[i]);  // bound_keys[bucket_count]: +Inf
  }
  // The first bucket whose bound is >= v; bucket_count (+Inf) above every bound and for NaN.
  uint32_t BucketIndex(double v) const noexcept {
    const uint32_t i = FirstBucket(v);
    if (family_->bucket_steps <= 1) return i;
    return detail::FinishBucketSearch(family_->bound_keys, family_->bucket_count,
                                      family_->bucket_steps, detail::OrderKey(v),
                                      i);  // NaN stays at bucket_count
  }
  const Constants* family_;
  uint32_t region_;
  uint32_t cell_base_;
  uint32_t drop_cell_;
  bool dropped_;
  bool short_observe_;  // !dropped_ && family_->one_compare: the common case in one load
};

// Count and sum of observations, merged over workers. No quantiles: a quantile of merged workers
// cannot be computed from per-worker quantiles; use a native Histogram and histogram_quantile().
class Summary {
 public:
  // Hot path: two single-writer adds.
  void Observe(double v) noexcept {
    if (__builtin_expect(dropped_, 0)) return detail::CountDrop(region_, drop_cell_);
    shm::Cell* c = detail::ThreadCells(region_, cell_base_);
    detail::CountInc(c[0]);
    detail::SingleWriterAdd(c[1], v);
  }

  Summary(const Summary&) = delete;
  Summary& operator=(const Summary&) = delete;

 private:
  friend class Family<Summary>;
  using Constants = detail::SummaryFamily;
  Summary(const Constants&, const detail::SeriesCells& s)
      : region_(s.region), cell_base_(s.cell_base), drop_cell_(s.drop_cell), dropped_(s.dropped) {}
  uint32_t region_;
  uint32_t cell_base_;
  uint32_t drop_cell_;
  bool dropped_;
};

namespace detail {

// The type-independent part of a family: its spec and its registration in the region.
class FamilyCore {
 public:
  const shm::FamilySpec& spec() const { return spec_; }

 protected:
  FamilyCore(Client& client, shm::FamilySpec spec, const shm::FamilyResult& registered);
  ~FamilyCore() = default;  // never run: a family lives as long as the process

  // Throw RegistrationError naming the metric: a wrong number of values; a value that is not
  // UTF-8 or too long (checked only for a new child: a known one passed before).
  void CheckValueCount(std::span<const std::string_view> values) const;
  void CheckNewValues(std::span<const std::string_view> values) const;
  // Finds or adds the series in the region. Caller holds the registry lock.
  SeriesCells RegisterSeries(std::span<const std::string_view> values) const;
  void InitConstants(CounterFamily& c) const;
  void InitConstants(GaugeFamily& c) const;
  void InitConstants(HistogramFamily& c) const;
  void InitConstants(SummaryFamily&) const {}

  Client& client_;
  const shm::FamilySpec spec_;
  uint32_t index_;      // in the region's family table
  uint32_t drop_cell_;  // the family's drop counters (kDrop*)
  shm::SeriesLayout layout_;
  bool in_region_;  // false: the region had no room for the family; all its series drop
};

}  // namespace detail

// A metric family and its children (one per label-value set). Created by Builder::Register; lives
// as long as the process. Add and Get may be called from any thread.
template <typename T>
class Family : public detail::FamilyCore {
 public:
  // Label values in the order of the family's label names. Throws RegistrationError when their
  // number is wrong; never for capacity (a child the region has no room for counts its updates as
  // drops instead). Keep the reference: repeated Add is a hash lookup, the update itself is not.
  T& Add(std::initializer_list<std::string_view> values) {
    return Resolve(std::span<const std::string_view>(values.begin(), values.size()));
  }
  T& Add(std::span<const std::string_view> values) { return Resolve(values); }
  T& Add(const std::vector<std::string>& values) {
    std::vector<std::string_view> views(values.begin(), values.end());
    return Resolve(views);
  }
  // The family's only child when it has no labels.
  T& Get() { return Add(std::span<const std::string_view>()); }

  const std::string& name() const { return spec().name; }

 private:
  friend class Client;
  struct Entry;
  struct Table;  // process-local, lock-free for readers: Entry pointers by hash
  Family(Client& client, shm::FamilySpec spec, const shm::FamilyResult& registered);
  ~Family() = default;  // private: a family lives as long as the process
  // Returns the child for `values` (in label-name order), creating it on first use.
  T& Resolve(std::span<const std::string_view> values);
  T& Create(std::span<const std::string_view> values, uint64_t hash);

  typename T::Constants constants_;
  std::atomic<Table*> table_;
};

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

  // Used by the builders: registers the family, or returns the one this process registered
  // before. Throws RegistrationError (bad or conflicting definition), RegionError (the registry
  // lock cannot be taken).
  template <typename T>
  Family<T>& Register(shm::FamilySpec spec);

  // Ensures this thread (and process) owns a slot now, instead of at the first update. Returns
  // false if the region has no free slot (updates are then counted as drops until one frees up).
  bool ClaimSlotNow();

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() = delete;  // lives as long as the process: worker threads may update at exit

 private:
  struct Families;
  Client(const shm::Region* region, uint32_t id);
  const shm::Region* region_;  // immortal, as the Client
  uint32_t region_id_;
  Families* families_;  // what this process registered; under the registry lock; immortal
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

  Family<T>& Register(Client& client) { return client.Register<T>(spec_); }

 private:
  friend Builder<Counter> BuildCounter();
  friend Builder<Gauge> BuildGauge();
  friend Builder<Histogram> BuildHistogram();
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
