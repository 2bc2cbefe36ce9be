// SigbusGuard: a region truncated under a registered mapping reads as zeros and is flagged; any
// other SIGBUS still kills. And the real RegionReader, guarded, survives a truncation that would
// otherwise kill the gateway.
#include "sigbus_guard.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "region_reader.h"
#include "shmetrics/shmetrics.h"
#include "test_region.h"

namespace shmetrics::gateway {
namespace {

using testing::ScopedRegionName;
using testing::SmallOptions;

constexpr size_t kPage = 4096;

// A shared mapping of a 4-page /dev/shm file whose bytes are all 0x5a.
struct MappedFile {
  explicit MappedFile(const std::string& name) : path("/dev/shm/" + name) {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::ftruncate(fd, 4 * kPage), 0);
    base = static_cast<volatile unsigned char*>(
        ::mmap(nullptr, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    EXPECT_NE(base, MAP_FAILED);
    std::memset(const_cast<unsigned char*>(base), 0x5a, 4 * kPage);
  }
  ~MappedFile() {
    ::munmap(const_cast<unsigned char*>(base), 4 * kPage);
    ::close(fd);
    ::unlink(path.c_str());
  }
  void Truncate(off_t bytes) const { ASSERT_EQ(::ftruncate(fd, bytes), 0); }
  std::string path;
  int fd = -1;
  volatile unsigned char* base = nullptr;
};

TEST(SigbusGuardTest, TruncatedMappingReadsZerosAndIsFlagged) {
  MappedFile file(testing::UniqueRegionName("sigbus"));
  GuardedMapping guard(const_cast<unsigned char*>(file.base), 4 * kPage);
  EXPECT_FALSE(guard.faulted());
  file.Truncate(kPage);
  EXPECT_EQ(file.base[0], 0x5a) << "the page still inside the file is untouched";
  EXPECT_EQ(file.base[2 * kPage + 7], 0) << "past the end: a zero page, not SIGBUS";
  EXPECT_TRUE(guard.faulted());
  file.base[3 * kPage] = 1;  // writes land in the private zero page too
  EXPECT_EQ(file.base[3 * kPage], 1);
}

TEST(SigbusGuardTest, UnregisteredMappingStillDies) {
  MappedFile guarded(testing::UniqueRegionName("sigbus-g"));
  GuardedMapping guard(const_cast<unsigned char*>(guarded.base), 4 * kPage);  // handler in place
  MappedFile other(testing::UniqueRegionName("sigbus-o"));
  other.Truncate(0);
  EXPECT_EXIT((void)other.base[kPage], ::testing::KilledBySignal(SIGBUS), "");
}

TEST(SigbusGuardTest, SentSigbusStillDies) {
  MappedFile file(testing::UniqueRegionName("sigbus-k"));
  GuardedMapping guard(const_cast<unsigned char*>(file.base), 4 * kPage);
  EXPECT_EXIT(::kill(::getpid(), SIGBUS), ::testing::KilledBySignal(SIGBUS), "");
}

TEST(SigbusGuardTest, RegistrationsAreReleased) {
  MappedFile file(testing::UniqueRegionName("sigbus-r"));
  for (int i = 0; i < 3 * kMaxGuardedMappings; ++i) {
    GuardedMapping a(const_cast<unsigned char*>(file.base), 4 * kPage);
    GuardedMapping b = std::move(a);
    EXPECT_FALSE(a.faulted());
    EXPECT_FALSE(b.faulted());
  }
}

// A region with one counter that a dead worker counted to 5, folded into the accumulator.
void FillRegion(const std::string& name) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    Client& client = Client::Attach(name, SmallOptions());
    BuildCounter().Name("c_total").Help("C.").Register(client).Get().Add(5);
    _exit(0);
  }
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
}

// Collect reads the registry and slot sections, far past the header page: after a truncation to
// one page the reader would die of SIGBUS (the death test shows it), guarded it reads zeros.
TEST(SigbusGuardTest, RegionReaderSurvivesTruncationWhenGuarded) {
  ScopedRegionName name("sigbus-reader");
  FillRegion(name.name);
  const std::string path = "/dev/shm/" + name.name;

  EXPECT_EXIT(
      {
        RegionReader reader(shm::Region::Open(name.name));
        ::truncate(path.c_str(), kPage);
        Snapshot snap;
        reader.Collect(snap);
        _exit(0);
      },
      ::testing::KilledBySignal(SIGBUS), "");
  ScopedRegionName fresh("sigbus-reader2");
  FillRegion(fresh.name);

  auto region = shm::Region::Open(fresh.name);
  GuardedMapping guard(region->mapping_base(), region->mapping_bytes());
  RegionReader reader(std::move(region));
  Snapshot snap;
  reader.Collect(snap);
  EXPECT_FALSE(guard.faulted());
  ASSERT_EQ(::truncate(("/dev/shm/" + fresh.name).c_str(), kPage), 0);
  reader.Collect(snap);
  reader.Reap();
  EXPECT_TRUE(guard.faulted());
}

}  // namespace
}  // namespace shmetrics::gateway
