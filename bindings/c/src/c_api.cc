// The C ABI over the C++ client. Control-plane calls catch every exception here, at the boundary,
// and turn it into a negative errno plus this thread's message; data-plane calls are one call
// into the client's inline hot path on the handle the caller resolved before.
//
// The opaque C types are the C++ objects themselves: a shmetrics_client* is a Client*, a
// shmetrics_family* a detail::FamilyCore* (the base of every Family<T>), a shmetrics_counter* a
// Counter*, and so on. All of them live at one address as long as the process.
#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shmetrics/shm/layout.h"
#include "shmetrics/shmetrics.h"
#include "shmetrics/shmetrics_c.h"

namespace shmetrics::c_api {
namespace {

// The C enums are the C++ ones by value: a type or mode passes through as a cast.
static_assert(SHMETRICS_COUNTER == static_cast<int>(shm::MetricType::kCounter));
static_assert(SHMETRICS_GAUGE == static_cast<int>(shm::MetricType::kGauge));
static_assert(SHMETRICS_HISTOGRAM == static_cast<int>(shm::MetricType::kHistogram));
static_assert(SHMETRICS_SUMMARY == static_cast<int>(shm::MetricType::kSummary));
static_assert(SHMETRICS_GAUGE_ALL == static_cast<int>(GaugeMode::kAll));
static_assert(SHMETRICS_GAUGE_LIVEALL == static_cast<int>(GaugeMode::kLiveAll));
static_assert(SHMETRICS_GAUGE_SUM == static_cast<int>(GaugeMode::kSum));
static_assert(SHMETRICS_GAUGE_LIVESUM == static_cast<int>(GaugeMode::kLiveSum));
static_assert(SHMETRICS_GAUGE_MAX == static_cast<int>(GaugeMode::kMax));
static_assert(SHMETRICS_GAUGE_LIVEMAX == static_cast<int>(GaugeMode::kLiveMax));
static_assert(SHMETRICS_GAUGE_MIN == static_cast<int>(GaugeMode::kMin));
static_assert(SHMETRICS_GAUGE_LIVEMIN == static_cast<int>(GaugeMode::kLiveMin));
static_assert(SHMETRICS_GAUGE_MOSTRECENT == static_cast<int>(GaugeMode::kMostRecent));
static_assert(SHMETRICS_GAUGE_LIVEMOSTRECENT == static_cast<int>(GaugeMode::kLiveMostRecent));

thread_local std::string last_error;

int Fail(int err, std::string message) {
  last_error = std::move(message);
  return -err;
}

int ErrnoFor(RegionError::Reason reason) {
  switch (reason) {
    case RegionError::Reason::kNotFound:
      return ENOENT;
    case RegionError::Reason::kAccess:
      return EACCES;
    case RegionError::Reason::kUntrusted:
      return EPERM;
    case RegionError::Reason::kNotRegular:
      return EEXIST;
    case RegionError::Reason::kNotReady:
      return EAGAIN;
    case RegionError::Reason::kInvalid:
      return EPROTO;
    case RegionError::Reason::kOther:
      break;
  }
  return EIO;
}

// Runs a control-plane body; any exception becomes a negative errno and this thread's message.
template <typename Body>
int Guard(Body&& body) noexcept {
  try {
    return body();
  } catch (const RegistrationError& e) {
    return Fail(EINVAL, e.what());
  } catch (const RegionError& e) {
    return Fail(ErrnoFor(e.reason()), e.what());
  } catch (const std::bad_alloc&) {
    return Fail(ENOMEM, "out of memory");
  } catch (const std::exception& e) {
    return Fail(EIO, e.what());
  } catch (...) {
    return Fail(EIO, "unknown error");
  }
}

// Copies a caller's options struct of `sz` bytes into a zeroed one of ours. A smaller struct is an
// older caller (the fields it does not know stay zero: defaults); a larger one is a newer caller,
// accepted only if every field we do not know is zero.
template <typename Opts>
bool CopyOpts(const Opts* given, Opts* out, const char* type, const std::string& subject) {
  *out = Opts{};
  if (given == nullptr) return true;
  const size_t sz = given->sz;
  if (sz < sizeof(size_t)) {
    Fail(EINVAL, subject + ": struct " + type + ".sz is " + std::to_string(sz) +
                     ", less than the size field itself");
    return false;
  }
  const auto* bytes = reinterpret_cast<const unsigned char*>(given);
  for (size_t i = sizeof(Opts); i < sz; ++i) {
    if (bytes[i] != 0) {
      Fail(EINVAL, subject + ": struct " + type + " has a non-zero field at byte " +
                       std::to_string(i) + ", past the " + std::to_string(sizeof(Opts)) +
                       " bytes this library knows (built against a newer header?)");
      return false;
    }
  }
  std::memcpy(out, given, sz < sizeof(Opts) ? sz : sizeof(Opts));
  out->sz = sizeof(Opts);
  return true;
}

std::string RegionSubject(const char* region) {
  return "region " + shm::Quote(region ? region : "(null)");
}

std::string MetricSubject(const char* name) {
  return "metric " + shm::Quote(name ? name : "(null)");
}

shm::FamilySpec SpecFrom(shm::MetricType type, const char* name, const shmetrics_family_opts& o) {
  shm::FamilySpec spec;
  spec.type = type;
  spec.name = name;
  if (o.help) spec.help = o.help;
  if (o.unit) spec.unit = o.unit;
  for (size_t i = 0; i < o.label_count; ++i) spec.label_names.emplace_back(o.label_names[i]);
  if (o.max_series) spec.max_series = o.max_series;
  if (o.gauge_mode) spec.gauge_mode = static_cast<GaugeMode>(o.gauge_mode);
  if (o.bucket_count) spec.bounds.assign(o.buckets, o.buckets + o.bucket_count);
  if (o.native) {
    spec.native = true;
    spec.native_schema = o.native_schema;
    if (o.native_max_buckets) spec.native_max_buckets = o.native_max_buckets;
    spec.native_zero_threshold = o.native_zero_threshold;
  }
  spec.exemplars = o.exemplars != 0;
  return spec;
}

template <typename T>
Family<T>* Register(Client& client, shm::FamilySpec spec) {
  return &client.Register<T>(std::move(spec));
}

template <typename T>
constexpr shm::MetricType kTypeOf = shm::MetricType::kCounter;
template <>
constexpr shm::MetricType kTypeOf<Gauge> = shm::MetricType::kGauge;
template <>
constexpr shm::MetricType kTypeOf<Histogram> = shm::MetricType::kHistogram;
template <>
constexpr shm::MetricType kTypeOf<Summary> = shm::MetricType::kSummary;

template <typename T, typename Out>
int Labels(shmetrics_family* family, size_t count, const char* const* values, const size_t* lens,
           Out** out) {
  return Guard([&] {
    if (family == nullptr || out == nullptr || (count != 0 && values == nullptr))
      return Fail(EINVAL, std::string(shm::MetricTypeName(kTypeOf<T>)) + " labels: NULL argument");
    auto* core = reinterpret_cast<detail::FamilyCore*>(family);
    const shm::FamilySpec& spec = core->spec();
    if (spec.type != kTypeOf<T>) {
      return Fail(EINVAL, "metric " + shm::Quote(spec.name) + " is a " +
                              shm::MetricTypeName(spec.type) + ", not a " +
                              shm::MetricTypeName(kTypeOf<T>));
    }
    std::vector<std::string_view> views;
    views.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      if (values[i] == nullptr) {
        return Fail(EINVAL, "metric " + shm::Quote(spec.name) + ": label value " +
                                std::to_string(i) + " is NULL");
      }
      views.emplace_back(values[i], lens ? lens[i] : std::strlen(values[i]));
    }
    T& handle = static_cast<Family<T>*>(core)->Add(std::span<const std::string_view>(views));
    *out = reinterpret_cast<Out*>(&handle);
    return 0;
  });
}

// Exemplar labels as the C++ client takes them. Every label takes at least 2 of the 128 bytes, so
// more than 64 cannot fit: those become one label too long to store, which the client drops and
// counts like any other exemplar over the limit.
constexpr size_t kMaxExemplarLabels = shm::kExemplarLabelBytes / 2;
constexpr char kTooLong[256] = {};

template <typename Write>
void WithExemplar(size_t count, const char* const* names, const char* const* values,
                  Write&& write) noexcept {
  ExemplarLabel labels[kMaxExemplarLabels];
  if (count > kMaxExemplarLabels) {
    labels[0] = {std::string_view(kTooLong, sizeof kTooLong), {}};
    return write(std::span<const ExemplarLabel>(labels, 1));
  }
  for (size_t i = 0; i < count; ++i) labels[i] = {names[i], values[i]};
  write(std::span<const ExemplarLabel>(labels, count));
}

}  // namespace
}  // namespace shmetrics::c_api

