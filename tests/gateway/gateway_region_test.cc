// Gateway (in process, no HTTP): a region truncated, overwritten, removed or replaced under it
// (by garbage, a zero-filled object, a FIFO, a squatter's region) never crashes or stalls it; it
// serves the last good state, says why once, shows it in /metrics, and attaches a valid
// replacement as soon as there is one.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <future>
#include <random>
#include <vector>

#include "gateway.h"
#include "shmetrics/shmetrics.h"
#include "test_region.h"

namespace shmetrics::gateway {
namespace {

using namespace std::chrono_literals;
using testing::ScopedRegionName;
using testing::SmallOptions;

std::string ShmPath(const std::string& name) { return "/dev/shm/" + name; }

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Forks a worker that adds `amount` to counter `counter` and dies. The test process itself never
// attaches a client, so every region it sees is one a worker made.
void WorkerAdds(const std::string& region, const std::string& counter, double amount) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    Client& client = Client::Attach(region, SmallOptions());
    BuildCounter().Name(counter).Help("C.").Register(client).Get().Add(amount);
    _exit(0);
  }
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
}

GatewayOptions Options(const std::string& region) {
  GatewayOptions o;
  o.region = region;
  o.region_options = SmallOptions();
  return o;
}

// Replaces the name by an object with these bytes (a fresh inode, as an attacker would).
void ReplaceWith(const std::string& name, const std::string& bytes, uint64_t size) {
  ::unlink(ShmPath(name).c_str());
  const int fd = ::open(ShmPath(name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

// ReapNow, bounded: on timeout `unblock` runs (so the test fails instead of hanging).
bool ReapWithin(
    Gateway& gw, std::chrono::milliseconds limit, const std::function<void()>& unblock = [] {}) {
  auto done = std::async(std::launch::async, [&] { gw.ReapNow(); });
  if (done.wait_for(limit) == std::future_status::ready) return true;
  unblock();
  done.wait();
  return false;
}

class GatewayRegionTest : public ::testing::Test {
 protected:
  GatewayRegionTest() : name_("gwregion") {}
  void SetUp() override {
    WorkerAdds(name_.name, "c_total", 5);
    gw_ = std::make_unique<Gateway>(Options(name_.name));
    const std::string body = gw_->RenderMetrics();
    ASSERT_TRUE(Contains(body, "\nc_total 5\n")) << body;
    ASSERT_TRUE(Contains(body, "\nshmetrics_region_attached 1\n")) << body;
  }
  void TearDown() override { ::unlink(ShmPath(name_.name).c_str()); }

  // The last good state is still served, and the region is flagged as not attached.
  void ExpectLastStateServed(const std::string& context) {
    const std::string body = gw_->RenderMetrics();
    EXPECT_TRUE(Contains(body, "\nc_total 5\n")) << context << "\n" << body;
    EXPECT_TRUE(Contains(body, "\nshmetrics_region_attached 0\n")) << context << "\n" << body;
  }

  ScopedRegionName name_;
  std::unique_ptr<Gateway> gw_;
};

TEST_F(GatewayRegionTest, TruncatedRegionKeepsServingTheLastSnapshotThenAttachesTheNewOne) {
  ASSERT_EQ(::truncate(ShmPath(name_.name).c_str(), 4096), 0);
  ExpectLastStateServed("after truncation");  // scrape first: it must not touch the mapping
  EXPECT_TRUE(ReapWithin(*gw_, 2s));
  ExpectLastStateServed("after a reap");
  std::string body = gw_->RenderMetrics();
  EXPECT_TRUE(Contains(body, "shmetrics_region_lost_total{reason=\"truncated\"} 1")) << body;

  ASSERT_TRUE(shm::Region::Remove(name_.name));
  WorkerAdds(name_.name, "c_total", 2);  // the workers re-create it
  EXPECT_TRUE(ReapWithin(*gw_, 2s));
  body = gw_->RenderMetrics();
  EXPECT_TRUE(Contains(body, "\nc_total 2\n")) << body;
  EXPECT_TRUE(Contains(body, "\nshmetrics_region_attached 1\n")) << body;
}

// The label text of a series is cached by its index, and a re-created region numbers its series
// anew: the first series of the new region is served with its own labels.
TEST_F(GatewayRegionTest, ReattachedRegionIsServedWithItsOwnLabels) {
  ASSERT_TRUE(shm::Region::Remove(name_.name));
  const pid_t pid = ::fork();
  if (pid == 0) {
    Client& client = Client::Attach(name_.name, SmallOptions());
    BuildCounter().Name("c_total").Help("C.").Labels({"k"}).Register(client).Add({"v"}).Add(2);
    _exit(0);
  }
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  EXPECT_TRUE(ReapWithin(*gw_, 2s));
  const std::string body = gw_->RenderMetrics();
  EXPECT_TRUE(Contains(body, "\nc_total{k=\"v\"} 2\n")) << body;
  EXPECT_TRUE(Contains(body, "\nshmetrics_region_attached 1\n")) << body;
}

// A reap refreshes the registry: series registered after the last scrape have no values in the
// last snapshot and must be left out of it, not read past its end.
TEST_F(GatewayRegionTest, SeriesRegisteredAfterTheLastScrapeAreLeftOutOnceLost) {
  WorkerAdds(name_.name, "late_total", 3);
  EXPECT_TRUE(ReapWithin(*gw_, 2s));
  ASSERT_EQ(::truncate(ShmPath(name_.name).c_str(), 4096), 0);
  const std::string body = gw_->RenderMetrics();
  EXPECT_TRUE(Contains(body, "\nc_total 5\n")) << body;
  EXPECT_FALSE(Contains(body, "late_total")) << body;
}

TEST_F(GatewayRegionTest, RegionOverwrittenInPlaceIsLost) {
  ASSERT_EQ(::truncate(ShmPath(name_.name).c_str(), 0), 0);
  ASSERT_EQ(::truncate(ShmPath(name_.name).c_str(), SmallOptions().size_bytes), 0);  // all zeros
  ExpectLastStateServed("after the contents were wiped");
  const std::string body = gw_->RenderMetrics();
  EXPECT_TRUE(Contains(body, "shmetrics_region_lost_total{reason=\"overwritten\"} 1")) << body;
}

TEST_F(GatewayRegionTest, ZeroFilledReplacementNeverStallsAndIsAttachedOnceReady) {
  // A creator killed mid-initialisation: the right size, all zeros.
  ReplaceWith(name_.name, "", SmallOptions().size_bytes);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(ReapWithin(*gw_, 3s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s) << "the reaper waited for a creator";
  ExpectLastStateServed("after a zero-filled replacement");  // the old mapping is still fine
  std::string body = gw_->RenderMetrics();
  EXPECT_TRUE(Contains(body, "shmetrics_region_attach_failures_total{reason=\"not_ready\"} 1"))
      << body;

  // Its creator (or a new one) finishes it in place: the next reap attaches it.
  {
    ScopedRegionName model("gwregion-model");
    WorkerAdds(model.name, "c_total", 9);
    std::string bytes(SmallOptions().size_bytes, '\0');
    const int fd = ::open(ShmPath(model.name).c_str(), O_RDONLY);
    ASSERT_EQ(::pread(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
    const int target = ::open(ShmPath(name_.name).c_str(), O_RDWR);
    ASSERT_EQ(::pwrite(target, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    ::close(target);
  }
  EXPECT_TRUE(ReapWithin(*gw_, 2s));
  body = gw_->RenderMetrics();
  EXPECT_TRUE(Contains(body, "\nc_total 9\n")) << body;
  EXPECT_TRUE(Contains(body, "\nshmetrics_region_attached 1\n")) << body;
}

TEST_F(GatewayRegionTest, GarbageReplacementIsRefusedAndTheOldRegionStillServed) {
  std::string garbage(SmallOptions().size_bytes, '\0');
  std::mt19937_64 rng(8);
  for (char& c : garbage) c = static_cast<char>(rng());
  ReplaceWith(name_.name, garbage, garbage.size());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(ReapWithin(*gw_, 2s));
  ExpectLastStateServed("after a garbage replacement");
  const std::string body = gw_->RenderMetrics();
  EXPECT_TRUE(Contains(body, "shmetrics_region_attach_failures_total{reason=\"invalid\"} 3"))
      << body;
}

TEST_F(GatewayRegionTest, FifoReplacementNeverBlocksTheReaperAndIsWarnedOnce) {
  ASSERT_EQ(::unlink(ShmPath(name_.name).c_str()), 0);
  ASSERT_EQ(::mkfifo(ShmPath(name_.name).c_str(), 0600), 0);
  auto unblock = [&] {  // a writer opening the FIFO releases a reader blocked in open()
    const int fd = ::open(ShmPath(name_.name).c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) ::close(fd);
  };
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(ReapWithin(*gw_, 2s, unblock)) << "reap " << i;
  const std::string log = ::testing::internal::GetCapturedStderr();
  ExpectLastStateServed("after a FIFO replacement");
  const std::string warning = "is a FIFO, not a regular file";
  const size_t first = log.find(warning);
  EXPECT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find(warning, first + 1), std::string::npos) << "warned more than once:\n" << log;
  const std::string body = gw_->RenderMetrics();
  EXPECT_TRUE(Contains(body, "shmetrics_region_attach_failures_total{reason=\"not_regular\"} 3"))
      << body;
}

TEST_F(GatewayRegionTest, SquattersReplacementIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a file to another user";
  ASSERT_TRUE(shm::Region::Remove(name_.name));
  {
    auto squat = shm::Region::OpenOrCreate(name_.name, SmallOptions());  // valid contents
  }
  ASSERT_EQ(::chown(ShmPath(name_.name).c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chmod(ShmPath(name_.name).c_str(), 0666), 0);
  EXPECT_TRUE(ReapWithin(*gw_, 2s));
  ExpectLastStateServed("after a squatter's replacement");
  const std::string body = gw_->RenderMetrics();
  EXPECT_TRUE(Contains(body, "shmetrics_region_attach_failures_total{reason=\"untrusted\"} 1"))
      << body;
}

TEST_F(GatewayRegionTest, RemovedRegionIsStillServedAndWarnedOnce) {
  ASSERT_TRUE(shm::Region::Remove(name_.name));
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(ReapWithin(*gw_, 2s));
  const std::string log = ::testing::internal::GetCapturedStderr();
  const size_t first = log.find("was removed");
  EXPECT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("was removed", first + 1), std::string::npos) << log;
  ExpectLastStateServed("after removal");
}

}  // namespace
}  // namespace shmetrics::gateway
