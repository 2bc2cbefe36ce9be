// RegionReader against data-loss and hostile-region defects: updates lost when a writer registers
// series and dies between the reader's registry refresh and its liveness probe, native histograms
// that wrote outside their block, and hostile region bytes (wild native indices, pages_used = 0,
// seqlocks left odd, records that break the client's rules) that must give counted skips, never a
// crash, a hang or a body that Prometheus rejects.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "exposition.h"
#include "format_test_support.h"
#include "region_reader.h"
#include "shmetrics/shm/native_histogram.h"
#include "shmetrics/shmetrics.h"
#include "test_region.h"

namespace shmetrics::gateway {
namespace {

using shmetrics::testing::ScopedRegionName;
using shmetrics::testing::SmallOptions;

// "p3" and the like; built with append, which GCC 12's -Wrestrict does not misread as
// "p" + std::to_string(i) once inlined into these tests.
std::string Value(const char* prefix, int i) {
  return std::string(prefix).append(std::to_string(i));
}

// Runs `body` in a forked child that then exits; waits for it.
template <typename F>
void InDyingChild(F&& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    body();
    _exit(0);
  }
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
}

// The served value of cell `offset` of series {label=value} of family `name`, or NaN if absent.
double Served(RegionReader& reader, const Snapshot& snap, const std::string& name,
              const std::string& value, uint32_t offset = 0) {
  for (const FamilyInfo& f : reader.families()) {
    if (f.view.name != name) continue;
    for (uint32_t si : f.series) {
      const SeriesInfo& s = reader.series()[si];
      if (s.view.label_values == std::vector<std::string>{value})
        return snap.cells[s.view.cell_base + offset];
    }
  }
  return NAN;
}

// Index into reader.series() (and the snapshot's per-series vectors) of a served series.
size_t IndexOf(RegionReader& reader, const SeriesInfo* s) {
  return static_cast<size_t>(s - reader.series().data());
}

const SeriesInfo* FindSeries(RegionReader& reader, const std::string& name,
                             const std::string& value) {
  for (const FamilyInfo& f : reader.families()) {
    if (f.view.name != name) continue;
    for (uint32_t si : f.series) {
      if (reader.series()[si].view.label_values == std::vector<std::string>{value})
        return &reader.series()[si];
    }
  }
  return nullptr;
}

// --- 1. Updates lost -------------------------------------------------------------------------

// A process registers brand-new series after the reader's refresh, increments them and dies
// before the liveness probe. Before the fix the fold skipped the cells its cached registry did
// not know, then zeroed the slot: the increments were gone and no counter said so.
TEST(RegionReaderReliabilityTest, SeriesRegisteredByAProcessThatDiesAfterTheRefreshAreFolded) {
  ScopedRegionName name("newseries");
  Client& client = Client::Attach(name.name, SmallOptions());
  auto& family = BuildCounter().Name("late_total").Help("L.").Labels({"k"}).Register(client);
  ReaderOptions options;
  int round = 0;
  options.before_liveness_probe = [&] {
    if (round++ != 1) return;  // the first reap is the constructor's
    InDyingChild([&] {
      for (int i = 0; i < 5; ++i) family.Add({Value("p", i)}).Add(i + 1);
    });
  };
  RegionReader reader(shm::Region::Open(name.name), options);
  Snapshot snap;
  reader.Collect(snap);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Served(reader, snap, "late", Value("p", i)), i + 1);
  EXPECT_EQ(snap.folded_workers, 1u);
}

