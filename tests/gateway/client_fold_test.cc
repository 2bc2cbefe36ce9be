// The client and the gateway's reader together: released and dead writers' slots are folded, and
// a folded slot can be claimed again. Needs the gateway library (built with it only).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "region_reader.h"
#include "shmetrics/shmetrics.h"
#include "test_region.h"

namespace shmetrics {
namespace {

using testing::ScopedRegionName;
using testing::SmallOptions;

// Collects like the gateway does, folding released and dead slots as a side effect.
struct Reader {
  explicit Reader(const std::string& name) : reader(shm::Region::Open(name)) {}
  // Value of cell `offset` of the series with these label values in family `family`.
  double Cell(const std::string& family, std::vector<std::string> labels, uint32_t offset = 0) {
    reader.Collect(snap);
    for (const auto& f : reader.families()) {
      if (f.view.name != family) continue;
      for (uint32_t s : f.series) {
        if (reader.series()[s].view.label_values == labels)
          return snap.cells[reader.series()[s].view.cell_base + offset];
      }
    }
    return -1;
  }
  gateway::RegionReader reader;
  gateway::Snapshot snap;
};

TEST(ClientGatewayTest, SlotsExhaustedDropsAreCountedAndRecover) {
  ScopedRegionName name("slots");
  shm::RegionOptions o = SmallOptions();
  o.max_slots = 2;
  Client& c = Client::Attach(name.name, o);
  Counter& k = BuildCounter().Name("t_total").Help("T.").Register(c).Get();
  k.Inc();                               // main thread: primary slot
  std::thread([&] { k.Inc(); }).join();  // second slot, released at thread exit
  std::thread([&] { k.Inc(); }).join();  // the released slot is not free until folded: no slot
  EXPECT_EQ(c.region().header().dropped_no_slot.load(), 1u);
  Reader r(name.name);  // the reader folds the released slot
  EXPECT_EQ(r.Cell("t", {}), 2);
  std::thread([&] { k.Inc(); }).join();  // a folded slot is free again
  EXPECT_EQ(r.Cell("t", {}), 3);
}

TEST(ClientGatewayTest, DeadForkedChildIsFoldedOnce) {
  ScopedRegionName name("fork");
  Client& c = Client::Attach(name.name, SmallOptions());
  Counter& k = BuildCounter().Name("f_total").Help("F.").Register(c).Get();
  k.Add(7);  // master, before fork
  const pid_t child = ::fork();
  if (child == 0) {
    k.Add(10);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  k.Add(5);
  Reader r(name.name);
  EXPECT_EQ(r.Cell("f", {}), 22);  // 7 + 5 from the live master, 10 folded from the dead child
  EXPECT_EQ(r.snap.folded_workers, 1u);
  EXPECT_EQ(r.snap.live_workers, 1u);
}

}  // namespace
}  // namespace shmetrics