using namespace shmetrics;
using namespace shmetrics::c_api;

extern "C" {

int shmetrics_abi_version(void) { return SHMETRICS_ABI_VERSION; }

uint32_t shmetrics_max_exemplar_histogram_bounds(void) {
  return shmetrics::shm::kMaxExemplarHistogramBounds;
}

const char* shmetrics_last_error(void) { return last_error.c_str(); }

int shmetrics_attach(const char* region, const shmetrics_region_opts* opts,
                     shmetrics_client** out) {
  return Guard([&] {
    if (region == nullptr || out == nullptr) return Fail(EINVAL, "attach: NULL argument");
    shmetrics_region_opts o;
    if (!CopyOpts(opts, &o, "shmetrics_region_opts", RegionSubject(region))) return -EINVAL;
    RegionOptions options;
    if (o.size_bytes) options.size_bytes = o.size_bytes;
    if (o.max_families) options.max_families = o.max_families;
    if (o.max_series) options.max_series = o.max_series;
    if (o.max_slots) options.max_slots = o.max_slots;
    if (o.max_cells) options.max_cells = o.max_cells;
    if (o.string_bytes) options.string_bytes = o.string_bytes;
    if (o.mode) options.mode = static_cast<mode_t>(o.mode);
    if (o.group) options.group = o.group;
    if (o.creator_wait_ms > 0) options.creator_wait = std::chrono::milliseconds(o.creator_wait_ms);
    if (o.creator_wait_ms < 0) options.creator_wait = std::chrono::milliseconds(0);
    *out = reinterpret_cast<shmetrics_client*>(&Client::Attach(region, options));
    return 0;
  });
}

int shmetrics_register(shmetrics_client* client, int type, const char* name,
                       const shmetrics_family_opts* opts, shmetrics_family** out) {
  return Guard([&] {
    if (client == nullptr || name == nullptr || out == nullptr)
      return Fail(EINVAL, MetricSubject(name) + ": register: NULL argument");
    shmetrics_family_opts o;
    if (!CopyOpts(opts, &o, "shmetrics_family_opts", MetricSubject(name))) return -EINVAL;
    if (o.label_count != 0 && o.label_names == nullptr)
      return Fail(EINVAL, MetricSubject(name) + ": label_count without label_names");
    for (size_t i = 0; i < o.label_count; ++i) {
      if (o.label_names[i] == nullptr)
        return Fail(EINVAL, MetricSubject(name) + ": label name " + std::to_string(i) + " is NULL");
    }
    if (o.bucket_count != 0 && o.buckets == nullptr)
      return Fail(EINVAL, MetricSubject(name) + ": bucket_count without buckets");
    if (o.gauge_mode < 0 || o.gauge_mode > SHMETRICS_GAUGE_LIVEMOSTRECENT)
      return Fail(EINVAL,
                  MetricSubject(name) + ": unknown gauge mode " + std::to_string(o.gauge_mode));
    Client& c = *reinterpret_cast<Client*>(client);
    detail::FamilyCore* family = nullptr;
    switch (type) {
      case SHMETRICS_COUNTER:
        family = Register<Counter>(c, SpecFrom(shm::MetricType::kCounter, name, o));
        break;
      case SHMETRICS_GAUGE:
        family = Register<Gauge>(c, SpecFrom(shm::MetricType::kGauge, name, o));
        break;
      case SHMETRICS_HISTOGRAM:
        family = Register<Histogram>(c, SpecFrom(shm::MetricType::kHistogram, name, o));
        break;
      case SHMETRICS_SUMMARY:
        family = Register<Summary>(c, SpecFrom(shm::MetricType::kSummary, name, o));
        break;
      default:
        return Fail(EINVAL, MetricSubject(name) + ": unknown metric type " + std::to_string(type));
    }
    *out = reinterpret_cast<shmetrics_family*>(family);
    return 0;
  });
}

int shmetrics_counter_labels(shmetrics_family* family, size_t count, const char* const* values,
                             const size_t* lens, shmetrics_counter** out) {
  return Labels<Counter>(family, count, values, lens, out);
}
int shmetrics_gauge_labels(shmetrics_family* family, size_t count, const char* const* values,
                           const size_t* lens, shmetrics_gauge** out) {
  return Labels<Gauge>(family, count, values, lens, out);
}
int shmetrics_histogram_labels(shmetrics_family* family, size_t count, const char* const* values,
                               const size_t* lens, shmetrics_histogram** out) {
  return Labels<Histogram>(family, count, values, lens, out);
}
int shmetrics_summary_labels(shmetrics_family* family, size_t count, const char* const* values,
                             const size_t* lens, shmetrics_summary** out) {
  return Labels<Summary>(family, count, values, lens, out);
}

int shmetrics_claim_slot(shmetrics_client* client) {
  return Guard([&] {
    if (client == nullptr) return Fail(EINVAL, "claim slot: NULL client");
    Client& c = *reinterpret_cast<Client*>(client);
    if (c.ClaimSlotNow()) return 0;
    return Fail(ENOSPC, "region has no free writer slot: updates are counted as drops");
  });
}

// Data plane: one call into the inline hot path each.

void shmetrics_counter_inc(shmetrics_counter* c) { reinterpret_cast<Counter*>(c)->Inc(); }
void shmetrics_counter_add(shmetrics_counter* c, double v) {
  reinterpret_cast<Counter*>(c)->Add(v);
}
void shmetrics_counter_add_exemplar(shmetrics_counter* c, double v, size_t count,
                                    const char* const* names, const char* const* values) {
  WithExemplar(count, names, values, [&](std::span<const ExemplarLabel> labels) {
    reinterpret_cast<Counter*>(c)->Add(v, labels);
  });
}

void shmetrics_counter_set_exemplar(shmetrics_counter* c, double v, size_t count,
                                    const char* const* names, const char* const* values) {
  WithExemplar(count, names, values, [&](std::span<const ExemplarLabel> labels) {
    reinterpret_cast<Counter*>(c)->SetExemplar(v, labels);
  });
}

void shmetrics_gauge_set(shmetrics_gauge* g, double v) { reinterpret_cast<Gauge*>(g)->Set(v); }
void shmetrics_gauge_add(shmetrics_gauge* g, double v) { reinterpret_cast<Gauge*>(g)->Add(v); }
void shmetrics_gauge_set_to_current_time(shmetrics_gauge* g) {
  reinterpret_cast<Gauge*>(g)->SetToCurrentTime();
}

void shmetrics_histogram_observe(shmetrics_histogram* h, double v) {
  reinterpret_cast<Histogram*>(h)->Observe(v);
}
void shmetrics_histogram_observe_exemplar(shmetrics_histogram* h, double v, size_t count,
                                          const char* const* names, const char* const* values) {
  WithExemplar(count, names, values, [&](std::span<const ExemplarLabel> labels) {
    reinterpret_cast<Histogram*>(h)->Observe(v, labels);
  });
}

void shmetrics_summary_observe(shmetrics_summary* s, double v) {
  reinterpret_cast<Summary*>(s)->Observe(v);
}

}  // extern "C"
