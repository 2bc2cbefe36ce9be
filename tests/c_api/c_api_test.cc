// The C ABI in one process: every control-plane error is a negative errno with a message naming
// the metric or region, options structs of other sizes are handled as documented, and data-plane
// calls land in the cells the C++ client would write. Values are read back through
// client/cell_reader.h (shm/ only); what the gateway serves is in c_api_multiprocess_test.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "client/cell_reader.h"
#include "shmetrics/shmetrics_c.h"
#include "test_region.h"

namespace shmetrics {
namespace {

using testing::ScopedRegionName;

shmetrics_region_opts SmallRegion() {
  shmetrics_region_opts o = {};
  o.sz = sizeof o;
  o.size_bytes = 4u << 20;
  o.max_families = 64;
  o.max_series = 1024;
  o.max_slots = 16;
  o.max_cells = 8192;
  o.string_bytes = 64u << 10;
  return o;
}

shmetrics_family_opts Opts(const char* help) {
  shmetrics_family_opts o = {};
  o.sz = sizeof o;
  o.help = help;
  return o;
}

shmetrics_client* MustAttach(const std::string& region) {
  const shmetrics_region_opts ro = SmallRegion();
  shmetrics_client* c = nullptr;
  EXPECT_EQ(shmetrics_attach(region.c_str(), &ro, &c), 0) << shmetrics_last_error();
  return c;
}

std::string LastError() { return shmetrics_last_error(); }

TEST(CApiTest, ReportsItsAbiVersion) {
  EXPECT_EQ(shmetrics_abi_version(), SHMETRICS_ABI_VERSION);
  EXPECT_EQ(shmetrics_abi_version(), 1);
}

TEST(CApiTest, CountersAndHistogramsLandInTheirCells) {
  ScopedRegionName name("c-cells");
  shmetrics_client* c = MustAttach(name.name);
  const char* labels[] = {"kind"};
  shmetrics_family_opts o = Opts("Jobs.");
  o.label_count = 1;
  o.label_names = labels;
  shmetrics_family* jobs = nullptr;
  ASSERT_EQ(shmetrics_register(c, SHMETRICS_COUNTER, "c_jobs_total", &o, &jobs), 0) << LastError();
  const char* a[] = {"a"};
  shmetrics_counter* ja = nullptr;
  ASSERT_EQ(shmetrics_counter_labels(jobs, 1, a, nullptr, &ja), 0) << LastError();
  // With explicit lengths: "bx" cut to "b" is another series; "a" by length is the same one.
  const char* bx[] = {"bx"};
  const size_t one[] = {1};
  shmetrics_counter* jb = nullptr;
  ASSERT_EQ(shmetrics_counter_labels(jobs, 1, bx, one, &jb), 0) << LastError();
  shmetrics_counter* ja_again = nullptr;
  const char* ax[] = {"ax"};
  ASSERT_EQ(shmetrics_counter_labels(jobs, 1, ax, one, &ja_again), 0) << LastError();
  EXPECT_EQ(ja_again, ja);
  EXPECT_NE(jb, ja);

  const double bounds[] = {10, 100};
  shmetrics_family_opts ho = Opts("Sizes.");
  ho.bucket_count = 2;
  ho.buckets = bounds;
  shmetrics_family* sizes = nullptr;
  ASSERT_EQ(shmetrics_register(c, SHMETRICS_HISTOGRAM, "c_size_bytes", &ho, &sizes), 0)
      << LastError();
  shmetrics_histogram* h = nullptr;
  ASSERT_EQ(shmetrics_histogram_labels(sizes, 0, nullptr, nullptr, &h), 0) << LastError();
  shmetrics_family* summary_family = nullptr;
  ASSERT_EQ(shmetrics_register(c, SHMETRICS_SUMMARY, "c_wait_seconds", nullptr, &summary_family), 0)
      << LastError();
  shmetrics_summary* s = nullptr;
  ASSERT_EQ(shmetrics_summary_labels(summary_family, 0, nullptr, nullptr, &s), 0) << LastError();

  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        shmetrics_counter_inc(ja);
        shmetrics_histogram_observe(h, i % 2 ? 5 : 500);
        shmetrics_summary_observe(s, 0.5);
      }
    });
  }
  for (auto& t : threads) t.join();
  shmetrics_counter_add(jb, 2.5);
  shmetrics_counter_add(jb, -1);  // dropped and counted as an invalid value
  shmetrics_counter_add(jb, NAN);

  testing::CellReader r(name.name);
  EXPECT_EQ(r.Cell("c_jobs", {"a"}), 40000);
  EXPECT_EQ(r.Cell("c_jobs", {"b"}), 2.5);
  EXPECT_EQ(r.FamilyDrops("c_jobs", shm::kDropInvalidValue), 2);
  EXPECT_EQ(r.Cell("c_size_bytes", {}, 0), 20000);  // <= 10
  EXPECT_EQ(r.Cell("c_size_bytes", {}, 1), 0);      // <= 100
  EXPECT_EQ(r.Cell("c_size_bytes", {}, 2), 20000);  // +Inf
  EXPECT_EQ(r.Cell("c_size_bytes", {}, 3), 20000.0 * 5 + 20000.0 * 500);
  EXPECT_EQ(r.Cell("c_wait_seconds", {}, 0), 40000);
  EXPECT_EQ(r.Cell("c_wait_seconds", {}, 1), 20000);
}

