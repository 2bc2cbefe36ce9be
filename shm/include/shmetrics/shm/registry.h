// The family and series registry inside a region: names, label sets and histogram bounds,
// interned once so every process uses the same series index and cell range.
//
// Writers (client processes) add records under the registry lock (RegistryLock); everybody reads
// published records without a lock. The reader half validates every offset, length and index
// against the region's layout: the gateway treats the region as untrusted input.
//
// Invariants: see layout.h (append-only, published by release stores of the counts).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "shmetrics/shm/layout.h"
#include "shmetrics/shm/region.h"

namespace shmetrics::shm {

// A registration that cannot be accepted: names the metric and what is wrong.
class RegistrationError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Prometheus names: metric [a-zA-Z_:][a-zA-Z0-9_:]*, label [a-zA-Z_][a-zA-Z0-9_]*; a "__" prefix is
// reserved for Prometheus itself. Return an empty string when valid, otherwise why not.
std::string MetricNameProblem(std::string_view name);
std::string LabelNameProblem(std::string_view name);
// Label values must be UTF-8 in every exposition format: empty when valid, else which byte is not.
std::string Utf8Problem(std::string_view s);

struct FamilySpec {
  std::string name;  // as given by the user: a counter's trailing "_total" is stripped on intern
  std::string help;
  std::string unit;  // optional; must be a suffix of the name (OpenMetrics)
  MetricType type = MetricType::kCounter;
  GaugeMode gauge_mode = GaugeMode::kLiveSum;
  std::vector<std::string> label_names;
  std::vector<double> bounds;   // histograms: strictly increasing, finite; +Inf is implicit
  uint32_t max_series = 10000;  // per-family cardinality cap; the first registration's value wins
  // Histograms: a native (exponential) part, optionally beside the classic buckets.
  bool native = false;
  int32_t native_schema = 3;          // starting resolution: 2^(2^-3) ~ 9% wide buckets
  uint32_t native_max_buckets = 160;  // per sign: max_buckets / 2 (as client_golang's default)
  double native_zero_threshold = 2.938735877055719e-39;  // 2^-128
  // Counters and classic histogram buckets keep the latest exemplar per writer.
  bool exemplars = false;
};

// The cell layout of one series of `spec`.
SeriesLayout SeriesLayoutOf(const FamilySpec& spec);

// What makes a normalised spec unacceptable (names, labels, bounds, reserved words, UTF-8), or ""
// when it is valid. The client checks it before registering, the gateway again on every record it
// reads: a record that breaks these rules would make Prometheus reject the whole scrape.
std::string FamilySpecProblem(const FamilySpec& normalised);
// Checks the spec with FamilySpecProblem; throws RegistrationError naming the metric. Returns the
// spec normalised (counter "_total" stripped).
FamilySpec NormaliseFamilySpec(FamilySpec spec);
// Every sample and family name a family puts into the expositions, all formats together: no two
// families of a region may share one.
std::vector<std::string> ExposedNames(std::string_view base, MetricType type);

enum class SeriesStatus { kOk, kFamilyFull, kRegionFull };

struct SeriesResult {
  SeriesStatus status = SeriesStatus::kOk;
  uint32_t index = 0;      // valid when kOk
  uint32_t cell_base = 0;  // valid when kOk
};

struct FamilyResult {
  bool ok = false;  // false: the region has no room for the family (counted, not thrown)
  uint32_t index = 0;
  uint32_t drop_cell = 0;
  uint32_t cells_per_series = 0;
  shm::SeriesLayout layout;
};

// Holds the region's registry lock: a process-local mutex (threads share the lock descriptor)
// plus the OFD lock on kRegistryLockByte. Throws RegistrationError if another process holds it
// past `timeout` (never blocks forever; a dead holder's lock is released by the kernel).
class RegistryLock {
 public:
  RegistryLock(const Region& region, int lock_fd, std::mutex& process_mutex,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~RegistryLock();
  RegistryLock(const RegistryLock&) = delete;
  RegistryLock& operator=(const RegistryLock&) = delete;

 private:
  std::unique_lock<std::mutex> local_;
  int fd_;
};

uint32_t HashSeries(uint32_t family, std::span<const std::string_view> values);

// Registration. Every mutating call requires the caller to hold RegistryLock.
class RegistryWriter {
 public:
  explicit RegistryWriter(const Region& region) : region_(region) {}

  // Finds the family by name or adds it. Throws RegistrationError if it exists with another
  // definition. Returns ok=false (and counts it) when the region has no room.
  FamilyResult FindOrAddFamily(const FamilySpec& normalised);

  // Finds or adds the series; never throws for capacity.
  SeriesResult FindOrAddSeries(uint32_t family, std::span<const std::string_view> values);

  // Lock-free lookup of an existing series (kOk or nullopt).
  std::optional<SeriesResult> FindSeries(uint32_t family, std::span<const std::string_view> values,
                                         uint32_t hash) const;

 private:
  std::optional<uint32_t> AllocString(std::string_view s);  // returns arena offset
  std::optional<uint32_t> AllocBytes(uint32_t bytes);       // 8-aligned
  void CopyToArena(uint32_t offset, const void* data, size_t bytes);
  bool SameDefinition(const FamilyRecord& f, const FamilySpec& spec) const;

  const Region& region_;
};

// --- Reading (gateway): validated, copied out. ---

struct FamilyView {
  uint32_t index = 0;
  std::string name;
  std::string help;
  std::string unit;
  MetricType type = MetricType::kCounter;
  GaugeMode gauge_mode = GaugeMode::kLiveSum;
  std::vector<std::string> label_names;
  std::vector<double> bounds;
  uint32_t cells_per_series = 0;
  uint32_t drop_cell = 0;
  uint64_t created_unix_ns = 0;
  bool native = false;
  int32_t native_schema = 0;
  uint32_t native_window = 0;
  double native_zero_threshold = 0;
  uint32_t native_offset = 0;
  uint32_t exemplar_offset = 0;  // 0: no exemplars
};

struct SeriesView {
  uint32_t index = 0;
  uint32_t family = 0;
  uint32_t cell_base = 0;
  std::vector<std::string> label_values;
  uint64_t created_unix_ns = 0;
};

// Decodes one published record, or explains why it is invalid (then the caller skips and counts
// it). `families` are the families already decoded, indexed by family index.
struct ReadProblem {
  std::string what;
};
std::optional<FamilyView> ReadFamily(const Region& region, uint32_t index, ReadProblem* problem);
std::optional<SeriesView> ReadSeries(const Region& region, uint32_t index,
                                     std::span<const std::optional<FamilyView>> families,
                                     ReadProblem* problem);

}  // namespace shmetrics::shm
