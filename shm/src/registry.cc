#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "shmetrics/shm/clock.h"
#include "shmetrics/shm/family_spec.h"
#include "shmetrics/shm/native_histogram.h"
#include "shmetrics/shm/ofd_lock.h"
#include "shmetrics/shm/registry_reader.h"
#include "shmetrics/shm/registry_writer.h"

namespace shmetrics::shm {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Names the gateway emits itself, so users may not take them.
constexpr std::string_view kReservedPrefix = "shmetrics_";

std::string_view ArenaString(const Region& region, StringRef ref) {
  const char* p = region.arena(ref.offset, ref.length);
  return p ? std::string_view(p, ref.length) : std::string_view();
}

const StringRef* ArenaRefs(const Region& region, uint32_t offset, uint32_t count) {
  if (offset % alignof(StringRef) != 0) return nullptr;
  return reinterpret_cast<const StringRef*>(region.arena(offset, count * sizeof(StringRef)));
}

uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v;
  h *= 0x9e3779b97f4a7c15ull;
  return h ^ (h >> 29);
}

}  // namespace

std::string Quote(std::string_view s) {
  std::string q(1, '"');
  q.append(s).push_back('"');
  return q;
}

SeriesLayout SeriesLayoutOf(const FamilySpec& spec) {
  uint8_t flags = 0;
  if (spec.native) flags |= kFamilyNative;
  if (spec.exemplars) flags |= kFamilyExemplars;
  return ComputeSeriesLayout(spec.type, spec.gauge_mode, static_cast<uint32_t>(spec.bounds.size()),
                             flags, spec.native ? spec.native_max_buckets / 2 : 0);
}

namespace {
// Metric and label names differ only in ':' (allowed in metric names, for recording rules).
std::string NameProblem(std::string_view name, bool colon_allowed, const char* grammar) {
  if (name.empty()) return "is empty";
  if (name.size() > kMaxNameBytes) {
    return "is longer than " + std::to_string(kMaxNameBytes) + " bytes";
  }
  if (name.substr(0, 2) == "__") return "starts with \"__\", which Prometheus reserves";
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                    (colon_allowed && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) {
      return "has '" + std::string(1, c) + "' at position " + std::to_string(i) + " (" + grammar +
             ")";
    }
  }
  return {};
}
}  // namespace

std::string MetricNameProblem(std::string_view name) {
  return NameProblem(name, true, "metric names match [a-zA-Z_:][a-zA-Z0-9_:]*");
}

std::string LabelNameProblem(std::string_view name) {
  return NameProblem(name, false, "label names match [a-zA-Z_][a-zA-Z0-9_]*");
}

// Well-formed UTF-8 as Unicode defines it (Table 3-7): no overlong forms, no surrogates, nothing
// above U+10FFFF. Go's utf8.ValidString and Python's decoder reject exactly these, so anything
// looser reaches Prometheus as a body it refuses.
std::string Utf8Problem(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // the allowed range of the second byte
    if (c < 0x80) {
      n = 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 3;
      if (c == 0xe0) lo = 0xa0;  // overlong below U+0800
      if (c == 0xed) hi = 0x9f;  // surrogates U+D800..U+DFFF
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 4;
      if (c == 0xf0) lo = 0x90;  // overlong below U+10000
      if (c == 0xf4) hi = 0x8f;  // above U+10FFFF
    }
    if (n == 0 || i + n > s.size()) return "invalid UTF-8 at byte " + std::to_string(i);
    for (size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b >> 6) != 0x2)
        return "invalid UTF-8 at byte " + std::to_string(i);
    }
    i += n;
  }
  return {};
}