// The same for a thread that exits normally (its slot is released, the process lives on).
TEST(RegionReaderReliabilityTest, SeriesRegisteredByAThreadThatExitsAfterTheRefreshAreFolded) {
  ScopedRegionName name("newseries-thread");
  Client& client = Client::Attach(name.name, SmallOptions());
  auto& family = BuildCounter().Name("late_total").Help("L.").Labels({"k"}).Register(client);
  family.Add({"main"}).Inc();  // the main thread takes the process's slot, which never folds
  ReaderOptions options;
  int round = 0;
  options.before_liveness_probe = [&] {
    if (round++ != 1) return;
    std::thread([&] {
      for (int i = 0; i < 5; ++i) family.Add({Value("t", i)}).Add(10 * (i + 1));
    }).join();
  };
  RegionReader reader(shm::Region::Open(name.name), options);
  Snapshot snap;
  reader.Collect(snap);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Served(reader, snap, "late", Value("t", i)), 10 * (i + 1));
  }
  EXPECT_EQ(snap.folded_writers, 1u);
}

// Two writers observe values so far apart that even kMinSchema cannot hold both in the window.
// Before the fix the fold's Encode wrote them before the block: into the classic cells of the
// series (the _count became the bits of 1.0) or of the series before it.
void CheckFarApartValues(double zero_threshold, double low, double high) {
  ScopedRegionName name("native-far");
  Client& client = Client::Attach(name.name, SmallOptions());
  auto& h = BuildHistogram()
                .Name("far_seconds")
                .Help("F.")
                .Labels({"k"})
                .Native(3, 2, zero_threshold)
                .Register(client);
  h.Add({"never"});  // registered first: its cells sit just before the observed series' cells
  auto& observed = h.Add({"observed"});
  InDyingChild([&] { observed.Observe(low); });
  InDyingChild([&] { observed.Observe(high); });
  RegionReader reader(shm::Region::Open(name.name));
  Snapshot snap;
  reader.Collect(snap);
  const SeriesInfo* s = FindSeries(reader, "far_seconds", "observed");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(Served(reader, snap, "far_seconds", "observed", 0), 2);  // +Inf bucket = _count
  EXPECT_EQ(Served(reader, snap, "far_seconds", "never", 0), 0);
  EXPECT_EQ(Served(reader, snap, "far_seconds", "never", 1), 0);  // sum
  ASSERT_TRUE(snap.native.at(IndexOf(reader, s)).has_value());
  const shm::native::Sparse& n = *snap.native[IndexOf(reader, s)];
  double total = n.zero_count;
  for (auto [k, v] : n.positive) total += v;
  for (auto [k, v] : n.negative) total += v;
  EXPECT_EQ(total, 2) << "native buckets must keep every count";
  // And the body a strict parser reads: _count 2, never-observed series 0.
  std::string body;
  AppendExposition(Format::kOpenMetrics, reader, snap, body);
  const auto parsed = testing::ParseOpenMetricsStrictly(body);
  ASSERT_TRUE(parsed.ok) << parsed.error << "\n" << body;
  EXPECT_EQ(parsed.samples.at(testing::SeriesKey("far_seconds_count", {{"k", "observed"}})), 2);
  EXPECT_EQ(parsed.samples.at(testing::SeriesKey("far_seconds_count", {{"k", "never"}})), 0);
}

TEST(RegionReaderReliabilityTest, NativeValuesFarApartKeepTheirCountsAndTouchNoOtherCell) {
  CheckFarApartValues(2.938735877055719e-39, 1e-30, 1e30);
  CheckFarApartValues(0, 1e-300, 1e300);
}

