#include "shmetrics/shm/region.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <random>
#include <thread>

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
        h.capacities.max_series = 7;
        break;
      case 4:
        h.offsets.pages_offset += 4096;
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
  EXPECT_EQ(TryLockByte(b, kSlotLockBase), LockResult::kBusy) << "a failed probe takes nothing";
  EXPECT_EQ(TryLockByte(a, kSlotLockBase), LockResult::kAcquired) << "the holder may re-lock";
  ::close(a);  // closing the descriptor releases, as process death does
  EXPECT_EQ(TryLockByte(b, kSlotLockBase), LockResult::kAcquired);
  ::close(b);
}

// A probe that fails is not a dead holder: TryLockByte says kError (never kAcquired), so a
// liveness check that folds only on kAcquired leaves the slot alone.
TEST(OfdLockTest, ProbeErrorIsNotAcquired) {
  errno = 0;
  EXPECT_EQ(TryLockByte(-1, kSlotLockBase), LockResult::kError);
  EXPECT_EQ(errno, EBADF);
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

// --- Attach refuses what it cannot trust -------------------------------------------------------

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;  // Debian's "nogroup"

std::string ShmPath(const std::string& name) { return "/dev/shm/" + name; }

// Runs `f` and returns the RegionError it throws (fails the test if it throws nothing).
template <typename F>
RegionError ErrorOf(F&& f) {
  try {
    f();
  } catch (const RegionError& e) {
    return e;
  }
  ADD_FAILURE() << "expected a RegionError";
  return RegionError("none");
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A valid region of `name`, then given to `uid`:`gid` with `mode` (as a squatter would leave it).
void MakeForeignRegion(const std::string& name, uid_t uid, gid_t gid, mode_t mode) {
  Region::OpenOrCreate(name, SmallOptions());
  ASSERT_EQ(::chown(ShmPath(name).c_str(), uid, gid), 0) << std::strerror(errno);
  ASSERT_EQ(::chmod(ShmPath(name).c_str(), mode), 0) << std::strerror(errno);
}

#define REQUIRE_ROOT()                                                        \
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give files to others"; \
  static_assert(true)

TEST(RegionTrustTest, RegionOwnedByAnotherUserIsRefusedNamingOwnerAndMode) {
  REQUIRE_ROOT();
  ScopedRegionName name("squat");
  MakeForeignRegion(name.name, kNobody, kNogroup, 0666);
  for (int create = 0; create < 2; ++create) {  // the gateway's Open and the client's OpenOrCreate
    const RegionError e = ErrorOf([&] {
      if (create) {
        Region::OpenOrCreate(name.name, SmallOptions());
      } else {
        Region::Open(name.name);
      }
    });
    const std::string what = e.what();
    EXPECT_EQ(e.reason(), RegionError::Reason::kUntrusted) << what;
    EXPECT_TRUE(Contains(what, "uid 65534")) << what;
    EXPECT_TRUE(Contains(what, "mode 0666")) << what;
    EXPECT_TRUE(Contains(what, "uid 0")) << what;  // ours
    EXPECT_TRUE(Contains(what, "--reset")) << what;
    EXPECT_TRUE(Contains(what, "--group")) << what;
  }
}

TEST(RegionTrustTest, AnotherUsersRegionIsRefusedEvenWhenNotWorldWritable) {
  REQUIRE_ROOT();
  ScopedRegionName name("squat660");
  MakeForeignRegion(name.name, kNobody, kNogroup, 0660);
  const RegionError e = ErrorOf([&] { Region::Open(name.name); });
  EXPECT_EQ(e.reason(), RegionError::Reason::kUntrusted) << e.what();
  EXPECT_TRUE(Contains(e.what(), "no group is trusted")) << e.what();
}

TEST(RegionTrustTest, AnotherUsersRegionInTheTrustedGroupIsAccepted) {
  REQUIRE_ROOT();
  ScopedRegionName name("trusted");
  MakeForeignRegion(name.name, kNobody, kNogroup, 0660);
  RegionOptions o = SmallOptions();
  o.group = "nogroup";
  auto r = Region::Open(name.name, o);
  EXPECT_EQ(r->layout().max_series, SmallOptions().max_series);
  EXPECT_FALSE(Region::OpenOrCreate(name.name, o)->created());

  o.group = "root";  // another group than the region's
  const RegionError e = ErrorOf([&] { Region::Open(name.name, o); });
  EXPECT_EQ(e.reason(), RegionError::Reason::kUntrusted) << e.what();
  EXPECT_TRUE(Contains(e.what(), "not the trusted group root")) << e.what();
}

TEST(RegionTrustTest, WorldWritableRegionIsRefusedWhoeverOwnsIt) {
  REQUIRE_ROOT();
  ScopedRegionName name("ww");
  MakeForeignRegion(name.name, kNobody, kNogroup, 0662);
  RegionOptions o = SmallOptions();
  o.group = "nogroup";
  RegionError e = ErrorOf([&] { Region::Open(name.name, o); });
  EXPECT_EQ(e.reason(), RegionError::Reason::kUntrusted) << e.what();
  EXPECT_TRUE(Contains(e.what(), "mode 0662 lets every user write it")) << e.what();

  ASSERT_EQ(::chown(ShmPath(name.name).c_str(), ::geteuid(), ::getegid()), 0);  // even our own
  e = ErrorOf([&] { Region::Open(name.name); });
  EXPECT_EQ(e.reason(), RegionError::Reason::kUntrusted) << e.what();
}

TEST(RegionTrustTest, OwnRegionIsAcceptedWhateverItsGroup) {
  ScopedRegionName name("own660");
  RegionOptions o = SmallOptions();
  o.mode = 0660;
  Region::OpenOrCreate(name.name, o);
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(ShmPath(name.name).c_str(), 0, kNogroup), 0);
  }
  EXPECT_NO_THROW(Region::Open(name.name));
}

