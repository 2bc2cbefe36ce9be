// Control plane of the client: attaching to a region, registering families, resolving label
// values to child handles. Everything here may lock, allocate and throw.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>

#include "shmetrics/shm/registry.h"
#include "shmetrics/shmetrics.h"
#include "writer_state.h"

namespace shmetrics {
namespace {

std::string Quote(std::string_view s) {
  std::string q(1, '"');
  q.append(s).push_back('"');
  return q;
}

bool SameSpec(const shm::FamilySpec& a, const shm::FamilySpec& b) {
  return a.type == b.type && a.help == b.help && a.unit == b.unit &&
         a.label_names == b.label_names && a.bounds == b.bounds && a.gauge_mode == b.gauge_mode &&
         a.native == b.native &&
         (!a.native ||
          (a.native_schema == b.native_schema && a.native_max_buckets == b.native_max_buckets &&
           a.native_zero_threshold == b.native_zero_threshold)) &&
         a.exemplars == b.exemplars;
}

struct ProcessRegistry {
  std::mutex mu;
  std::map<std::string, Client*> clients;
};
ProcessRegistry& Registry() {
  static auto* r = new ProcessRegistry();  // immortal: see Client
  return *r;
}

}  // namespace

struct ClientAccess {
  static Client* Make(std::unique_ptr<shm::Region> region, uint32_t id) {
    return new Client(std::move(region), id);
  }
};

Client::Client(std::unique_ptr<shm::Region> region, uint32_t id)
    : region_(std::move(region)), region_id_(id) {}

Client& Client::Attach(const std::string& region, const RegionOptions& options) {
  ProcessRegistry& reg = Registry();
  std::lock_guard lock(reg.mu);
  if (auto it = reg.clients.find(region); it != reg.clients.end()) return *it->second;
  auto mapped = shm::Region::OpenOrCreate(region, options);
  const uint32_t id = detail::AddRegionState(mapped.get());
  Client* c = ClientAccess::Make(std::move(mapped), id);
  reg.clients.emplace(region, c);
  return *c;
}

bool Client::ClaimSlotNow() { return detail::ClaimThreadSlot(region_id_); }

namespace {
struct FamilyIndex {
  std::map<std::string, detail::FamilyCore*> by_name;
};
}  // namespace

detail::FamilyCore* Client::RegisterFamily(shm::FamilySpec spec) {
  spec = shm::NormaliseFamilySpec(std::move(spec));
  detail::RegionState& state = detail::StateOf(region_id_);
  static std::map<uint32_t, FamilyIndex>* indexes = new std::map<uint32_t, FamilyIndex>();
  int fd;
  {
    std::lock_guard lock(state.mu);
    fd = detail::LockFdLocked(state);
  }
  if (fd < 0)
    throw RegionError("region \"" + region_->name() + "\": cannot open a lock descriptor");
  shm::RegistryLock lock(*region_, fd, state.registry_mu);
  FamilyIndex& index = (*indexes)[region_id_];
  if (auto it = index.by_name.find(spec.name); it != index.by_name.end()) {
    if (!SameSpec(it->second->spec(), spec)) {
      throw RegistrationError("metric " + Quote(spec.name) +
                              " is already registered in this process with another definition: "
                              "type, help, unit, labels, buckets and gauge mode must match");
    }
    return it->second;
  }
  const shm::FamilyResult registered = shm::RegistryWriter(*region_).FindOrAddFamily(spec);
  auto* core = new detail::FamilyCore(*this, spec, registered);
  index.by_name.emplace(spec.name, core);
  return core;
}

namespace detail {

struct FamilyCore::Entry {
  uint64_t hash;
  std::vector<std::string> values;
  HandleData data;
};

struct FamilyCore::Table {
  explicit Table(uint32_t capacity) : mask(capacity - 1), slots(new std::atomic<Entry*>[capacity]) {
    for (uint32_t i = 0; i < capacity; ++i) slots[i].store(nullptr, std::memory_order_relaxed);
  }
  uint32_t mask;
  uint32_t size = 0;
  std::unique_ptr<std::atomic<Entry*>[]> slots;
  // The table this one replaced: readers may still be probing it, so it lives on, owned here
  // rather than unreachable (which LeakSanitizer reports as a leak).
  std::unique_ptr<Table> previous;
};

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
    : client_(client), spec_(std::move(spec)), registered_(registered), table_(new Table(16)) {
  if (spec_.type == shm::MetricType::kHistogram) {
    // -0.0 is keyed as +0.0 (they are equal as bounds); the sentinel stands for +Inf.
    for (double b : spec_.bounds) bound_keys_.push_back(OrderKey(b == 0 ? 0.0 : b));
    bound_keys_.push_back(std::numeric_limits<uint64_t>::max());
    bucket_table_ = BuildBucketTable(spec_.bounds, &bucket_steps_);
  }
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

HandleData* FamilyCore::Resolve(std::span<const std::string_view> values) {
  if (values.size() != spec_.label_names.size()) {
    std::string names;
    for (const auto& n : spec_.label_names) names += (names.empty() ? "" : ", ") + n;
    throw RegistrationError("metric " + Quote(spec_.name) + ": expected " +
                            std::to_string(spec_.label_names.size()) + " label values (" + names +
                            "), got " + std::to_string(values.size()));
  }
  const uint64_t hash = shm::HashSeries(registered_.index, values);
  const Table* t = table_.load(std::memory_order_acquire);
  for (uint32_t i = 0; i <= t->mask; ++i) {
    const Entry* e = t->slots[(hash + i) & t->mask].load(std::memory_order_acquire);
    if (e == nullptr) break;
    if (e->hash == hash && SameValues(e->values, values)) return const_cast<HandleData*>(&e->data);
  }
  return Create(values, hash);
}

HandleData* FamilyCore::Create(std::span<const std::string_view> values, uint64_t hash) {
  for (size_t i = 0; i < values.size(); ++i) {
    std::string problem = shm::Utf8Problem(values[i]);
    if (values[i].size() > shm::kMaxLabelValueBytes) {
      problem = "longer than " + std::to_string(shm::kMaxLabelValueBytes) + " bytes";
    }
    if (!problem.empty()) {
      throw RegistrationError("metric " + Quote(spec_.name) + ": label " +
                              Quote(spec_.label_names[i]) + " value is " + problem);
    }
  }
  RegionState& state = StateOf(client_.region_id());
  int fd;
  {
    std::lock_guard lock(state.mu);
    fd = LockFdLocked(state);
  }
  if (fd < 0)
    throw RegionError("region \"" + client_.region().name() + "\": cannot open a lock descriptor");
  shm::RegistryLock lock(client_.region(), fd, state.registry_mu);

  // Another thread may have created it while we waited.
  Table* t = table_.load(std::memory_order_acquire);
  for (uint32_t i = 0; i <= t->mask; ++i) {
    Entry* e = t->slots[(hash + i) & t->mask].load(std::memory_order_acquire);
    if (e == nullptr) break;
    if (e->hash == hash && SameValues(e->values, values)) return &e->data;
  }

  auto* entry = new Entry{hash, std::vector<std::string>(values.begin(), values.end()), {}};
  HandleData& d = entry->data;
  d.region = client_.region_id();
  d.bucket_count = static_cast<uint32_t>(spec_.bounds.size());
  d.bound_keys = bound_keys_.data();
  d.bucket_table = bucket_table_.data();
  d.bucket_steps = bucket_steps_;
  d.most_recent = shm::IsMostRecentMode(spec_.gauge_mode) && spec_.type == shm::MetricType::kGauge;
  d.exemplar_offset = registered_.layout.exemplar_offset;
  if (spec_.native) {
    d.native.offset = registered_.layout.native_offset;
    d.native.window = spec_.native_max_buckets / 2;
    d.native.schema = spec_.native_schema;
    d.native.zero_threshold = spec_.native_zero_threshold;
  }
  if (!registered_.ok) {
    d.dropped = true;  // the region had no room for the family: drops go to the header counter
  } else {
    const shm::SeriesResult r =
        shm::RegistryWriter(client_.region()).FindOrAddSeries(registered_.index, values);
    d.cell_base = r.cell_base;
    d.dropped = r.status != shm::SeriesStatus::kOk;
    // The family's drop cell counts its cap (reason series_limit); a full region counts in the
    // region header (reason region_full).
    d.drop_cell = r.status == shm::SeriesStatus::kFamilyFull
                      ? registered_.drop_cell + shm::kDropSeriesLimit
                      : 0;
    d.invalid_cell = registered_.drop_cell + shm::kDropInvalidValue;
  }
  d.short_observe = spec_.type == shm::MetricType::kHistogram && !d.dropped && !spec_.native &&
                    d.bucket_steps <= 1;

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
  return &d;
}

}  // namespace detail

template <typename T>
Family<T>& Builder<T>::Register(Client& client) {
  detail::FamilyCore* core = client.RegisterFamily(spec_);
  static std::mutex mu;
  static auto* wrappers = new std::map<detail::FamilyCore*, Family<T>*>();
  std::lock_guard lock(mu);
  auto [it, inserted] = wrappers->emplace(core, nullptr);
  if (inserted) it->second = new Family<T>(core);
  return *it->second;
}

template class Builder<Counter>;
template class Builder<Gauge>;
template class Builder<Histogram>;
template class Builder<Summary>;

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