// "Counts are never lost, only resolution", for any values and any max_buckets: random finite
// values (both signs, tiny to huge, zeros) from several dying writers, merged at the gateway.
TEST(RegionReaderReliabilityTest, NativeCountsAreNeverLostForAnyValuesAndWindow) {
  std::mt19937_64 rng(8);
  for (uint32_t max_buckets : {2u, 3u, 4u, 8u, 17u, 160u}) {
    ScopedRegionName name("native-any");
    Client& client = Client::Attach(name.name, SmallOptions());
    auto& h = BuildHistogram()
                  .Name("any_seconds")
                  .Help("A.")
                  .Labels({"k"})
                  .Native(static_cast<int32_t>(rng() % 13) - 4, max_buckets, 0)
                  .Register(client);
    h.Add({"before"});
    auto& s = h.Add({"s"});
    h.Add({"after"});
    uint64_t observed = 0;
    for (int writer = 0; writer < 4; ++writer) {
      std::vector<double> values;
      for (int i = 0; i < 50; ++i) {
        const double mag = std::ldexp(1.0 + static_cast<double>(rng() % 1000) / 1000,
                                      static_cast<int>(rng() % 2040) - 1020);
        values.push_back(rng() % 10 == 0 ? 0.0 : (rng() % 2 ? mag : -mag));
      }
      observed += values.size();
      InDyingChild([&] {
        for (double v : values) s.Observe(v);
      });
    }
    RegionReader reader(shm::Region::Open(name.name));
    Snapshot snap;
    reader.Collect(snap);
    const SeriesInfo* info = FindSeries(reader, "any_seconds", "s");
    ASSERT_NE(info, nullptr);
    ASSERT_TRUE(snap.native.at(IndexOf(reader, info)).has_value()) << "max_buckets " << max_buckets;
    const shm::native::Sparse& n = *snap.native[IndexOf(reader, info)];
    double total = n.zero_count;
    for (auto [k, v] : n.positive) total += v;
    for (auto [k, v] : n.negative) total += v;
    EXPECT_EQ(total, static_cast<double>(observed)) << "max_buckets " << max_buckets;
    EXPECT_EQ(Served(reader, snap, "any_seconds", "s", 0), static_cast<double>(observed));
    for (const char* other : {"before", "after"}) {
      EXPECT_EQ(Served(reader, snap, "any_seconds", other, 0), 0) << other;
      const SeriesInfo* o = FindSeries(reader, "any_seconds", other);
      ASSERT_NE(o, nullptr);
      EXPECT_FALSE(snap.native.at(IndexOf(reader, o)).has_value()) << other;
    }
    EXPECT_EQ(reader.stats().corrupt_slots, 0u);
    EXPECT_EQ(reader.stats().corrupt_blocks, 0u);
  }
}

// --- 2. Hostile region bytes -----------------------------------------------------------------

// A child that observes into native histogram series, then waits until told to exit; the test
// scribbles on its blocks meanwhile.
struct LiveNativeWriter {
  explicit LiveNativeWriter(Family<Histogram>& family, int series) {
    int ready[2], go[2];
    EXPECT_EQ(::pipe(ready), 0);
    EXPECT_EQ(::pipe(go), 0);
    pid = ::fork();
    if (pid == 0) {
      for (int i = 0; i < series; ++i) family.Add({std::to_string(i)}).Observe(1.5 + i);
      char c = 'r';
      (void)!::write(ready[1], &c, 1);
      (void)!::read(go[0], &c, 1);
      _exit(0);
    }
    char c;
    EXPECT_EQ(::read(ready[0], &c, 1), 1);
    ::close(ready[0]);
    ::close(ready[1]);
    ::close(go[0]);
    go_fd = go[1];
  }
  void Exit() {
    if (pid <= 0) return;
    char c = 'x';
    (void)!::write(go_fd, &c, 1);
    ::close(go_fd);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }
  ~LiveNativeWriter() { Exit(); }
  pid_t pid = -1;
  int go_fd = -1;
};

// The live slot's native block of series `value` (the reader must already know the series).
shm::Cell* BlockOf(RegionReader& reader, shm::Region& region, uint32_t slot,
                   const std::string& value) {
  const SeriesInfo* s = FindSeries(reader, "nh_seconds", value);
  if (s == nullptr) return nullptr;
  const FamilyInfo& f = reader.families()[0];
  const uint32_t cell = s->view.cell_base;
  shm::Cell* page = region.page(region.directory(slot)[cell / shm::kCellsPerPage].load());
  return page == nullptr ? nullptr : page + cell % shm::kCellsPerPage + f.view.native_offset;
}

uint32_t LiveSlot(const shm::Region& r) {
  for (uint32_t i = 0; i < r.layout().max_slots; ++i) {
    if (r.slot(i)->state.load() == static_cast<uint32_t>(shm::SlotState::kActive)) return i;
  }
  return ~0u;
}