std::string FamilySpecProblem(const FamilySpec& spec) {
  if (auto p = MetricNameProblem(spec.name); !p.empty()) return "invalid name: it " + p;
  if (spec.name.starts_with(kReservedPrefix)) {
    return "the prefix \"shmetrics_\" is reserved for the gateway's own metrics";
  }
  // Names the exposition derives from this family must not look like another family's samples.
  for (std::string_view suffix : {"_bucket", "_count", "_sum", "_created"}) {
    if (spec.type != MetricType::kGauge && EndsWith(spec.name, suffix)) {
      return "a name ending in \"" + std::string(suffix) +
             "\" clashes with the samples of another " + "metric; rename it";
    }
  }
  if (spec.help.size() > kMaxHelpBytes)
    return "help is longer than " + std::to_string(kMaxHelpBytes) + " bytes";
  if (auto p = Utf8Problem(spec.help); !p.empty()) return "help is not UTF-8: " + p;
  if (!spec.unit.empty()) {
    if (auto p = LabelNameProblem(spec.unit); !p.empty()) return "invalid unit: it " + p;
    if (!EndsWith(spec.name, "_" + spec.unit)) {
      return "unit " + Quote(spec.unit) + " must be the suffix of the name (OpenMetrics), e.g. " +
             Quote(spec.name + "_" + spec.unit);
    }
  }
  if (spec.label_names.size() > kMaxLabels) {
    return "too many labels: " + std::to_string(spec.label_names.size()) + " (at most " +
           std::to_string(kMaxLabels) + ")";
  }
  for (size_t i = 0; i < spec.label_names.size(); ++i) {
    const std::string& l = spec.label_names[i];
    if (auto p = LabelNameProblem(l); !p.empty())
      return "invalid label name " + Quote(l) + ": it " + p;
    if (spec.type == MetricType::kHistogram && l == "le")
      return "label \"le\" is reserved for histogram buckets";
    if (l == "quantile") return "label \"quantile\" is reserved for summaries";
    if (spec.type == MetricType::kGauge && IsPerWorkerMode(spec.gauge_mode) && l == "pid") {
      return "label \"pid\" is added by the gateway in per-worker gauge modes";
    }
    for (size_t j = 0; j < i; ++j) {
      if (spec.label_names[j] == l) return "label " + Quote(l) + " appears twice";
    }
  }
  if (spec.type == MetricType::kHistogram) {
    if (spec.bounds.size() > kMaxBuckets) {
      return "too many buckets: " + std::to_string(spec.bounds.size()) + " (at most " +
             std::to_string(kMaxBuckets) + ")";
    }
    for (size_t i = 0; i < spec.bounds.size(); ++i) {
      if (!std::isfinite(spec.bounds[i])) return "bucket bounds must be finite (+Inf is implicit)";
      if (i > 0 && !(spec.bounds[i] > spec.bounds[i - 1]))
        return "bucket bounds must be strictly increasing";
    }
  } else if (!spec.bounds.empty()) {
    return "only histograms have buckets";
  }
  if (spec.native) {
    if (spec.type != MetricType::kHistogram) return "only histograms can be native";
    if (spec.native_schema < native::kMinSchema || spec.native_schema > native::kMaxSchema) {
      return "native schema " + std::to_string(spec.native_schema) + " is outside -4..8";
    }
    if (spec.native_max_buckets < 2 || spec.native_max_buckets > 2 * native::kMaxWindow) {
      return "native max buckets must be 2.." + std::to_string(2 * native::kMaxWindow);
    }
    if (!std::isfinite(spec.native_zero_threshold) || spec.native_zero_threshold < 0) {
      return "native zero threshold must be finite and >= 0";
    }
  }
  if (spec.exemplars && (spec.type == MetricType::kGauge || spec.type == MetricType::kSummary)) {
    return "only counters and histograms carry exemplars";
  }
  const SeriesLayout layout = SeriesLayoutOf(spec);
  if (layout.cells > kCellsPerPage) {
    return "one series would need " + std::to_string(layout.cells) + " cells, at most " +
           std::to_string(kCellsPerPage) + ": use fewer buckets" +
           (spec.exemplars ? " or no exemplars" : "");
  }
  if (static_cast<uint8_t>(spec.gauge_mode) < 1 || static_cast<uint8_t>(spec.gauge_mode) > 10) {
    return "unknown gauge mode";
  }
  if (spec.max_series == 0) return "max_series must be at least 1";
  return {};
}

FamilySpec NormaliseFamilySpec(FamilySpec spec) {
  const std::string who = "metric " + Quote(spec.name) + ": ";
  auto fail = [&](const std::string& what) { throw RegistrationError(who + what); };

  if (auto p = MetricNameProblem(spec.name); !p.empty()) fail("invalid name: it " + p);
  if (spec.type == MetricType::kCounter && EndsWith(spec.name, "_total")) {
    spec.name.resize(spec.name.size() - 6);  // text formats add it back; OpenMetrics wants it off
    if (auto p = MetricNameProblem(spec.name); !p.empty())
      fail("invalid name without _total: " + p);
  }
  if (spec.type != MetricType::kGauge) spec.gauge_mode = GaugeMode::kLiveSum;
  if (auto p = FamilySpecProblem(spec); !p.empty()) fail(p);
  return spec;
}

