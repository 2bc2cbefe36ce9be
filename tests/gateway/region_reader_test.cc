// RegionReader: fold recovery after a gateway crash at each step of the protocol, and a region
// full of hostile bytes that must give counted skips and valid expositions, never a crash.
#include "region_reader.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <random>

#include "exposition.h"
#include "fuzz/exposition_checker.h"
#include "shmetrics/shmetrics.h"
#include "test_region.h"

namespace shmetrics::gateway {
namespace {

using testing::ScopedRegionName;
using testing::SmallOptions;

// Forks a worker that adds `amount` to counter "c" and histogram "h", then exits (dies).
void RunDyingWorker(Client& client, double amount) {
  auto& c = BuildCounter().Name("c_total").Help("C.").Register(client);
  auto& h = BuildHistogram().Name("h_seconds").Help("H.").Buckets({1}).Register(client);
  const pid_t pid = ::fork();
  if (pid == 0) {
    c.Get().Add(amount);
    h.Get().Observe(0.5);
    _exit(0);
  }
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
}

double CounterValue(RegionReader& reader) {
  Snapshot snap;
  reader.Collect(snap);
  for (const auto& f : reader.families()) {
    if (f.view.name == "c") return snap.cells[reader.series()[f.series.at(0)].view.cell_base];
  }
  return -1;
}

// The slot the dead worker used (the only non-free one).
uint32_t UsedSlot(const shm::Region& r) {
  for (uint32_t i = 0; i < r.layout().max_slots; ++i) {
    if (r.slot(i)->state.load() != 0) return i;
  }
  return ~0u;
}

TEST(RegionReaderTest, DeadWorkerIsFoldedOnceAndSlotFreed) {
  ScopedRegionName name("fold");
  Client& client = Client::Attach(name.name, SmallOptions());
  RunDyingWorker(client, 5);
  RunDyingWorker(client, 7);
  RegionReader reader(shm::Region::Open(name.name));
  EXPECT_EQ(CounterValue(reader), 12);
  EXPECT_EQ(CounterValue(reader), 12);
  EXPECT_EQ(UsedSlot(reader.region()), ~0u);
  Snapshot snap;
  reader.Collect(snap);
  EXPECT_EQ(snap.folded_workers, 2u);
}

// The reader keeps the accumulator decoded between scrapes: every fold, and every series
// registered after the copy was made, must show in the next scrape.
TEST(RegionReaderTest, DecodedAccumulatorFollowsEveryFold) {
  ScopedRegionName name("foldcache");
  Client& client = Client::Attach(name.name, SmallOptions());
  RegionReader reader(shm::Region::Open(name.name));
  RunDyingWorker(client, 5);
  EXPECT_EQ(CounterValue(reader), 5);
  EXPECT_EQ(CounterValue(reader), 5);  // no fold in between: served from the decoded copy
  RunDyingWorker(client, 7);
  EXPECT_EQ(CounterValue(reader), 12);
  auto& late = BuildCounter().Name("late_total").Help("L.").Register(client);
  const pid_t pid = ::fork();
  if (pid == 0) {
    late.Get().Add(3);
    _exit(0);
  }
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  Snapshot snap;
  reader.Collect(snap);
  double late_value = -1, c_value = -1;
  for (const auto& f : reader.families()) {
    const double v = snap.cells[reader.series()[f.series.at(0)].view.cell_base];
    if (f.view.name == "late") late_value = v;
    if (f.view.name == "c") c_value = v;
  }
  EXPECT_EQ(late_value, 3);
  EXPECT_EQ(c_value, 12);
  EXPECT_EQ(snap.folded_workers, 3u);
}

TEST(RegionReaderTest, SecondReaderOnSameRegionIsRefused) {
  ScopedRegionName name("exclusive");
  RegionReader first(shm::Region::OpenOrCreate(name.name, SmallOptions()));
  EXPECT_THROW(RegionReader(shm::Region::Open(name.name)), shm::RegionError);
}

// Crash after marking the slot kFolding but before the commit: the fold is redone from the
// untouched active bank, whatever garbage the half-built inactive bank holds.
TEST(RegionReaderTest, UncommittedFoldIsRedoneAfterCrash) {
  ScopedRegionName name("redo");
  Client& client = Client::Attach(name.name, SmallOptions());
  RunDyingWorker(client, 5);
  {
    auto region = shm::Region::Open(name.name);
    const uint32_t slot = UsedSlot(*region);
    ASSERT_NE(slot, ~0u);
    const uint64_t epoch = region->header().fold_commit.load() >> 1;
    region->slot(slot)->fold_epoch = epoch + 1;
    region->slot(slot)->state.store(static_cast<uint32_t>(shm::SlotState::kFolding));
  }
  RegionReader reader(shm::Region::Open(name.name));
  EXPECT_EQ(CounterValue(reader), 5);
}

// Crash after the commit but before the slot was zeroed and freed: it must not count twice.
TEST(RegionReaderTest, CommittedFoldIsNotRepeatedAfterCrash) {
  ScopedRegionName name("nodouble");
  Client& client = Client::Attach(name.name, SmallOptions());
  RunDyingWorker(client, 5);
  uint32_t slot;
  std::vector<uint64_t> saved;
  {
    // Snapshot the dead slot's first page before a reader folds and zeroes it.
    auto region = shm::Region::Open(name.name);
    slot = UsedSlot(*region);
    shm::Cell* page = region->page(region->directory(slot)[0].load());
    for (uint32_t c = 0; c < shm::kCellsPerPage; ++c) saved.push_back(page[c].load());
  }
  {
    RegionReader reader(shm::Region::Open(name.name));
    EXPECT_EQ(CounterValue(reader), 5);
  }
  {
    // Put the slot back the way a crash right after the commit would have left it.
    auto region = shm::Region::Open(name.name);
    shm::Cell* page = region->page(region->directory(slot)[0].load());
    for (uint32_t c = 0; c < shm::kCellsPerPage; ++c) page[c].store(saved[c]);
    region->slot(slot)->fold_epoch = region->header().fold_commit.load() >> 1;
    region->slot(slot)->state.store(static_cast<uint32_t>(shm::SlotState::kFolding));
  }
  RegionReader reader(shm::Region::Open(name.name));
  EXPECT_EQ(CounterValue(reader), 5);
  EXPECT_EQ(reader.region().slot(slot)->state.load(), 0u);
}

// A writer (or a stray process) may write anything anywhere in the region. The reader must
// survive every byte, count what it skipped and still serve only valid expositions.
TEST(RegionReaderTest, HostileBytesGiveCountedSkipsNotCrashes) {
  std::mt19937_64 rng(2026);
  uint64_t skipped = 0;
  for (int round = 0; round < 40; ++round) {
    ScopedRegionName name("hostile");
    {
      auto region = shm::Region::OpenOrCreate(name.name, SmallOptions());
      // Real content first, so there are records to corrupt.
      const pid_t pid = ::fork();
      if (pid == 0) {
        Client& client = Client::Attach(name.name);
        auto& f = BuildCounter().Name("r_total").Help("R.").Labels({"a"}).Register(client);
        auto& h = BuildHistogram()
                      .Name("h_seconds")
                      .Help("H.")
                      .Labels({"a"})
                      .Buckets({1, 2})
                      .Register(client);
        auto& g = BuildGauge().Name("g").Help("G.").Mode(GaugeMode::kAll).Register(client);
        for (int i = 0; i < 20; ++i) {
          f.Add({std::to_string(i)}).Inc();
          h.Add({std::to_string(i)}).Observe(i);
        }
        g.Get().Set(1);
        _exit(0);
      }
      ::waitpid(pid, nullptr, 0);
      // Scribble over everything but the header (a bad header is refused at attach, tested in
      // shm) and the page pool (values can be any bits; they are not structure).
      const shm::Layout& l = region->layout();
      char* base = reinterpret_cast<char*>(&region->header());
      std::uniform_int_distribution<uint64_t> where(l.families_offset, l.pages_offset - 1);
      for (int i = 0; i < 200; ++i) base[where(rng)] = static_cast<char>(rng());
      // And some targeted damage: huge lengths, wild indices, bad states.
      region->family(0)->labels_offset = static_cast<uint32_t>(rng());
      region->series(3)->cell_base = static_cast<uint32_t>(rng());
      region->directory(0)[0].store(static_cast<uint32_t>(rng()));
      region->slot(1)->state.store(static_cast<uint32_t>(rng()));
      region->header().series_count.store(static_cast<uint32_t>(rng()));
      region->header().family_count.store(static_cast<uint32_t>(rng()));
    }
    RegionReader reader(shm::Region::Open(name.name));
    for (int scrape = 0; scrape < 2; ++scrape) {
      Snapshot snap;
      reader.Collect(snap);
      std::string body;
      AppendExposition(Format::kText, reader, snap, body);
      EXPECT_EQ(fuzz::CheckText004(body), "") << "round " << round << ", scrape " << scrape << ":\n"
                                              << body;
    }
    const ReaderStats s = reader.stats();
    skipped += s.corrupt_records + s.corrupt_slots + s.corrupt_blocks;
  }
  EXPECT_GT(skipped, 0u);
}

}  // namespace
}  // namespace shmetrics::gateway