// Out-of-range window offsets (INT32_MIN, INT32_MAX) and huge schema cells, in a live writer's
// block and then in the accumulator bank: every scrape and fold survives, the block is skipped
// and counted. Before the fix Encode wrote out of bounds (only one side of its index was checked)
// and a huge schema cell overflowed a signed subtraction.
TEST(RegionReaderReliabilityTest, WildNativeIndicesAreSkippedAndCounted) {
  const std::vector<std::pair<uint64_t, uint64_t>> damage = {
      {shm::native::kSchemaBias + 3, uint64_t{0x80000000u}},  // first positive index INT32_MIN
      {shm::native::kSchemaBias + 3, uint64_t{0x7fffffffu}},  // INT32_MAX
      {shm::native::kSchemaBias + 3, uint64_t{0x80000000u} << 32},
      {0x8000000000000000ull, 0},  // huge schema cell
      {0xffffffffull, 0},
  };
  for (auto [schema_cell, offsets] : damage) {
    ScopedRegionName name("native-wild");
    Client& client = Client::Attach(name.name, SmallOptions());
    auto& h =
        BuildHistogram().Name("nh_seconds").Help("N.").Labels({"k"}).Native().Register(client);
    RegionReader reader(shm::Region::Open(name.name));
    {
      LiveNativeWriter writer(h, 2);
      Snapshot snap;
      reader.Collect(snap);
      auto region = shm::Region::Open(name.name);
      const uint32_t slot = LiveSlot(*region);
      ASSERT_NE(slot, ~0u);
      shm::Cell* block = BlockOf(reader, *region, slot, "0");
      ASSERT_NE(block, nullptr);
      block[1].store(schema_cell);
      block[2].store(offsets);
      reader.Collect(snap);  // live merge
      writer.Exit();
      reader.Collect(snap);  // fold of the dead writer's corrupt block
      EXPECT_EQ(Served(reader, snap, "nh_seconds", "1", 0), 1) << "the valid series still counts";
    }
    EXPECT_GT(reader.stats().corrupt_blocks, 0u);
    EXPECT_EQ(reader.stats().corrupt_slots, 0u) << "a bad block is not a bad slot";
    // The same damage in the active accumulator bank, then another writer dies into it.
    {
      auto region = shm::Region::Open(name.name);
      const uint32_t bank = region->layout().bank_slot(region->header().fold_commit.load() & 1);
      shm::Cell* block = BlockOf(reader, *region, bank, "1");
      ASSERT_NE(block, nullptr);
      block[1].store(schema_cell);
      block[2].store(offsets);
    }
    InDyingChild([&] { h.Add({"1"}).Observe(3); });
    Snapshot snap;
    reader.Collect(snap);
    reader.Collect(snap);
    EXPECT_EQ(Served(reader, snap, "nh_seconds", "1", 0), 2);
    std::string body;
    AppendExposition(Format::kOpenMetrics, reader, snap, body);
    const auto parsed = testing::ParseOpenMetricsStrictly(body);
    EXPECT_TRUE(parsed.ok) << parsed.error << "\n" << body;
  }
}

// pages_used scribbled to 0, then a writer dies: before the fix the fold took page 0 (kNoPage)
// for the accumulator bank and dereferenced a null cell pointer.
TEST(RegionReaderReliabilityTest, PagesUsedZeroDoesNotCrashTheFold) {
  ScopedRegionName name("pages0");
  Client& client = Client::Attach(name.name, SmallOptions());
  auto& c = BuildCounter().Name("c_total").Help("C.").Register(client);
  RegionReader reader(shm::Region::Open(name.name));
  {
    auto region = shm::Region::Open(name.name);
    region->header().pages_used.store(0);
  }
  InDyingChild([&] { c.Get().Add(4); });
  Snapshot snap;
  reader.Collect(snap);
  reader.Collect(snap);
  EXPECT_EQ(snap.cells[reader.series().at(0).view.cell_base], 4);
}

