// What a family is, independent of any region: its spec, the rules its names, labels and values
// must follow, and the hash that places a series in the registry. Shared by the client (which
// checks a spec before registering it) and the gateway (which checks every record it reads).
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "shmetrics/shm/layout.h"

namespace shmetrics::shm {

// A registration that cannot be accepted: names the metric and what is wrong.
class RegistrationError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// `s` in double quotes, as error messages name metrics and labels.
std::string Quote(std::string_view s);

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

// The series' hash in the registry's table. Stable: separately built processes compare it.
uint32_t HashSeries(uint32_t family, std::span<const std::string_view> values);

}  // namespace shmetrics::shm
