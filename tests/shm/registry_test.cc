#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <limits>
#include <mutex>

#include "shmetrics/shm/registry_reader.h"
#include "shmetrics/shm/registry_writer.h"
#include "test_region.h"

namespace shmetrics::shm {
namespace {

using testing::ScopedRegionName;
using testing::SmallOptions;

std::string RegistrationMessage(FamilySpec spec) {
  try {
    NormaliseFamilySpec(std::move(spec));
  } catch (const RegistrationError& e) {
    return e.what();
  }
  return "";
}

FamilySpec Counter(std::string name, std::vector<std::string> labels = {}) {
  FamilySpec s;
  s.name = std::move(name);
  s.help = "help";
  s.label_names = std::move(labels);
  return s;
}

TEST(NamesTest, MetricNameGrammar) {
  EXPECT_EQ(MetricNameProblem("http_requests:rate5m"), "");
  EXPECT_EQ(MetricNameProblem("_private"), "");
  EXPECT_NE(MetricNameProblem(""), "");
  EXPECT_NE(MetricNameProblem("1abc"), "");
  EXPECT_NE(MetricNameProblem("a-b"), "");
  EXPECT_NE(MetricNameProblem("a.b"), "");
  EXPECT_NE(MetricNameProblem("__reserved"), "");
  EXPECT_NE(LabelNameProblem("a:b"), "");
  EXPECT_EQ(LabelNameProblem("method"), "");
}

TEST(NormaliseTest, ErrorsNameTheMetricAndTheProblem) {
  EXPECT_NE(RegistrationMessage(Counter("bad-name")).find("\"bad-name\""), std::string::npos);
  EXPECT_NE(RegistrationMessage(Counter("ok", {"bad label"})).find("\"bad label\""),
            std::string::npos);
  EXPECT_NE(RegistrationMessage(Counter("ok", {"__x"})).find("reserves"), std::string::npos);
  EXPECT_NE(RegistrationMessage(Counter("ok", {"a", "a"})).find("twice"), std::string::npos);
  EXPECT_NE(RegistrationMessage(Counter("shmetrics_mine")).find("reserved"), std::string::npos);
  std::vector<std::string> many(kMaxLabels + 1);
  for (size_t i = 0; i < many.size(); ++i) many[i] = "l" + std::to_string(i);
  EXPECT_NE(RegistrationMessage(Counter("ok", many)).find("too many labels"), std::string::npos);
  FamilySpec h = Counter("latency_seconds", {"le"});
  h.type = MetricType::kHistogram;
  EXPECT_NE(RegistrationMessage(h).find("\"le\""), std::string::npos);
  h = Counter("latency_seconds");
  h.type = MetricType::kHistogram;
  h.bounds = {1, 0.5};
  EXPECT_NE(RegistrationMessage(h).find("increasing"), std::string::npos);
  h.bounds = {1, std::numeric_limits<double>::infinity()};
  EXPECT_NE(RegistrationMessage(h).find("finite"), std::string::npos);
  FamilySpec g = Counter("in_flight", {"pid"});
  g.type = MetricType::kGauge;
  g.gauge_mode = GaugeMode::kAll;
  EXPECT_NE(RegistrationMessage(g).find("\"pid\""), std::string::npos);
  FamilySpec u = Counter("size_bytes");
  u.unit = "seconds";
  EXPECT_NE(RegistrationMessage(u).find("suffix"), std::string::npos);
}

TEST(NormaliseTest, CounterTotalSuffixIsStripped) {
  EXPECT_EQ(NormaliseFamilySpec(Counter("requests_total")).name, "requests");
  EXPECT_EQ(NormaliseFamilySpec(Counter("requests")).name, "requests");
}

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    region_ = Region::OpenOrCreate(name_.name, SmallOptions());
    fd_ = region_->OpenLockDescriptor();
  }
  void TearDown() override { ::close(fd_); }
  FamilyResult AddFamily(const FamilySpec& spec) {
    RegistryLock lock(*region_, fd_, mu_);
    return RegistryWriter(*region_).FindOrAddFamily(NormaliseFamilySpec(spec));
  }
  SeriesResult AddSeries(uint32_t family, std::vector<std::string_view> values) {
    RegistryLock lock(*region_, fd_, mu_);
    return RegistryWriter(*region_).FindOrAddSeries(family, values);
  }

  ScopedRegionName name_{"registry"};
  std::unique_ptr<Region> region_;
  int fd_ = -1;
  std::mutex mu_;
};

TEST_F(RegistryTest, InternsSameFamilyAndSeriesOnce) {
  const FamilyResult a = AddFamily(Counter("requests_total", {"method"}));
  const FamilyResult b = AddFamily(Counter("requests", {"method"}));
  ASSERT_EQ(a.status, FamilyStatus::kOk);
  EXPECT_EQ(a.index, b.index);
  const SeriesResult s1 = AddSeries(a.index, {"GET"});
  const SeriesResult s2 = AddSeries(a.index, {"GET"});
  const SeriesResult s3 = AddSeries(a.index, {"POST"});
  EXPECT_EQ(s1.index, s2.index);
  EXPECT_EQ(s1.cell_base, s2.cell_base);
  EXPECT_NE(s1.index, s3.index);
  EXPECT_NE(s1.cell_base, s3.cell_base);
  EXPECT_EQ(region_->header().series_count.load(), 2u);
}