TEST(CApiTest, SeriesOverTheFamilyCapAreDroppedAndCounted) {
  ScopedRegionName name("c-cap");
  shmetrics_client* c = MustAttach(name.name);
  const char* labels[] = {"id"};
  shmetrics_family_opts o = Opts("Capped.");
  o.label_count = 1;
  o.label_names = labels;
  o.max_series = 2;
  shmetrics_family* f = nullptr;
  ASSERT_EQ(shmetrics_register(c, SHMETRICS_COUNTER, "c_capped_total", &o, &f), 0) << LastError();
  for (const char* id : {"1", "2", "3", "4"}) {
    shmetrics_counter* k = nullptr;
    ASSERT_EQ(shmetrics_counter_labels(f, 1, &id, nullptr, &k), 0) << LastError();
    shmetrics_counter_inc(k);
  }
  testing::CellReader r(name.name);
  EXPECT_EQ(r.Cell("c_capped", {"1"}), 1);
  EXPECT_EQ(r.Cell("c_capped", {"2"}), 1);
  EXPECT_EQ(r.Cell("c_capped", {"3"}), -1);
  EXPECT_EQ(r.FamilyDrops("c_capped", shm::kDropSeriesLimit), 2);
}

TEST(CApiTest, InvalidNameIsEinvalNamingTheMetric) {
  ScopedRegionName name("c-badname");
  shmetrics_client* c = MustAttach(name.name);
  shmetrics_family* f = nullptr;
  EXPECT_EQ(shmetrics_register(c, SHMETRICS_COUNTER, "9lives", nullptr, &f), -EINVAL);
  EXPECT_NE(LastError().find("\"9lives\""), std::string::npos) << LastError();
  EXPECT_EQ(f, nullptr);
  const char* bad_label[] = {"__reserved"};
  shmetrics_family_opts o = Opts("Bad label.");
  o.label_count = 1;
  o.label_names = bad_label;
  EXPECT_EQ(shmetrics_register(c, SHMETRICS_GAUGE, "c_bad_label", &o, &f), -EINVAL);
  EXPECT_NE(LastError().find("c_bad_label"), std::string::npos) << LastError();
  EXPECT_EQ(shmetrics_register(c, 42, "c_no_such_type", nullptr, &f), -EINVAL);
  EXPECT_NE(LastError().find("c_no_such_type"), std::string::npos) << LastError();
  o = Opts("Bad mode.");
  o.gauge_mode = 11;
  EXPECT_EQ(shmetrics_register(c, SHMETRICS_GAUGE, "c_bad_mode", &o, &f), -EINVAL);
  EXPECT_NE(LastError().find("c_bad_mode"), std::string::npos) << LastError();
}