// Seqlocks left odd in many blocks (a writer killed mid-update, or hostile): before the fix each
// torn block cost a scrape ~100-200 ms of retries, so 160 of them made every scrape take 15-30 s.
// The time a scrape spends on torn blocks is bounded now; they are skipped and counted.
TEST(RegionReaderReliabilityTest, OddSeqlocksCostAScrapeBoundedTime) {
  ScopedRegionName name("torn");
  shm::RegionOptions o = SmallOptions();
  o.max_cells = 1u << 16;  // 160 series of 55 cells
  Client& client = Client::Attach(name.name, o);
  auto& h = BuildHistogram()
                .Name("nh_seconds")
                .Help("N.")
                .Labels({"k"})
                .Buckets({1})
                .Native(3, 8)
                .Exemplars()
                .Register(client);
  constexpr int kSeries = 160;
  RegionReader reader(shm::Region::Open(name.name));
  LiveNativeWriter writer(h, kSeries);
  Snapshot snap;
  reader.Collect(snap);
  auto region = shm::Region::Open(name.name);
  const uint32_t slot = LiveSlot(*region);
  ASSERT_NE(slot, ~0u);
  const FamilyInfo& f = reader.families()[0];
  for (int i = 0; i < kSeries; ++i) {
    shm::Cell* block = BlockOf(reader, *region, slot, std::to_string(i));
    ASSERT_NE(block, nullptr);
    block[0].store(1);  // native seqlock odd
    shm::Cell* exemplar = block - f.view.native_offset + f.view.exemplar_offset;
    exemplar[0].store(3);  // and the exemplar block's
  }
  const auto start = std::chrono::steady_clock::now();
  reader.Collect(snap);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 2.0) << "a scrape over " << kSeries << " torn blocks took " << seconds << " s";
  EXPECT_GE(reader.stats().torn_reads, static_cast<uint64_t>(kSeries));
  // Classic counts are not behind a seqlock: they are still served.
  EXPECT_EQ(Served(reader, snap, "nh_seconds", "0", 1), 1);
}

// Exemplar label bytes that do not decode, in a live writer's block: the exemplar is skipped and
// counted as a bad block (not a bad slot), and the counter's value is still served.
TEST(RegionReaderReliabilityTest, InvalidExemplarLabelsAreSkippedAndCountedAsBadBlocks) {
  ScopedRegionName name("exlabels");
  Client& client = Client::Attach(name.name, SmallOptions());
  Counter& counter = BuildCounter().Name("e_total").Help("E.").Exemplars().Register(client).Get();
  counter.Add(1, {{"trace_id", "t"}});
  RegionReader reader(shm::Region::Open(name.name));
  Snapshot snap;
  reader.Collect(snap);
  const SeriesInfo& s = reader.series().at(0);
  ASSERT_TRUE(snap.exemplars.at(0).at(0).present);
  auto region = shm::Region::Open(name.name);
  const uint32_t slot = LiveSlot(*region);
  ASSERT_NE(slot, ~0u);
  shm::Cell* page =
      region->page(region->directory(slot)[s.view.cell_base / shm::kCellsPerPage].load());
  ASSERT_NE(page, nullptr);
  shm::Cell* exemplar =
      page + s.view.cell_base % shm::kCellsPerPage + reader.families()[0].view.exemplar_offset;
  exemplar[3].store(shm::kExemplarLabelBytes + 1);  // more label bytes used than the block holds
  reader.Collect(snap);
  EXPECT_FALSE(snap.exemplars.at(0).at(0).present);
  EXPECT_EQ(snap.cells[s.view.cell_base], 1);
  EXPECT_EQ(reader.stats().corrupt_blocks, 1u);
  EXPECT_EQ(reader.stats().corrupt_slots, 0u);
}

