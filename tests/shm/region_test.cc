#include "shmetrics/shm/region.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmetrics/shm/ofd_lock.h"
#include "test_region.h"

namespace shmetrics::shm {
namespace {

using testing::ScopedRegionName;
using testing::SmallOptions;

TEST(RegionTest, CreatesThenAttachesWithSameLayout) {
  ScopedRegionName name("create");
  auto created = Region::OpenOrCreate(name.name, SmallOptions());
  EXPECT_TRUE(created->created());
  auto attached = Region::OpenOrCreate(name.name, SmallOptions());
  EXPECT_FALSE(attached->created());
  EXPECT_EQ(created->generation(), attached->generation());
  EXPECT_EQ(attached->layout().pages_offset, created->layout().pages_offset);
  EXPECT_EQ(attached->header().layout_version, kLayoutVersion);
  EXPECT_EQ(attached->header().cells_used.load(), kSystemCells);
}

TEST(RegionTest, GenerationChangesWhenRecreated) {
  ScopedRegionName name("gen");
  const uint64_t first = Region::OpenOrCreate(name.name, SmallOptions())->generation();
  ASSERT_TRUE(Region::Remove(name.name));
  const uint64_t second = Region::OpenOrCreate(name.name, SmallOptions())->generation();
  EXPECT_NE(first, second);
}

TEST(RegionTest, CreatedWithMode0600ByDefault) {
  ScopedRegionName name("mode");
  auto r = Region::OpenOrCreate(name.name, SmallOptions());
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + name.name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(RegionTest, GroupModeIsConfigurable) {
  ScopedRegionName name("mode660");
  auto o = SmallOptions();
  o.mode = 0660;
  auto r = Region::OpenOrCreate(name.name, o);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + name.name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST(RegionTest, RejectsInvalidNames) {
  for (const std::string& bad :
       std::vector<std::string>{"", "a/b", "with space", std::string(201, 'x')}) {
    EXPECT_THROW(Region::OpenOrCreate(bad, SmallOptions()), RegionError) << bad;
  }
}

TEST(RegionTest, OpenOfMissingRegionSaysSo) {
  try {
    Region::Open("shmetrics-test-does-not-exist");
    FAIL() << "expected RegionError";
  } catch (const RegionError& e) {
    EXPECT_NE(std::string(e.what()).find("shmetrics-test-does-not-exist"), std::string::npos)
        << e.what();
  }
}

TEST(RegionTest, RejectsCapacitiesThatDoNotFit) {
  RegionOptions o = SmallOptions();
  o.size_bytes = 64 << 10;
  try {
    ComputeLayout(o);
    FAIL() << "expected RegionError";
  } catch (const RegionError& e) {
    EXPECT_NE(std::string(e.what()).find("too small"), std::string::npos) << e.what();
  }
  o = SmallOptions();
  o.max_cells = 1000;  // not a multiple of a page
  EXPECT_THROW(ComputeLayout(o), RegionError);
}

// Attach must refuse a header that does not match: bad magic, another layout version, a size or
// capacity that disagrees with the object.
class CorruptHeaderTest : public ::testing::TestWithParam<int> {};

TEST_P(CorruptHeaderTest, AttachFailsWithClearMessage) {
  ScopedRegionName name("corrupt");
  {
    auto r = Region::OpenOrCreate(name.name, SmallOptions());
    RegionHeader& h = r->header();
    switch (GetParam()) {
      case 0:
        h.magic ^= 1;
        break;
      case 1:
        h.layout_version = kLayoutVersion + 1;
        break;
      case 2:
        h.region_bytes += 4096;
        break;
      case 3:
        h.max_series = 7;
        break;
      case 4:
        h.pages_offset += 4096;
        break;
    }
  }
  const char* expected[] = {"magic", "layout version", "bytes", "corrupt", "corrupt"};
  try {
    Region::Open(name.name);
    FAIL() << "expected RegionError";
  } catch (const RegionError& e) {
    EXPECT_NE(std::string(e.what()).find(expected[GetParam()]), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(name.name), std::string::npos) << e.what();
  }
}
INSTANTIATE_TEST_SUITE_P(Fields, CorruptHeaderTest, ::testing::Range(0, 5));

TEST(RegionTest, ForeignObjectIsNotMistakenForARegion) {
  ScopedRegionName name("foreign");
  int fd = ::shm_open(("/" + name.name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
  ASSERT_EQ(::write(fd, "SQLite format 3", 15), 15);  // someone else's data, never "ready"
  ::close(fd);
  EXPECT_THROW(Region::Open(name.name), RegionError);
}

TEST(RegionTest, AccessorsAreBoundsChecked) {
  ScopedRegionName name("bounds");
  auto r = Region::OpenOrCreate(name.name, SmallOptions());
  const Layout& l = r->layout();
  EXPECT_NE(r->family(l.max_families - 1), nullptr);
  EXPECT_EQ(r->family(l.max_families), nullptr);
  EXPECT_EQ(r->series(l.max_series), nullptr);
  EXPECT_EQ(r->slot(l.total_slots()), nullptr);
  EXPECT_EQ(r->page(kNoPage), nullptr);
  EXPECT_EQ(r->page(l.page_count), nullptr);
  EXPECT_NE(r->page(l.page_count - 1), nullptr);
  EXPECT_EQ(r->arena(l.string_bytes - 1, 2), nullptr);
  EXPECT_EQ(r->arena(0xffffffffu, 0xffffffffu), nullptr);  // no overflow wrap-around
}

TEST(OfdLockTest, DescriptorsExcludeEachOtherEvenInOneProcess) {
  ScopedRegionName name("ofd");
  auto r = Region::OpenOrCreate(name.name, SmallOptions());
  int a = r->OpenLockDescriptor();
  int b = r->OpenLockDescriptor();
  EXPECT_EQ(TryLockByte(a, kSlotLockBase), LockResult::kAcquired);
  EXPECT_EQ(TryLockByte(b, kSlotLockBase), LockResult::kBusy);
  EXPECT_TRUE(IsByteLockedByOther(b, kSlotLockBase));
  ::close(a);  // closing the descriptor releases, as process death does
  EXPECT_EQ(TryLockByte(b, kSlotLockBase), LockResult::kAcquired);
  ::close(b);
}

TEST(OfdLockTest, ReleasedWhenHolderIsKilled) {
  ScopedRegionName name("ofdkill");
  auto r = Region::OpenOrCreate(name.name, SmallOptions());
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t child = ::fork();
  if (child == 0) {
    int fd = r->OpenLockDescriptor();
    char ok = TryLockByte(fd, kSlotLockBase + 3) == LockResult::kAcquired ? 1 : 0;
    (void)!::write(pipefd[1], &ok, 1);
    ::pause();
    _exit(0);
  }
  char ok = 0;
  ASSERT_EQ(::read(pipefd[0], &ok, 1), 1);
  ASSERT_EQ(ok, 1);
  int fd = r->OpenLockDescriptor();
  EXPECT_EQ(TryLockByte(fd, kSlotLockBase + 3), LockResult::kBusy);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_EQ(TryLockByte(fd, kSlotLockBase + 3), LockResult::kAcquired);
  ::close(fd);
}

}  // namespace
}  // namespace shmetrics::shm