TEST(CApiTest, HistogramsWithExemplarsHoldAtMostTheAdvertisedBounds) {
  ScopedRegionName name("c-exbounds");
  shmetrics_client* c = MustAttach(name.name);
  const uint32_t most = shmetrics_max_exemplar_histogram_bounds();
  ASSERT_GT(most, 10u);  // room for prometheus_client's 14 default bounds
  std::vector<double> bounds;
  for (uint32_t i = 0; i <= most; ++i) bounds.push_back(i + 1.0);
  shmetrics_family_opts o = Opts("Bounds.");
  o.exemplars = 1;
  o.buckets = bounds.data();
  o.bucket_count = most;
  shmetrics_family* f = nullptr;
  EXPECT_EQ(shmetrics_register(c, SHMETRICS_HISTOGRAM, "c_most_bounds", &o, &f), 0) << LastError();
  o.bucket_count = most + 1;
  EXPECT_EQ(shmetrics_register(c, SHMETRICS_HISTOGRAM, "c_too_many_bounds", &o, &f), -EINVAL);
  EXPECT_NE(LastError().find("c_too_many_bounds"), std::string::npos) << LastError();
  o.exemplars = 0;  // the same bounds without exemplars fit
  EXPECT_EQ(shmetrics_register(c, SHMETRICS_HISTOGRAM, "c_too_many_bounds", &o, &f), 0)
      << LastError();
}

TEST(CApiTest, ConflictingReRegistrationIsEinvalAndTheSameOneIsTheSameFamily) {
  ScopedRegionName name("c-conflict");
  shmetrics_client* c = MustAttach(name.name);
  shmetrics_family_opts o = Opts("Orders.");
  shmetrics_family* first = nullptr;
  ASSERT_EQ(shmetrics_register(c, SHMETRICS_COUNTER, "c_orders_total", &o, &first), 0)
      << LastError();
  shmetrics_family* again = nullptr;
  ASSERT_EQ(shmetrics_register(c, SHMETRICS_COUNTER, "c_orders_total", &o, &again), 0)
      << LastError();
  EXPECT_EQ(again, first);
  shmetrics_family* other = nullptr;
  EXPECT_EQ(shmetrics_register(c, SHMETRICS_GAUGE, "c_orders_total", &o, &other), -EINVAL);
  EXPECT_NE(LastError().find("c_orders_total"), std::string::npos) << LastError();
  o.help = "Other help.";
  EXPECT_EQ(shmetrics_register(c, SHMETRICS_COUNTER, "c_orders_total", &o, &other), -EINVAL);
  EXPECT_NE(LastError().find("already registered"), std::string::npos) << LastError();
  // A family handle of one type does not resolve series of another.
  shmetrics_gauge* g = nullptr;
  EXPECT_EQ(shmetrics_gauge_labels(first, 0, nullptr, nullptr, &g), -EINVAL);
  EXPECT_NE(LastError().find("is a counter, not a gauge"), std::string::npos) << LastError();
  EXPECT_EQ(g, nullptr);
}

TEST(CApiTest, WrongLabelCountIsEinvalNamingTheLabels) {
  ScopedRegionName name("c-labels");
  shmetrics_client* c = MustAttach(name.name);
  const char* labels[] = {"method", "code"};
  shmetrics_family_opts o = Opts("Requests.");
  o.label_count = 2;
  o.label_names = labels;
  shmetrics_family* f = nullptr;
  ASSERT_EQ(shmetrics_register(c, SHMETRICS_COUNTER, "c_requests_total", &o, &f), 0) << LastError();
  const char* one[] = {"GET"};
  shmetrics_counter* k = nullptr;
  EXPECT_EQ(shmetrics_counter_labels(f, 1, one, nullptr, &k), -EINVAL);
  EXPECT_NE(LastError().find("expected 2 label values (method, code), got 1"), std::string::npos)
      << LastError();
  EXPECT_NE(LastError().find("c_requests"), std::string::npos) << LastError();
  const char* with_null[] = {"GET", nullptr};
  EXPECT_EQ(shmetrics_counter_labels(f, 2, with_null, nullptr, &k), -EINVAL);
  EXPECT_NE(LastError().find("NULL"), std::string::npos) << LastError();
  const char* not_utf8[] = {"GET", "\xff"};
  EXPECT_EQ(shmetrics_counter_labels(f, 2, not_utf8, nullptr, &k), -EINVAL);
  EXPECT_NE(LastError().find("\"code\""), std::string::npos) << LastError();
  EXPECT_EQ(k, nullptr);
}