// Records that pass the structural checks but break the rules the client enforces. One such
// record made Prometheus reject the whole scrape; now each is skipped and counted, and the rest
// of the body parses.
struct Damage {
  const char* what;
  std::function<void(Client&)> build;
  std::function<void(shm::Region&)> damage;
  std::vector<std::string> gone;  // families that must not be served
  size_t series = 0;              // series served afterwards
};

char* ArenaBytes(shm::Region& r, shm::StringRef ref) {
  return r.mutable_arena(ref.offset, ref.length);
}
shm::StringRef LabelName(shm::Region& r, uint32_t family, uint32_t i) {
  shm::StringRef ref;
  std::memcpy(&ref, r.arena(r.family(family)->labels_offset + i * 8, 8), 8);
  return ref;
}
shm::StringRef LabelValue(shm::Region& r, uint32_t series, uint32_t i) {
  shm::StringRef ref;
  std::memcpy(&ref, r.arena(r.series(series)->values_offset + i * 8, 8), 8);
  return ref;
}

TEST(RegionReaderReliabilityTest, RecordsBreakingClientRulesAreSkippedAndCounted) {
  const std::vector<Damage> cases = {
      {"invalid UTF-8 in help",
       [](Client& c) { BuildCounter().Name("a_total").Help("Help.").Register(c).Get().Inc(); },
       [](shm::Region& r) { ArenaBytes(r, r.family(0)->help)[0] = '\xff'; },
       {"a"},
       0},
      {"invalid UTF-8 in a label value",
       [](Client& c) {
         auto& f = BuildCounter().Name("a_total").Help("A.").Labels({"k"}).Register(c);
         f.Add({"ok"}).Inc();
         f.Add({"xx"}).Inc();
       },
       [](shm::Region& r) { ArenaBytes(r, LabelValue(r, 1, 0))[0] = '\xc3'; },
       {},
       1},
      {"duplicate label names",
       [](Client& c) {
         BuildCounter()
             .Name("a_total")
             .Help("A.")
             .Labels({"k", "j"})
             .Register(c)
             .Add({"1", "2"})
             .Inc();
       },
       [](shm::Region& r) { ArenaBytes(r, LabelName(r, 0, 1))[0] = 'k'; },
       {"a"},
       0},
      {"le on a histogram",
       [](Client& c) {
         BuildHistogram()
             .Name("h")
             .Help("H.")
             .Labels({"lx"})
             .Buckets({1})
             .Register(c)
             .Add({"1"})
             .Observe(1);
       },
       [](shm::Region& r) { ArenaBytes(r, LabelName(r, 0, 0))[1] = 'e'; },
       {"h"},
       0},
      {"pid in a per-worker gauge",
       [](Client& c) {
         BuildGauge()
             .Name("g")
             .Help("G.")
             .Labels({"pix"})
             .Mode(GaugeMode::kAll)
             .Register(c)
             .Add({"1"})
             .Set(1);
       },
       [](shm::Region& r) { ArenaBytes(r, LabelName(r, 0, 0))[2] = 'd'; },
       {"g"},
       0},
      {"a gauge x_total beside a counter x",
       [](Client& c) {
         BuildCounter().Name("x_total").Help("X.").Register(c).Get().Inc();
         BuildGauge().Name("x_totax").Help("G.").Register(c).Get().Set(2);
       },
       [](shm::Region& r) { ArenaBytes(r, r.family(1)->name)[6] = 'l'; },
       {"x_total"},
       1},
      {"a counter named like another family's _sum",
       [](Client& c) {
         BuildHistogram().Name("h").Help("H.").Buckets({1}).Register(c).Get().Observe(1);
         BuildCounter().Name("h_sux_total").Help("X.").Register(c).Get().Inc();
       },
       [](shm::Region& r) { ArenaBytes(r, r.family(1)->name)[4] = 'm'; },
       {"h_sum"},
       1},
      {"the same series twice",
       [](Client& c) {
         auto& f = BuildCounter().Name("a_total").Help("A.").Labels({"k"}).Register(c);
         f.Add({"v1"}).Inc();
         f.Add({"v2"}).Add(5);
       },
       [](shm::Region& r) { ArenaBytes(r, LabelValue(r, 1, 0))[1] = '1'; },
       {},
       1},
  };
  for (const Damage& d : cases) {
    SCOPED_TRACE(d.what);
    ScopedRegionName name("rules");
    {
      auto region = shm::Region::OpenOrCreate(name.name, SmallOptions());
      InDyingChild([&] { d.build(Client::Attach(name.name)); });
      d.damage(*region);
    }
    RegionReader reader(shm::Region::Open(name.name));
    Snapshot snap;
    reader.Collect(snap);
    EXPECT_GE(reader.stats().corrupt_records, 1u);
    for (const std::string& gone : d.gone) {
      for (const FamilyInfo& f : reader.families()) EXPECT_NE(f.view.name, gone);
    }
    size_t series = 0;
    for (const FamilyInfo& f : reader.families()) series += f.series.size();
    std::string body;
    AppendExposition(Format::kOpenMetrics, reader, snap, body);
    const auto parsed = testing::ParseOpenMetricsStrictly(body);
    EXPECT_TRUE(parsed.ok) << parsed.error << "\n" << body;
    EXPECT_EQ(series, d.series);
  }
}