TEST(RegionTrustTest, UnknownTrustedGroupIsNamed) {
  ScopedRegionName name("nogroup");
  RegionOptions o = SmallOptions();
  o.group = "shmetrics-no-such-group";
  const RegionError e = ErrorOf([&] { Region::OpenOrCreate(name.name, o); });
  EXPECT_TRUE(Contains(e.what(), "unknown group \"shmetrics-no-such-group\"")) << e.what();
  EXPECT_EQ(Region::CurrentInode(name.name), 0u) << "nothing may be created for an unknown group";
}

TEST(RegionTrustTest, CreatorGivesTheRegionItsGroupAndExactModeDespiteUmask) {
  REQUIRE_ROOT();
  ScopedRegionName name("group");
  RegionOptions o = SmallOptions();
  o.mode = 0660;
  o.group = "nogroup";
  const mode_t old_umask = ::umask(077);
  auto r = Region::OpenOrCreate(name.name, o);
  ::umask(old_umask);
  ASSERT_TRUE(r->created());
  struct stat st {};
  ASSERT_EQ(::stat(ShmPath(name.name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_gid, kNogroup);
}

TEST(RegionTrustTest, ModesGrantingWorldWriteOrSpecialBitsAreRefused) {
  EXPECT_EQ(ModeProblem(0600), "");
  EXPECT_EQ(ModeProblem(0660), "");
  EXPECT_EQ(ModeProblem(0644), "");
  for (mode_t bad : {mode_t{0666}, mode_t{0602}, mode_t{0777}, mode_t{04600}, mode_t{02660},
                     mode_t{01600}, mode_t{010600}}) {
    EXPECT_NE(ModeProblem(bad), "") << std::oct << bad;
  }
  ScopedRegionName name("badmode");
  RegionOptions o = SmallOptions();
  o.mode = 0666;
  const RegionError e = ErrorOf([&] { Region::OpenOrCreate(name.name, o); });
  EXPECT_TRUE(Contains(e.what(), "0666")) << e.what();
  EXPECT_EQ(Region::CurrentInode(name.name), 0u) << "nothing may be created with a bad mode";
}

// --- Attach never blocks, never follows, never waits when told not to -------------------------

// Runs `f` on another thread, bounded: if it is still running after `limit`, `unblock` is called
// (so that the test fails instead of hanging) and false is returned.
bool FinishesWithin(std::chrono::milliseconds limit, const std::function<void()>& f,
                    const std::function<void()>& unblock) {
  auto done = std::async(std::launch::async, f);
  if (done.wait_for(limit) == std::future_status::ready) {
    done.get();
    return true;
  }
  unblock();
  done.wait();
  return false;
}

TEST(RegionFileTypeTest, FifoInTheRegionsPlaceIsRefusedWithoutBlocking) {
  ScopedRegionName name("fifo");
  ASSERT_EQ(::mkfifo(ShmPath(name.name).c_str(), 0600), 0) << std::strerror(errno);
  // A writer opening the FIFO releases a reader blocked in open().
  auto unblock = [&] {
    const int fd = ::open(ShmPath(name.name).c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) ::close(fd);
  };
  ino_t inode = 0;
  EXPECT_TRUE(FinishesWithin(
      std::chrono::seconds(2), [&] { inode = Region::CurrentInode(name.name); }, unblock))
      << "CurrentInode blocked on a FIFO";
  EXPECT_NE(inode, 0u);
  RegionError e("none");
  EXPECT_TRUE(FinishesWithin(
      std::chrono::seconds(2), [&] { e = ErrorOf([&] { Region::Open(name.name); }); }, unblock))
      << "Open blocked on a FIFO";
  EXPECT_EQ(e.reason(), RegionError::Reason::kNotRegular) << e.what();
  EXPECT_TRUE(Contains(e.what(), "is a FIFO, not a regular file")) << e.what();
  ::unlink(ShmPath(name.name).c_str());
}

TEST(RegionFileTypeTest, SymbolicLinkIsNeverFollowed) {
  ScopedRegionName target("target");
  ScopedRegionName name("link");
  Region::OpenOrCreate(target.name, SmallOptions());
  ASSERT_EQ(::symlink(ShmPath(target.name).c_str(), ShmPath(name.name).c_str()), 0);
  const RegionError e = ErrorOf([&] { Region::OpenOrCreate(name.name, SmallOptions()); });
  EXPECT_EQ(e.reason(), RegionError::Reason::kNotRegular) << e.what();
  EXPECT_TRUE(Contains(e.what(), "symbolic link")) << e.what();
  ::unlink(ShmPath(name.name).c_str());
}

TEST(RegionFileTypeTest, DirectoryIsRefused) {
  ScopedRegionName name("dir");
  ASSERT_EQ(::mkdir(ShmPath(name.name).c_str(), 0700), 0);
  const RegionError e = ErrorOf([&] { Region::Open(name.name); });
  EXPECT_EQ(e.reason(), RegionError::Reason::kNotRegular) << e.what();
  EXPECT_TRUE(Contains(e.what(), "a directory")) << e.what();
  ::rmdir(ShmPath(name.name).c_str());
}

// A creator killed mid-initialisation leaves a zero-filled object of the right size.
TEST(RegionWaitTest, UninitialisedRegionFailsAtOnceWhenNotToWait) {
  ScopedRegionName name("zero");
  const int fd = ::shm_open(("/" + name.name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, SmallOptions().size_bytes), 0);
  ::close(fd);
  RegionOptions o;
  o.creator_wait = std::chrono::milliseconds(0);
  const auto start = std::chrono::steady_clock::now();
  const RegionError e = ErrorOf([&] { Region::Open(name.name, o); });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
  EXPECT_EQ(e.reason(), RegionError::Reason::kNotReady) << e.what();
  EXPECT_TRUE(Contains(e.what(), "--reset")) << e.what();
}

TEST(RegionWaitTest, GarbageFailsAtOnceEvenWhenWaiting) {
  ScopedRegionName name("garbage");
  const int fd = ::shm_open(("/" + name.name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  std::vector<char> bytes(1 << 20);
  std::mt19937 rng(7);
  for (char& b : bytes) b = static_cast<char>(rng());
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
  const auto start = std::chrono::steady_clock::now();
  const RegionError e = ErrorOf([&] { Region::Open(name.name); });  // default: waits up to 5 s
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_EQ(e.reason(), RegionError::Reason::kInvalid) << e.what();
}

std::string ReadAll(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY);
  char buf[65536];
  ssize_t n;
  while (fd >= 0 && (n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  if (fd >= 0) ::close(fd);
  return out;
}

TEST(RegionWaitTest, AttachWaitsForACreatorFinishingInPlace) {
  ScopedRegionName model("model");
  ScopedRegionName name("late");
  Region::OpenOrCreate(model.name, SmallOptions());
  const std::string bytes = ReadAll(ShmPath(model.name));
  ASSERT_EQ(bytes.size(), SmallOptions().size_bytes);
  const int fd = ::shm_open(("/" + name.name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  std::thread creator([&] {  // sizes it, then writes a valid region into it, a little later
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    (void)!::ftruncate(fd, static_cast<off_t>(bytes.size()));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    (void)!::pwrite(fd, bytes.data(), bytes.size(), 0);
  });
  std::unique_ptr<Region> r;
  EXPECT_NO_THROW(r = Region::Open(name.name));
  creator.join();
  ::close(fd);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->header().ready.load(), kReadyValue);
}

TEST(RegionWaitTest, AttachStopsWaitingForAnObjectThatWasRemoved) {
  ScopedRegionName name("gone");
  const int fd = ::shm_open(("/" + name.name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  std::thread remover([&] {  // its creator gives up and removes it; another creates it anew
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::shm_unlink(("/" + name.name).c_str());
  });
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<Region> r;
  EXPECT_NO_THROW(r = Region::OpenOrCreate(name.name, SmallOptions()));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  remover.join();
  ::close(fd);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->created());
}

// --- A mapped region that changes under us --------------------------------------------------

TEST(RegionIntegrityTest, TruncationAndOverwriteAreReported) {
  ScopedRegionName name("integrity");
  auto r = Region::OpenOrCreate(name.name, SmallOptions());
  std::string what;
  EXPECT_EQ(r->CheckIntegrity(&what), Region::Integrity::kIntact) << what;
  EXPECT_NE(r->mapping_base(), nullptr);
  EXPECT_EQ(r->mapping_bytes(), SmallOptions().size_bytes);

  ASSERT_EQ(::truncate(ShmPath(name.name).c_str(), 4096), 0);
  EXPECT_EQ(r->CheckIntegrity(&what), Region::Integrity::kResized);
  EXPECT_TRUE(Contains(what, "truncated")) << what;

  ASSERT_EQ(::truncate(ShmPath(name.name).c_str(), 0), 0);  // then back: all zeros
  ASSERT_EQ(::truncate(ShmPath(name.name).c_str(), SmallOptions().size_bytes), 0);
  EXPECT_EQ(r->CheckIntegrity(&what), Region::Integrity::kOverwritten) << what;
}

TEST(RegionRemoveTest, RemoveWithoutPermissionThrowsWithErrnoText) {
  REQUIRE_ROOT();
  ScopedRegionName name("noperm");
  Region::OpenOrCreate(name.name, SmallOptions());
  const pid_t child = ::fork();
  if (child == 0) {
    // In the sticky /dev/shm, nobody may not remove root's file.
    if (::setgid(kNogroup) != 0 || ::setuid(kNobody) != 0) _exit(3);
    try {
      Region::Remove(name.name);
      _exit(1);
    } catch (const RegionError& e) {
      const bool ok =
          e.reason() == RegionError::Reason::kAccess && Contains(e.what(), "cannot remove") &&
          (Contains(e.what(), std::strerror(EACCES)) || Contains(e.what(), std::strerror(EPERM))) &&
          Contains(e.what(), "uid 0");
      if (!ok) std::fprintf(stderr, "%s\n", e.what());
      _exit(ok ? 0 : 2);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_NE(Region::CurrentInode(name.name), 0u);
  EXPECT_FALSE(Region::Remove(name.name + "-missing"));
}

}  // namespace
}  // namespace shmetrics::shm