TEST(CApiTest, RegionThatCannotBeOpenedNamesItWithAnErrno) {
  ScopedRegionName name("c-notregular");
  const std::string path = "/dev/shm/" + name.name;
  ASSERT_EQ(::mkdir(path.c_str(), 0700), 0) << std::strerror(errno);
  shmetrics_region_opts ro = SmallRegion();
  ro.creator_wait_ms = -1;
  shmetrics_client* c = nullptr;
  const int rc = shmetrics_attach(name.name.c_str(), &ro, &c);
  ::rmdir(path.c_str());
  EXPECT_EQ(rc, -EEXIST) << LastError();
  EXPECT_NE(LastError().find(name.name), std::string::npos) << LastError();
  EXPECT_EQ(c, nullptr);
  // A name the operating system rejects outright.
  EXPECT_LT(shmetrics_attach("no/slashes", &ro, &c), 0);
  EXPECT_NE(LastError().find("no/slashes"), std::string::npos) << LastError();
  EXPECT_EQ(shmetrics_attach(nullptr, &ro, &c), -EINVAL);
}

TEST(CApiTest, OptionsStructsOfOtherSizesAreHandledAsDocumented) {
  ScopedRegionName name("c-sizes");
  shmetrics_client* c = MustAttach(name.name);
  // Larger, from a newer header: accepted while the fields this library does not know are zero.
  struct Newer {
    shmetrics_family_opts known;
    uint64_t future;
  } newer = {};
  newer.known = Opts("Newer.");
  newer.known.sz = sizeof newer;
  shmetrics_family* f = nullptr;
  EXPECT_EQ(shmetrics_register(c, SHMETRICS_COUNTER, "c_newer_total", &newer.known, &f), 0)
      << LastError();
  newer.future = 1;
  EXPECT_EQ(shmetrics_register(c, SHMETRICS_COUNTER, "c_newest_total", &newer.known, &f), -EINVAL);
  EXPECT_NE(LastError().find("c_newest_total"), std::string::npos) << LastError();
  EXPECT_NE(LastError().find("non-zero field at byte " + std::to_string(sizeof(newer.known))),
            std::string::npos)
      << LastError();
  // Smaller, from an older header: the fields it does not have take their defaults. Here it
  // knows only sz and help, so the label names it "passes" past its size are ignored.
  shmetrics_family_opts older = Opts("Older.");
  const char* ignored[] = {"x"};
  older.label_count = 1;
  older.label_names = ignored;
  older.sz = offsetof(shmetrics_family_opts, unit);
  shmetrics_family* old_family = nullptr;
  ASSERT_EQ(shmetrics_register(c, SHMETRICS_COUNTER, "c_older_total", &older, &old_family), 0)
      << LastError();
  shmetrics_counter* k = nullptr;
  EXPECT_EQ(shmetrics_counter_labels(old_family, 0, nullptr, nullptr, &k), 0) << LastError();
  older.sz = 2;
  EXPECT_EQ(shmetrics_register(c, SHMETRICS_COUNTER, "c_oldest_total", &older, &f), -EINVAL);
  EXPECT_NE(LastError().find("sz is 2"), std::string::npos) << LastError();
}

TEST(CApiTest, TheLastErrorIsPerThread) {
  ScopedRegionName name("c-tls");
  shmetrics_client* c = MustAttach(name.name);
  shmetrics_family* f = nullptr;
  ASSERT_EQ(shmetrics_register(c, SHMETRICS_COUNTER, "1st", nullptr, &f), -EINVAL);
  std::string other;
  std::thread([&] {
    other = shmetrics_last_error();
    shmetrics_family* g = nullptr;
    shmetrics_register(c, SHMETRICS_COUNTER, "2nd", nullptr, &g);
  }).join();
  EXPECT_EQ(other, "");
  EXPECT_NE(LastError().find("1st"), std::string::npos) << LastError();
}

}  // namespace
}  // namespace shmetrics