uint32_t HashSeries(uint32_t family, std::span<const std::string_view> values) {
  uint64_t h = Mix(0x5348'4d45'5452'4943ull, family);
  for (std::string_view v : values) {
    h = Mix(h, v.size());
    size_t i = 0;
    for (; i + 8 <= v.size(); i += 8) {
      uint64_t chunk;
      std::memcpy(&chunk, v.data() + i, 8);
      h = Mix(h, chunk);
    }
    uint64_t tail = 0;
    if (i < v.size()) std::memcpy(&tail, v.data() + i, v.size() - i);
    h = Mix(h, tail);
  }
  return static_cast<uint32_t>(h ^ (h >> 32));
}

RegistryLock::RegistryLock(const Region& region, int lock_fd, std::mutex& process_mutex,
                           std::chrono::milliseconds timeout)
    : local_(process_mutex), fd_(lock_fd) {
  const LockResult r = LockByteWithin(fd_, kRegistryLockByte, timeout);
  if (r != LockResult::kAcquired) {
    throw RegionError("region \"" + region.name() + "\": registry lock " +
                      (r == LockResult::kBusy
                           ? "held by another process for over " + std::to_string(timeout.count()) +
                                 " ms (is it stopped?)"
                           : std::string("failed: ") + std::strerror(errno)));
  }
}

RegistryLock::~RegistryLock() { UnlockByte(fd_, kRegistryLockByte); }

std::optional<uint32_t> RegistryWriter::AllocBytes(uint32_t bytes) {
  RegionHeader& h = region_.header();
  const uint64_t used = (uint64_t{h.strings_used.load(std::memory_order_relaxed)} + 7) & ~7ull;
  if (used + bytes > region_.layout().string_bytes) return std::nullopt;
  // Published by the caller's final release store of a count; until then nobody reads it.
  h.strings_used.store(static_cast<uint32_t>(used + bytes), std::memory_order_release);
  return static_cast<uint32_t>(used);
}

void RegistryWriter::CopyToArena(uint32_t offset, const void* data, size_t bytes) {
  if (bytes > 0)
    std::memcpy(region_.mutable_arena(offset, static_cast<uint32_t>(bytes)), data, bytes);
}

std::optional<uint32_t> RegistryWriter::AllocString(std::string_view s) {
  auto off = AllocBytes(static_cast<uint32_t>(s.size()));
  if (off) CopyToArena(*off, s.data(), s.size());
  return off;
}

bool RegistryWriter::SameDefinition(const FamilyRecord& f, const FamilySpec& spec) const {
  if (f.type != spec.type || f.gauge_mode != spec.gauge_mode) return false;
  const bool native = (f.flags & kFamilyNative) != 0;
  if (native != spec.native || ((f.flags & kFamilyExemplars) != 0) != spec.exemplars) return false;
  if (native &&
      (f.native_schema != spec.native_schema || f.native_window != spec.native_max_buckets / 2 ||
       f.native_zero_threshold != spec.native_zero_threshold)) {
    return false;
  }
  if (ArenaString(region_, f.help) != spec.help || ArenaString(region_, f.unit) != spec.unit)
    return false;
  if (f.label_count != spec.label_names.size() || f.bucket_count != spec.bounds.size())
    return false;
  const StringRef* labels = ArenaRefs(region_, f.labels_offset, f.label_count);
  if (f.label_count > 0 && labels == nullptr) return false;
  for (uint32_t i = 0; i < f.label_count; ++i) {
    if (ArenaString(region_, labels[i]) != spec.label_names[i]) return false;
  }
  const char* b = region_.arena(f.bounds_offset, f.bucket_count * sizeof(double));
  if (f.bucket_count > 0 && b == nullptr) return false;
  for (uint32_t i = 0; i < f.bucket_count; ++i) {
    double v;
    std::memcpy(&v, b + i * sizeof(double), sizeof v);
    if (v != spec.bounds[i]) return false;
  }
  return true;
}

namespace {
std::string Describe(const Region& region, const FamilyRecord& f) {
  std::string s = std::string(MetricTypeName(f.type)) + " with labels [";
  const StringRef* labels = ArenaRefs(region, f.labels_offset, f.label_count);
  for (uint32_t i = 0; labels && i < f.label_count; ++i) {
    s += (i ? ", " : "") + std::string(ArenaString(region, labels[i]));
  }
  s += "]";
  if (f.type == MetricType::kHistogram) s += ", " + std::to_string(f.bucket_count) + " buckets";
  if (f.type == MetricType::kGauge) s += ", mode " + std::to_string(static_cast<int>(f.gauge_mode));
  return s;
}
}  // namespace

std::vector<std::string> ExposedNames(std::string_view base, MetricType type) {
  std::string b(base);
  switch (type) {
    case MetricType::kCounter:
      return {b, b + "_total", b + "_created"};
    case MetricType::kGauge:
      return {b};
    case MetricType::kHistogram:
      return {b, b + "_bucket", b + "_count", b + "_sum", b + "_created"};
    case MetricType::kSummary:
      return {b, b + "_count", b + "_sum", b + "_created"};
  }
  return {b};
}

FamilyResult RegistryWriter::FindOrAddFamily(const FamilySpec& spec) {
  RegionHeader& h = region_.header();
  const uint32_t count =
      std::min(h.family_count.load(std::memory_order_acquire), region_.layout().max_families);
  for (uint32_t i = 0; i < count; ++i) {
    const FamilyRecord& f = *region_.family(i);
    if (ArenaString(region_, f.name) != spec.name) continue;
    if (!SameDefinition(f, spec)) {
      throw RegistrationError("metric " + Quote(spec.name) + " is already registered in region \"" +
                              region_.name() + "\" with another definition (" +
                              Describe(region_, f) + "; help " +
                              Quote(ArenaString(region_, f.help)) +
                              "): type, help, unit, labels, buckets and gauge mode must match");
    }
    return {FamilyStatus::kOk, i, f.drop_cell, f.cells_per_series, SeriesLayoutOf(spec)};
  }

  // Another family must not expose a name this one does (a gauge "x_total" beside a counter "x"
  // would be one series twice).
  const std::vector<std::string> mine = ExposedNames(spec.name, spec.type);
  for (uint32_t i = 0; i < count; ++i) {
    const FamilyRecord& f = *region_.family(i);
    for (const std::string& theirs : ExposedNames(ArenaString(region_, f.name), f.type)) {
      if (std::find(mine.begin(), mine.end(), theirs) != mine.end()) {
        throw RegistrationError("metric " + Quote(spec.name) + " clashes with the existing " +
                                Describe(region_, f) + " " + Quote(ArenaString(region_, f.name)) +
                                ": both would expose " + Quote(theirs));
      }
    }
  }

  auto no_room = [&]() {
    h.registration_errors.fetch_add(1, std::memory_order_relaxed);
    return FamilyResult{};
  };
  if (count >= region_.layout().max_families) return no_room();
  FamilyRecord& f = *region_.family(count);
  const SeriesLayout layout = SeriesLayoutOf(spec);
  const uint32_t cells = layout.cells;
  // The drop cell is this family's first cell; series ranges follow.
  uint32_t drop_cell = h.cells_used.load(std::memory_order_relaxed);
  if (drop_cell % kCellsPerPage + kFamilyDropCells > kCellsPerPage) {
    drop_cell = (drop_cell / kCellsPerPage + 1) * kCellsPerPage;  // never straddle a page
  }
  if (drop_cell + kFamilyDropCells > region_.layout().max_cells) return no_room();

  auto name = AllocString(spec.name);
  auto help = AllocString(spec.help);
  auto unit = AllocString(spec.unit);
  auto labels = AllocBytes(static_cast<uint32_t>(spec.label_names.size() * sizeof(StringRef)));
  std::vector<StringRef> label_refs;
  for (const std::string& l : spec.label_names) {
    auto off = AllocString(l);
    if (!off) return no_room();
    label_refs.push_back({*off, static_cast<uint32_t>(l.size())});
  }
  auto bounds = AllocBytes(static_cast<uint32_t>(spec.bounds.size() * sizeof(double)));
  if (!name || !help || !unit || !labels || !bounds) return no_room();
  CopyToArena(*labels, label_refs.data(), label_refs.size() * sizeof(StringRef));
  CopyToArena(*bounds, spec.bounds.data(), spec.bounds.size() * sizeof(double));

  f.name = {*name, static_cast<uint32_t>(spec.name.size())};
  f.help = {*help, static_cast<uint32_t>(spec.help.size())};
  f.unit = {*unit, static_cast<uint32_t>(spec.unit.size())};
  f.labels_offset = *labels;
  f.bounds_offset = *bounds;
  f.bucket_count = static_cast<uint32_t>(spec.bounds.size());
  f.cells_per_series = cells;
  f.max_series = spec.max_series;
  f.drop_cell = drop_cell;
  f.created_unix_ns = NowUnixNs();
  f.type = spec.type;
  f.gauge_mode = spec.gauge_mode;
  f.label_count = static_cast<uint8_t>(spec.label_names.size());
  f.flags = static_cast<uint8_t>((spec.native ? kFamilyNative : 0) |
                                 (spec.exemplars ? kFamilyExemplars : 0));
  f.native_schema = spec.native ? spec.native_schema : 0;
  f.native_window = spec.native ? spec.native_max_buckets / 2 : 0;
  f.native_zero_threshold = spec.native ? spec.native_zero_threshold : 0;
  f.native_offset = layout.native_offset;
  f.exemplar_offset = layout.exemplar_offset;
  f.series_count.store(0, std::memory_order_relaxed);
  h.cells_used.store(drop_cell + kFamilyDropCells, std::memory_order_release);
  h.family_count.store(count + 1, std::memory_order_release);  // publish
  return {FamilyStatus::kOk, count, drop_cell, cells, layout};
}

std::optional<SeriesResult> RegistryWriter::FindSeries(uint32_t family,
                                                       std::span<const std::string_view> values,
                                                       uint32_t hash) const {
  const uint32_t mask = region_.layout().hash_buckets - 1;
  const uint32_t published = region_.header().series_count.load(std::memory_order_acquire);
  for (uint32_t probe = 0; probe <= mask; ++probe) {
    const uint32_t entry =
        region_.hash_bucket((hash + probe) & mask)->load(std::memory_order_acquire);
    if (entry == 0) return std::nullopt;
    const uint32_t index = entry - 1;
    if (index >= published) continue;  // not ours to trust yet
    const SeriesRecord& s = *region_.series(index);
    if (s.hash != hash || s.family != family) continue;
    const StringRef* refs =
        ArenaRefs(region_, s.values_offset, static_cast<uint32_t>(values.size()));
    if (!values.empty() && refs == nullptr) continue;
    bool same = true;
    for (size_t i = 0; same && i < values.size(); ++i)
      same = ArenaString(region_, refs[i]) == values[i];
    if (same) return SeriesResult{SeriesStatus::kOk, index, s.cell_base};
  }
  return std::nullopt;
}

SeriesResult RegistryWriter::FindOrAddSeries(uint32_t family,
                                             std::span<const std::string_view> values) {
  const uint32_t hash = HashSeries(family, values);
  if (auto found = FindSeries(family, values, hash)) return *found;

  RegionHeader& h = region_.header();
  FamilyRecord* f = region_.family(family);
  if (f == nullptr) return {SeriesStatus::kRegionFull};
  if (f->series_count.load(std::memory_order_relaxed) >= f->max_series)
    return {SeriesStatus::kFamilyFull};
  auto no_room = [&]() {
    h.registration_errors.fetch_add(1, std::memory_order_relaxed);
    return SeriesResult{SeriesStatus::kRegionFull};
  };
  const uint32_t index = h.series_count.load(std::memory_order_relaxed);
  if (index >= region_.layout().max_series) return no_room();

  // A series' cells never straddle a page: the hot path indexes them from one page pointer.
  const uint32_t k = f->cells_per_series;
  uint32_t base = h.cells_used.load(std::memory_order_relaxed);
  if (base % kCellsPerPage + k > kCellsPerPage) base = (base / kCellsPerPage + 1) * kCellsPerPage;
  if (uint64_t{base} + k > region_.layout().max_cells) return no_room();

  auto refs = AllocBytes(static_cast<uint32_t>(values.size() * sizeof(StringRef)));
  if (!refs) return no_room();
  std::vector<StringRef> value_refs;
  for (std::string_view v : values) {
    auto off = AllocString(v);
    if (!off) return no_room();
    value_refs.push_back({*off, static_cast<uint32_t>(v.size())});
  }
  CopyToArena(*refs, value_refs.data(), value_refs.size() * sizeof(StringRef));

  const uint32_t mask = region_.layout().hash_buckets - 1;
  std::atomic<uint32_t>* bucket = nullptr;
  for (uint32_t probe = 0; probe <= mask && bucket == nullptr; ++probe) {
    std::atomic<uint32_t>* b = region_.hash_bucket((hash + probe) & mask);
    if (b->load(std::memory_order_relaxed) == 0) bucket = b;
  }
  if (bucket == nullptr) return no_room();

  SeriesRecord& s = *region_.series(index);
  s.family = family;
  s.cell_base = base;
  s.values_offset = *refs;
  s.hash = hash;
  s.created_unix_ns = NowUnixNs();
  h.cells_used.store(base + k, std::memory_order_release);
  f->series_count.store(f->series_count.load(std::memory_order_relaxed) + 1,
                        std::memory_order_relaxed);
  h.series_count.store(index + 1, std::memory_order_release);  // publish the record...
  bucket->store(index + 1, std::memory_order_release);         // ...then make it findable
  return {SeriesStatus::kOk, index, base};
}

std::optional<FamilyView> ReadFamily(const Region& region, uint32_t index, ReadProblem* problem) {
  auto bad = [&](std::string what) -> std::optional<FamilyView> {
    if (problem) problem->what = "family #" + std::to_string(index) + ": " + std::move(what);
    return std::nullopt;
  };
  const FamilyRecord* f = region.family(index);
  if (f == nullptr) return bad("index out of range");
  // Copy the record first: a hostile writer may change it while we look.
  FamilyRecord r;
  std::memcpy(static_cast<void*>(&r), f, sizeof r);
  FamilyView v;
  v.index = index;
  const uint8_t type = static_cast<uint8_t>(r.type);
  if (type < 1 || type > 4) return bad("unknown type " + std::to_string(type));
  v.type = r.type;
  const uint8_t mode = static_cast<uint8_t>(r.gauge_mode);
  if (mode < 1 || mode > 10) return bad("unknown gauge mode " + std::to_string(mode));
  v.gauge_mode = r.gauge_mode;
  if (r.label_count > kMaxLabels) return bad("too many labels");
  if (r.bucket_count > kMaxBuckets) return bad("too many buckets");
  for (auto [ref, out] : {std::pair{r.name, &v.name}, {r.help, &v.help}, {r.unit, &v.unit}}) {
    const char* p = region.arena(ref.offset, ref.length);
    if (p == nullptr) return bad("string outside the arena");
    out->assign(p, ref.length);
  }
  if (auto p = MetricNameProblem(v.name); !p.empty()) return bad("name " + p);
  if (v.name.starts_with(kReservedPrefix)) return bad("name uses the reserved prefix shmetrics_");
  const StringRef* labels = ArenaRefs(region, r.labels_offset, r.label_count);
  if (r.label_count > 0 && labels == nullptr) return bad("label table outside the arena");
  for (uint32_t i = 0; i < r.label_count; ++i) {
    const StringRef ref = labels[i];
    const char* p = region.arena(ref.offset, ref.length);
    if (p == nullptr) return bad("label name outside the arena");
    v.label_names.emplace_back(p, ref.length);
    if (auto lp = LabelNameProblem(v.label_names.back()); !lp.empty())
      return bad("label name " + lp);
  }
  const char* b = region.arena(r.bounds_offset, r.bucket_count * sizeof(double));
  if (r.bucket_count > 0 && b == nullptr) return bad("bounds outside the arena");
  v.bounds.resize(r.bucket_count);
  if (r.bucket_count > 0) std::memcpy(v.bounds.data(), b, r.bucket_count * sizeof(double));
  for (size_t i = 0; i < v.bounds.size(); ++i) {
    if (!std::isfinite(v.bounds[i]) || (i > 0 && !(v.bounds[i] > v.bounds[i - 1]))) {
      return bad("bucket bounds not finite and increasing");
    }
  }
  if ((r.flags & ~(kFamilyNative | kFamilyExemplars)) != 0) return bad("unknown flags");
  const bool native = (r.flags & kFamilyNative) != 0;
  if (native && (r.type != MetricType::kHistogram || r.native_schema < native::kMinSchema ||
                 r.native_schema > native::kMaxSchema || r.native_window < 1 ||
                 r.native_window > native::kMaxWindow || !std::isfinite(r.native_zero_threshold) ||
                 r.native_zero_threshold < 0)) {
    return bad("invalid native histogram parameters");
  }
  if ((r.flags & kFamilyExemplars) &&
      (r.type == MetricType::kGauge || r.type == MetricType::kSummary)) {
    return bad("exemplars on a gauge or summary");
  }
  const SeriesLayout layout = ComputeSeriesLayout(r.type, r.gauge_mode, r.bucket_count, r.flags,
                                                  native ? r.native_window : 0);
  if (r.cells_per_series != layout.cells || layout.cells > kCellsPerPage ||
      r.native_offset != layout.native_offset || r.exemplar_offset != layout.exemplar_offset) {
    return bad("cell layout mismatch");
  }
  v.native = native;
  v.native_schema = r.native_schema;
  v.native_window = native ? r.native_window : 0;
  v.native_zero_threshold = r.native_zero_threshold;
  v.native_offset = layout.native_offset;
  v.exemplar_offset = layout.exemplar_offset;
  if (r.drop_cell < kSystemCells ||
      uint64_t{r.drop_cell} + kFamilyDropCells > region.layout().max_cells ||
      r.drop_cell % kCellsPerPage + kFamilyDropCells > kCellsPerPage) {
    return bad("drop cells out of range");
  }
  v.cells_per_series = r.cells_per_series;
  v.drop_cell = r.drop_cell;
  v.created_unix_ns = r.created_unix_ns;
  // The rules the client enforces, applied again: a hostile or buggy writer bypasses them.
  FamilySpec spec;
  spec.name = v.name;
  spec.help = v.help;
  spec.unit = v.unit;
  spec.type = v.type;
  spec.gauge_mode = v.type == MetricType::kGauge ? v.gauge_mode : GaugeMode::kLiveSum;
  spec.label_names = v.label_names;
  spec.bounds = v.bounds;
  spec.native = native;
  spec.native_schema = v.native_schema;
  spec.native_max_buckets = 2 * v.native_window;
  spec.native_zero_threshold = v.native_zero_threshold;
  spec.exemplars = v.exemplar_offset != 0;
  if (auto p = FamilySpecProblem(spec); !p.empty()) return bad(p);
  return v;
}

std::optional<SeriesView> ReadSeries(const Region& region, uint32_t index,
                                     std::span<const std::optional<FamilyView>> families,
                                     ReadProblem* problem) {
  auto bad = [&](std::string what) -> std::optional<SeriesView> {
    if (problem) problem->what = "series #" + std::to_string(index) + ": " + std::move(what);
    return std::nullopt;
  };
  const SeriesRecord* s = region.series(index);
  if (s == nullptr) return bad("index out of range");
  SeriesRecord r;
  std::memcpy(static_cast<void*>(&r), s, sizeof r);
  if (r.family >= families.size() || !families[r.family]) return bad("unknown or invalid family");
  const FamilyView& f = *families[r.family];
  if (r.cell_base < kSystemCells ||
      uint64_t{r.cell_base} + f.cells_per_series > region.layout().max_cells ||
      r.cell_base % kCellsPerPage + f.cells_per_series > kCellsPerPage) {
    return bad("cell range out of bounds");
  }
  SeriesView v;
  v.index = index;
  v.family = r.family;
  v.cell_base = r.cell_base;
  v.created_unix_ns = r.created_unix_ns;
  const auto n = static_cast<uint32_t>(f.label_names.size());
  const StringRef* refs = ArenaRefs(region, r.values_offset, n);
  if (n > 0 && refs == nullptr) return bad("label values outside the arena");
  for (uint32_t i = 0; i < n; ++i) {
    const StringRef ref = refs[i];
    if (ref.length > kMaxLabelValueBytes) return bad("label value too long");
    const char* p = region.arena(ref.offset, ref.length);
    if (p == nullptr) return bad("label value outside the arena");
    v.label_values.emplace_back(p, ref.length);
    if (auto u = Utf8Problem(v.label_values.back()); !u.empty())
      return bad("value of label " + f.label_names[i] + ": " + u);
  }
  return v;
}

}  // namespace shmetrics::shm