TEST_F(RegistryTest, ConflictingDefinitionIsRejectedWithBothDescribed) {
  ASSERT_EQ(AddFamily(Counter("jobs", {"queue"})).status, FamilyStatus::kOk);
  FamilySpec gauge = Counter("jobs", {"queue"});
  gauge.type = MetricType::kGauge;
  try {
    AddFamily(gauge);
    FAIL() << "expected RegistrationError";
  } catch (const RegistrationError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("\"jobs\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("counter"), std::string::npos) << msg;
  }
  EXPECT_THROW(AddFamily(Counter("jobs", {"other"})), RegistrationError);
  FamilySpec other_help = Counter("jobs", {"queue"});
  other_help.help = "different";
  EXPECT_THROW(AddFamily(other_help), RegistrationError);
}

TEST_F(RegistryTest, FamiliesThatWouldExposeTheSameNameClash) {
  ASSERT_EQ(AddFamily(Counter("jobs_total")).status,
            FamilyStatus::kOk);  // exposes jobs_total, jobs_created
  FamilySpec gauge = Counter("jobs_total");
  gauge.type = MetricType::kGauge;
  try {
    AddFamily(gauge);
    FAIL() << "expected RegistrationError";
  } catch (const RegistrationError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("\"jobs_total\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"jobs\""), std::string::npos) << msg;
  }
  FamilySpec hist = Counter("latency");
  hist.type = MetricType::kHistogram;
  ASSERT_EQ(AddFamily(hist).status, FamilyStatus::kOk);
  FamilySpec sum_gauge = Counter("latency_sum");
  sum_gauge.type = MetricType::kGauge;
  EXPECT_THROW(AddFamily(sum_gauge), RegistrationError);
  FamilySpec other = Counter("latency2");
  other.type = MetricType::kGauge;
  EXPECT_EQ(AddFamily(other).status, FamilyStatus::kOk);
}

TEST_F(RegistryTest, SeriesCellRangesNeverCrossAPage) {
  FamilySpec h = Counter("latency_seconds");
  h.type = MetricType::kHistogram;
  for (int i = 0; i < 100; ++i) h.bounds.push_back(i + 1);  // 102 cells per series
  ASSERT_EQ(AddFamily(h).status, FamilyStatus::kOk);
  FamilySpec labelled = h;
  labelled.name = "latency2_seconds";
  labelled.label_names = {"i"};
  const FamilyResult lf = AddFamily(labelled);
  for (int i = 0; i < 20; ++i) {
    const std::string v = std::to_string(i);
    const SeriesResult s = AddSeries(lf.index, {v});
    ASSERT_EQ(s.status, SeriesStatus::kOk);
    EXPECT_LE(s.cell_base % kCellsPerPage + lf.cells_per_series, kCellsPerPage) << i;
  }
}

TEST_F(RegistryTest, FamilyCapAndRegionFullAreReportedNotThrown) {
  FamilySpec capped = Counter("capped", {"id"});
  capped.max_series = 3;
  const FamilyResult f = AddFamily(capped);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(std::to_string(i));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(AddSeries(f.index, {ids[i]}).status, SeriesStatus::kOk);
  EXPECT_EQ(AddSeries(f.index, {ids[3]}).status, SeriesStatus::kFamilyFull);
  EXPECT_EQ(AddSeries(f.index, {ids[0]}).status, SeriesStatus::kOk);  // existing ones still resolve

  FamilySpec big = Counter("big", {"id"});
  big.max_series = 1u << 20;
  const FamilyResult b = AddFamily(big);
  SeriesStatus last = SeriesStatus::kOk;
  for (int i = 0; i < 2000 && last == SeriesStatus::kOk; ++i) {
    const std::string v = std::to_string(i);
    last = AddSeries(b.index, {v}).status;
  }
  EXPECT_EQ(last, SeriesStatus::kRegionFull);  // max_series is 1024 in SmallOptions
  EXPECT_GT(region_->header().registration_errors.load(), 0u);
}

// Another open file description holding the lock stands for another process: the wait is bounded
// and its failure is an environment error (RegionError), not a bad definition.
TEST_F(RegistryTest, LockHeldElsewhereTimesOutAsRegionError) {
  RegistryLock held(*region_, fd_, mu_);
  const int other_fd = region_->OpenLockDescriptor();
  std::mutex other_mu;
  try {
    RegistryLock lock(*region_, other_fd, other_mu, std::chrono::milliseconds(50));
    ADD_FAILURE() << "the lock was taken twice";
  } catch (const RegionError& e) {
    EXPECT_NE(std::string(e.what()).find("registry lock held by another process"),
              std::string::npos)
        << e.what();
  }
  ::close(other_fd);
}

