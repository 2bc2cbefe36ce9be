// Control plane of the client: attaching to a region, registering families, resolving label
// values to child handles. Everything here may lock, allocate and throw.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <variant>

#include "shmetrics/shm/family_spec.h"
#include "shmetrics/shm/region.h"
#include "shmetrics/shm/registry_writer.h"
#include "shmetrics/shmetrics.h"
#include "writer_state.h"

namespace shmetrics {
namespace {

bool SameSpec(const shm::FamilySpec& a, const shm::FamilySpec& b) {
  return a.type == b.type && a.help == b.help && a.unit == b.unit &&
         a.label_names == b.label_names && a.bounds == b.bounds && a.gauge_mode == b.gauge_mode &&
         a.native == b.native &&
         (!a.native ||
          (a.native_schema == b.native_schema && a.native_max_buckets == b.native_max_buckets &&
           a.native_zero_threshold == b.native_zero_threshold)) &&
         a.exemplars == b.exemplars;
}

// This process's attachments by region name. Immortal, as every Client.
struct Attachments {
  std::mutex mu;
  std::map<std::string, Client*> by_name;
};
Attachments& AttachmentsOfProcess() {
  static auto* a = new Attachments();
  return *a;
}

// The region's registry lock for this process: its lock descriptor (opened on first use) and
// the OFD lock, with the process-local mutex. Throws RegionError with the operating system's
// reason when the descriptor cannot be opened or the lock not taken.
shm::RegistryLock LockRegistry(const Client& client) {
  detail::RegionState& state = detail::StateOf(client.region_id());
  int fd;
  {
    std::lock_guard lock(state.mu);
    fd = detail::OpenLockFdLocked(state);
  }
  return shm::RegistryLock(client.region(), fd, state.registry_mu);
}

}  // namespace

// The families this process registered in the region, by name. Guarded by the region's registry
// lock (whose process-local mutex the fork handlers hold across fork()).
struct Client::Families {
  std::map<std::string,
           std::variant<Family<Counter>*, Family<Gauge>*, Family<Histogram>*, Family<Summary>*>>
      by_name;
};

Client::Client(const shm::Region* region, uint32_t id)
    : region_(region), region_id_(id), families_(new Families()) {}

Client& Client::Attach(const std::string& region, const RegionOptions& options) {
  Attachments& attachments = AttachmentsOfProcess();
  std::lock_guard lock(attachments.mu);
  if (auto it = attachments.by_name.find(region); it != attachments.by_name.end())
    return *it->second;
  std::unique_ptr<shm::Region> mapped = shm::Region::OpenOrCreate(region, options);
  const uint32_t id = detail::AddRegionState(mapped.get());
  Client* c = new Client(mapped.release(), id);  // both live as long as the process
  attachments.by_name.emplace(region, c);
  return *c;
}

bool Client::ClaimSlotNow() { return detail::ClaimThreadSlot(region_id_); }

template <typename T>
Family<T>& Client::Register(shm::FamilySpec spec) {
  spec = shm::NormaliseFamilySpec(std::move(spec));
  const shm::RegistryLock lock = LockRegistry(*this);
  if (auto it = families_->by_name.find(spec.name); it != families_->by_name.end()) {
    Family<T>* const* same = std::get_if<Family<T>*>(&it->second);
    if (same == nullptr || !SameSpec((*same)->spec(), spec)) {
      throw RegistrationError("metric " + shm::Quote(spec.name) +
                              " is already registered in this process with another definition: "
                              "type, help, unit, labels, buckets and gauge mode must match");
    }
    return **same;
  }
  const shm::FamilyResult registered = shm::RegistryWriter(*region_).FindOrAddFamily(spec);
  auto* family = new Family<T>(*this, std::move(spec), registered);
  families_->by_name.emplace(family->name(), family);
  return *family;
}

namespace detail {

namespace {

// For each of the 4096 sign+exponent octaves of a double, the number of bounds below the octave
// (the first bucket a value in it can fall in), and in *steps the most bounds inside any octave
// (how many compares BucketIndex needs from there). When some octave holds more than a few bounds,
// the table is all zeros and *steps is kSearchAllBuckets.
std::vector<uint8_t> BuildBucketTable(const std::vector<double>& b, uint32_t* steps) {
  static_assert(shm::kMaxBuckets <= 255, "bucket indices are stored in bytes");
  constexpr uint32_t kMaxSteps = 4;
  std::vector<uint8_t> table(4096, 0);
  *steps = kSearchAllBuckets;
  uint32_t most = 0;
  for (uint32_t key = 0; key < 4096; ++key) {
    const bool negative = key & 2048;
    const int e = static_cast<int>(key & 2047);
    double lo, hi;    // the values with these top bits lie in [lo, hi]
    if (e == 2047) {  // infinities (NaN is handled before the table)
      lo = hi = negative ? -std::numeric_limits<double>::infinity()
                         : std::numeric_limits<double>::infinity();
    } else {
      const double small = e == 0 ? 0.0 : std::ldexp(1.0, e - 1023);
      const double big = std::ldexp(1.0, e - 1022);
      lo = negative ? -big : small;
      hi = negative ? -small : big;
    }
    uint32_t first = 0;
    while (first < b.size() && b[first] < lo) ++first;
    uint32_t inside = 0;
    while (first + inside < b.size() && b[first + inside] < hi) ++inside;
    table[key] = static_cast<uint8_t>(first);
    most = std::max(most, inside);
  }
  if (most > kMaxSteps) {
    std::fill(table.begin(), table.end(), 0);
    return table;
  }
  *steps = most;
  return table;
}

}  // namespace

FamilyCore::FamilyCore(Client& client, shm::FamilySpec spec, const shm::FamilyResult& registered)
    : client_(client),
      spec_(std::move(spec)),
      index_(registered.index),
      drop_cell_(registered.drop_cell),
      layout_(registered.layout),
      in_region_(registered.status == shm::FamilyStatus::kOk) {}

void FamilyCore::CheckValueCount(std::span<const std::string_view> values) const {
  if (values.size() == spec_.label_names.size()) return;
  std::string names;
  for (const auto& n : spec_.label_names) names += (names.empty() ? "" : ", ") + n;
  throw RegistrationError("metric " + shm::Quote(spec_.name) + ": expected " +
                          std::to_string(spec_.label_names.size()) + " label values (" + names +
                          "), got " + std::to_string(values.size()));
}

void FamilyCore::CheckNewValues(std::span<const std::string_view> values) const {
  for (size_t i = 0; i < values.size(); ++i) {
    std::string problem = shm::Utf8Problem(values[i]);
    if (values[i].size() > shm::kMaxLabelValueBytes) {
      problem = "longer than " + std::to_string(shm::kMaxLabelValueBytes) + " bytes";
    }
    if (!problem.empty()) {
      throw RegistrationError("metric " + shm::Quote(spec_.name) + ": label " +
                              shm::Quote(spec_.label_names[i]) + " value is " + problem);
    }
  }
}

SeriesCells FamilyCore::RegisterSeries(std::span<const std::string_view> values) const {
  SeriesCells s;
  s.region = client_.region_id();
  if (!in_region_) {
    s.dropped = true;  // the region had no room for the family: drops go to the header counter
    return s;
  }
  const shm::SeriesResult r = shm::RegistryWriter(client_.region()).FindOrAddSeries(index_, values);
  s.cell_base = r.cell_base;
  s.dropped = r.status != shm::SeriesStatus::kOk;
  // The family's drop cell counts its cap (reason series_limit); a full region counts in the
  // region header (reason region_full).
  s.drop_cell = r.status == shm::SeriesStatus::kFamilyFull ? drop_cell_ + shm::kDropSeriesLimit : 0;
  return s;
}

void FamilyCore::InitConstants(CounterFamily& c) const {
  c.invalid_cell = in_region_ ? drop_cell_ + shm::kDropInvalidValue : 0;
  c.exemplar_offset = layout_.exemplar_offset;
}

void FamilyCore::InitConstants(GaugeFamily& c) const {
  c.most_recent = shm::IsMostRecentMode(spec_.gauge_mode);
}

void FamilyCore::InitConstants(HistogramFamily& c) const {
  c.bucket_count = static_cast<uint32_t>(spec_.bounds.size());
  // -0.0 is keyed as +0.0 (they are equal as bounds); the sentinel stands for +Inf.
  for (uint32_t i = 0; i < c.bucket_count; ++i) {
    const double b = spec_.bounds[i];
    c.bound_keys[i] = OrderKey(b == 0 ? 0.0 : b);
  }
  c.bound_keys[c.bucket_count] = std::numeric_limits<uint64_t>::max();
  const std::vector<uint8_t> table = BuildBucketTable(spec_.bounds, &c.bucket_steps);
  std::copy(table.begin(), table.end(), c.bucket_table);
  c.exemplar_offset = layout_.exemplar_offset;
  if (spec_.native) {
    c.native.offset = layout_.native_offset;
    c.native.window = spec_.native_max_buckets / 2;
    c.native.schema = spec_.native_schema;
    c.native.zero_threshold = spec_.native_zero_threshold;
  }
  c.one_compare = !spec_.native && c.bucket_steps <= 1;
}

namespace {
bool SameValues(const std::vector<std::string>& a, std::span<const std::string_view> b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}
}  // namespace

}  // namespace detail

// A child: its label values (to tell hash collisions apart) and the handle itself.
template <typename T>
struct Family<T>::Entry {
  uint64_t hash;
  std::vector<std::string> values;
  T handle;
};

template <typename T>
struct Family<T>::Table {
  explicit Table(uint32_t capacity) : mask(capacity - 1), slots(new std::atomic<Entry*>[capacity]) {
    for (uint32_t i = 0; i < capacity; ++i) slots[i].store(nullptr, std::memory_order_relaxed);
  }
  Entry* Find(uint64_t hash, std::span<const std::string_view> values) const {
    for (uint32_t i = 0; i <= mask; ++i) {
      Entry* e = slots[(hash + i) & mask].load(std::memory_order_acquire);
      if (e == nullptr) return nullptr;
      if (e->hash == hash && detail::SameValues(e->values, values)) return e;
    }
    return nullptr;
  }
  uint32_t mask;
  uint32_t size = 0;
  std::unique_ptr<std::atomic<Entry*>[]> slots;
  // The table this one replaced: readers may still be probing it, so it lives on, owned here
  // rather than unreachable (which LeakSanitizer reports as a leak).
  std::unique_ptr<Table> previous;
};

template <typename T>
Family<T>::Family(Client& client, shm::FamilySpec spec, const shm::FamilyResult& registered)
    : FamilyCore(client, std::move(spec), registered), table_(new Table(16)) {
  InitConstants(constants_);
}

template <typename T>
T& Family<T>::Resolve(std::span<const std::string_view> values) {
  CheckValueCount(values);
  const uint64_t hash = shm::HashSeries(index_, values);
  if (Entry* e = table_.load(std::memory_order_acquire)->Find(hash, values)) return e->handle;
  return Create(values, hash);
}

template <typename T>
T& Family<T>::Create(std::span<const std::string_view> values, uint64_t hash) {
  CheckNewValues(values);
  const shm::RegistryLock lock = LockRegistry(client_);
  // Another thread may have created it while we waited.
  Table* t = table_.load(std::memory_order_acquire);
  if (Entry* e = t->Find(hash, values)) return e->handle;

  auto* entry = new Entry{hash, std::vector<std::string>(values.begin(), values.end()),
                          T(constants_, RegisterSeries(values))};

  // Grow at half load; readers may still be probing the old table, so it is never freed.
  if ((t->size + 1) * 2 > t->mask + 1) {
    auto* bigger = new Table((t->mask + 1) * 2);
    for (uint32_t i = 0; i <= t->mask; ++i) {
      if (Entry* e = t->slots[i].load(std::memory_order_relaxed)) {
        uint32_t j = static_cast<uint32_t>(e->hash) & bigger->mask;
        while (bigger->slots[j].load(std::memory_order_relaxed) != nullptr)
          j = (j + 1) & bigger->mask;
        bigger->slots[j].store(e, std::memory_order_relaxed);
        ++bigger->size;
      }
    }
    bigger->previous.reset(t);
    table_.store(bigger, std::memory_order_release);
    t = bigger;
  }
  uint32_t j = static_cast<uint32_t>(hash) & t->mask;
  while (t->slots[j].load(std::memory_order_relaxed) != nullptr) j = (j + 1) & t->mask;
  t->slots[j].store(entry, std::memory_order_release);
  ++t->size;
  return entry->handle;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;
template class Family<Summary>;
template Family<Counter>& Client::Register<Counter>(shm::FamilySpec);
template Family<Gauge>& Client::Register<Gauge>(shm::FamilySpec);
template Family<Histogram>& Client::Register<Histogram>(shm::FamilySpec);
template Family<Summary>& Client::Register<Summary>(shm::FamilySpec);

Builder<Counter> BuildCounter() { return Builder<Counter>(shm::MetricType::kCounter); }
Builder<Gauge> BuildGauge() { return Builder<Gauge>(shm::MetricType::kGauge); }
Builder<Histogram> BuildHistogram() { return Builder<Histogram>(shm::MetricType::kHistogram); }
Builder<Summary> BuildSummary() { return Builder<Summary>(shm::MetricType::kSummary); }

std::vector<double> ExponentialBuckets(double start, double factor, uint32_t count) {
  if (!(start > 0) || !(factor > 1) || count == 0) {
    throw RegistrationError("ExponentialBuckets needs start > 0, factor > 1, count > 0");
  }
  std::vector<double> b;
  for (uint32_t i = 0; i < count; ++i) b.push_back(start * std::pow(factor, i));
  return b;
}

std::vector<double> LinearBuckets(double start, double width, uint32_t count) {
  if (!(width > 0) || count == 0)
    throw RegistrationError("LinearBuckets needs width > 0, count > 0");
  std::vector<double> b;
  for (uint32_t i = 0; i < count; ++i) b.push_back(start + width * i);
  return b;
}

std::vector<double> DefaultBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

}  // namespace shmetrics