// Summary.Observe(NaN) through the API: the sum becomes NaN, which OpenMetrics forbids for a
// summary's _sum (the strict parser rejects the whole body). The _sum is left out; _count stays.
TEST(RegionReaderReliabilityTest, SummaryObservingNaNStillParsesInOpenMetrics) {
  ScopedRegionName name("summary-nan");
  Client& client = Client::Attach(name.name, SmallOptions());
  auto& s = BuildSummary().Name("lat_seconds").Help("L.").Register(client);
  InDyingChild([&] {
    s.Get().Observe(1);
    s.Get().Observe(NAN);
  });
  RegionReader reader(shm::Region::Open(name.name));
  Snapshot snap;
  reader.Collect(snap);
  std::string body;
  AppendExposition(Format::kOpenMetrics, reader, snap, body);
  const auto parsed = testing::ParseOpenMetricsStrictly(body);
  ASSERT_TRUE(parsed.ok) << parsed.error << "\n" << body;
  EXPECT_EQ(parsed.samples.at(testing::SeriesKey("lat_seconds_count", {})), 2);
}

// The accumulator bank's system cells are region memory too (found by region_reader_fuzz_test):
// a NaN there was converted to an integer, which is undefined (and read as 2^63 on x86).
TEST(RegionReaderReliabilityTest, NonCountsInTheFoldedCountCellsReadAsZero) {
  for (double bad : {double{NAN}, -1.0, 1e30}) {
    ScopedRegionName name("folded-nan");
    Client& client = Client::Attach(name.name, SmallOptions());
    auto& c = BuildCounter().Name("c_total").Help("C.").Register(client);
    InDyingChild([&] { c.Get().Inc(); });
    RegionReader reader(shm::Region::Open(name.name));
    {
      auto region = shm::Region::Open(name.name);
      const uint32_t bank = region->layout().bank_slot(region->header().fold_commit.load() & 1);
      shm::Cell* page = region->page(region->directory(bank)[0].load());
      ASSERT_NE(page, nullptr);
      page[shm::kCellFoldedWriters].store(std::bit_cast<uint64_t>(bad));
      page[shm::kCellFoldedWorkers].store(std::bit_cast<uint64_t>(bad));
      region->header().fold_commit.fetch_add(2);  // a new commit word: the bank is decoded again
    }
    Snapshot snap;
    reader.Collect(snap);
    EXPECT_EQ(snap.folded_writers, 0u) << bad;
    EXPECT_EQ(snap.folded_workers, 0u) << bad;
    EXPECT_EQ(snap.cells[reader.series().at(0).view.cell_base], 1) << bad;
  }
}

}  // namespace
}  // namespace shmetrics::gateway