TEST_F(RegistryTest, ReaderDecodesWhatWriterWrote) {
  FamilySpec h = Counter("latency_seconds", {"method"});
  h.type = MetricType::kHistogram;
  h.bounds = {0.1, 1, 10};
  h.help = "Latency with \"quotes\" and \\ and\nnewline";
  const FamilyResult f = AddFamily(h);
  AddSeries(f.index, {"GET"});
  ReadProblem problem;
  auto fv = ReadFamily(*region_, f.index, &problem);
  ASSERT_TRUE(fv) << problem.what;
  EXPECT_EQ(fv->name, "latency_seconds");
  EXPECT_EQ(fv->help, h.help);
  EXPECT_EQ(fv->bounds, h.bounds);
  EXPECT_EQ(fv->label_names, std::vector<std::string>{"method"});
  std::vector<std::optional<FamilyView>> families(1, fv);
  auto sv = ReadSeries(*region_, 0, families, &problem);
  ASSERT_TRUE(sv) << problem.what;
  EXPECT_EQ(sv->label_values, std::vector<std::string>{"GET"});
}

TEST_F(RegistryTest, ReaderRejectsHostileRecords) {
  const FamilyResult f = AddFamily(Counter("requests", {"method"}));
  AddSeries(f.index, {"GET"});
  FamilyRecord& rec = *region_->family(f.index);
  SeriesRecord& srec = *region_->series(0);
  ReadProblem problem;
  unsigned char saved[sizeof(FamilyRecord)];
  std::memcpy(saved, static_cast<void*>(&rec), sizeof saved);

  rec.name.length = 0xffffff00u;  // points past the arena
  EXPECT_FALSE(ReadFamily(*region_, f.index, &problem));
  EXPECT_NE(problem.what.find("arena"), std::string::npos) << problem.what;
  std::memcpy(static_cast<void*>(&rec), saved, sizeof rec);

  rec.type = static_cast<MetricType>(42);
  EXPECT_FALSE(ReadFamily(*region_, f.index, &problem));
  std::memcpy(static_cast<void*>(&rec), saved, sizeof rec);

  rec.label_count = 200;
  EXPECT_FALSE(ReadFamily(*region_, f.index, &problem));
  std::memcpy(static_cast<void*>(&rec), saved, sizeof rec);

  auto fv = ReadFamily(*region_, f.index, &problem);
  ASSERT_TRUE(fv);
  std::vector<std::optional<FamilyView>> families(1, fv);
  srec.cell_base = 0xfffffff0u;
  EXPECT_FALSE(ReadSeries(*region_, 0, families, &problem));
  srec.cell_base = 8;
  srec.family = 77;
  EXPECT_FALSE(ReadSeries(*region_, 0, families, &problem));
  EXPECT_FALSE(ReadSeries(*region_, 1u << 30, families, &problem));
}

// SeriesRecord::hash is written by one build and compared by another (a worker built last month,
// a gateway built today), so HashSeries is part of the layout: these golden values may change
// only together with kLayoutVersion.
TEST_F(RegistryTest, HashIsStableAndSeparatesFamilies) {
  static_assert(kLayoutVersion == 3, "new layout version: re-check the golden hashes below");
  using Values = std::vector<std::string_view>;
  const struct {
    uint32_t family;
    Values values;
    uint32_t hash;
  } golden[] = {
      {0, {}, 3046120654u},
      {1, {"GET", "200"}, 3348394905u},
      {2, {"GET", "200"}, 2427970396u},
      {1, {"200", "GET"}, 140690580u},
      {7, {"a-value-longer-than-eight-bytes", ""}, 3900878337u},
      {1048575, {"caf\xc3\xa9"}, 3446062600u},
  };
  for (const auto& g : golden) {
    EXPECT_EQ(HashSeries(g.family, g.values), g.hash)
        << "family " << g.family << ", " << g.values.size() << " values";
  }
  const Values v{"GET", "200"};
  EXPECT_NE(HashSeries(1, v), HashSeries(2, v));
  EXPECT_NE(HashSeries(1, v), HashSeries(1, Values{"200", "GET"}));
  EXPECT_NE(HashSeries(1, Values{"ab", "c"}), HashSeries(1, Values{"a", "bc"}));
}

// Found by region_reader_fuzz_test: only well-formed UTF-8 passes, as Go and Python
// decide it. Overlong forms, surrogates and code points above U+10FFFF were accepted before and
// reached the bodies, where Prometheus refuses them.
TEST(Utf8ProblemTest, AcceptsOnlyWellFormedUtf8) {
  for (std::string_view ok : {"", "plain", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf",
                              "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80",
                              "\xf4\x8f\xbf\xbf", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"}) {
    EXPECT_EQ(Utf8Problem(ok), "") << ::testing::PrintToString(std::string(ok));
  }
  for (std::string_view bad :
       {"\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf",
        "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
        "\xf7\xbf\xbf\xbf", "\xf8\x88\x80\x80\x80", "\xff", "\x80", "\xc3", "\xe2\x82", "a\xc3("}) {
    EXPECT_NE(Utf8Problem(bad), "") << ::testing::PrintToString(std::string(bad));
  }
}

}  // namespace
}  // namespace shmetrics::shm
