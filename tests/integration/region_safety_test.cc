// The real shmetrics-gateway binary against a region that is not what it should be:
// truncated under it, replaced by garbage, a zero-filled object or a FIFO, squatted by another
// user; and --reset, --mode, --group as a user would run them. Everything is bounded in time.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "shmetrics/shm/region.h"
#include "shmetrics/shmetrics.h"
#include "test_support.h"

namespace shmetrics::integration {
namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;  // Debian's "nogroup"

std::string ShmPath(const std::string& name) { return "/dev/shm/" + name; }

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

#define START_GATEWAY_WITH(var, region, ...)                                        \
  std::string var##_error;                                                          \
  std::unique_ptr<Gateway> var = Gateway::Start(region, __VA_ARGS__, &var##_error); \
  ASSERT_NE(var, nullptr) << var##_error

#define REQUIRE_ROOT()                                                                    \
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as, or give files to, nobody"; \
  static_assert(true)

// A worker that adds `amount` to it_safety_total and exits (the gateway folds it).
void WorkerAdds(const std::string& region, double amount, const RegionOptions& options = {}) {
  ChildProcess worker = ChildProcess::Fork([&] {
    Client& client = Client::Attach(region, options);
    BuildCounter().Name("it_safety_total").Help("Safety.").Register(client).Get().Add(amount);
    return 0;
  });
  const std::optional<int> status = worker.Wait(10s);
  ASSERT_TRUE(status && ExitedWith(*status, 0)) << (status ? DescribeStatus(*status) : "hung");
}

// Scrapes until `check` holds on a 200 body (each scrape bounded by 2 s), up to `timeout`.
bool ScrapeUntil(const Gateway& gw, const std::function<bool(const Exposition&)>& check,
                 Clock::duration timeout) {
  return WaitFor(
      [&] {
        const HttpResult r = gw.Get("/metrics", 2s);
        return r.status == 200 && check(ParseExposition(r.body));
      },
      timeout);
}

// Scrapes for `duration`: every scrape must answer 200 within 2 s with it_safety_total == value.
void ExpectServesValueFor(const Gateway& gw, double value, Clock::duration duration) {
  const auto end = Clock::now() + duration;
  int scrapes = 0;
  while (Clock::now() < end) {
    const auto start = Clock::now();
    const HttpResult r = gw.Get("/metrics", 2s);
    ASSERT_EQ(r.status, 200) << "scrape " << scrapes << ": " << r.error << "\n" << gw.Log();
    EXPECT_LT(Clock::now() - start, 1500ms) << "a scrape stalled";
    const Exposition e = ParseExposition(r.body);
    ASSERT_EQ(e.Value("it_safety_total"), value) << r.body;
    ++scrapes;
    std::this_thread::sleep_for(200ms);
  }
}

// Runs the gateway binary as `uid`:`gid` (no supplementary groups), bounded by `timeout`.
RunResult RunGatewayAs(uid_t uid, gid_t gid, const std::vector<std::string>& args,
                       Clock::duration timeout = 10s) {
  const std::string log = TempPath("as-user.log");
  // The other user may not be able to reach the build tree (a clone inside a 0700 mktemp
  // directory): it runs a copy in a directory of its own that anyone may enter.
  char dir_template[] = "/tmp/shmetrics-as-user-XXXXXX";
  const char* dir = ::mkdtemp(dir_template);
  if (dir == nullptr || ::chmod(dir, 0755) != 0) return {};
  const std::string bin = std::string(dir) + "/shmetrics-gateway";
  std::filesystem::copy_file(SHMETRICS_GATEWAY_BIN, bin);
  ::chmod(bin.c_str(), 0755);
  std::vector<std::string> argv = {bin};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  ChildProcess p = ChildProcess::Fork([&]() -> int {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 126;
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) return 125;
    ::execv(cargv[0], cargv.data());
    return 127;
  });
  RunResult r;
  r.status = p.Wait(timeout);
  p.KillAndWait();
  r.output = ReadFile(log);
  ::unlink(log.c_str());
  std::filesystem::remove_all(dir);
  return r;
}

// --- A region changed under the running gateway --------------------------------------------------

TEST(RegionSafetyTest, TruncatedRegionIsSurvivedAndTheLastValuesServedUntilReCreated) {
  ScopedRegion region("trunc");
  WorkerAdds(region.name(), 5);
  START_GATEWAY_WITH(gw, region.name(), {"--reap-interval", "1"});
  ASSERT_TRUE(ScrapeUntil(
      *gw, [](const Exposition& e) { return e.Value("it_safety_total") == 5; }, 5s));

  ASSERT_EQ(::truncate(ShmPath(region.name()).c_str(), 4096), 0);
  ExpectServesValueFor(*gw, 5, 2500ms);  // scrapes and reaps race the truncation: no SIGBUS
  EXPECT_TRUE(gw->process().running()) << gw->Log();
  Exposition e = Scrape(*gw);
  EXPECT_EQ(e.Value("shmetrics_region_attached"), 0);
  EXPECT_EQ(e.Value("shmetrics_region_lost_total{reason=\"truncated\"}"), 1);
  EXPECT_TRUE(Contains(gw->Log(), "was truncated")) << gw->Log();

  // The operator re-creates it; the workers come back: the gateway attaches the new region.
  ASSERT_TRUE(shm::Region::Remove(region.name()));
  WorkerAdds(region.name(), 2);
  EXPECT_TRUE(ScrapeUntil(
      *gw,
      [](const Exposition& x) {
        return x.Value("it_safety_total") == 2 && x.Value("shmetrics_region_attached") == 1;
      },
      5s))
      << gw->Log();
}

TEST(RegionSafetyTest, GarbageOrZeroFilledReplacementNeitherCrashesNorStallsTheGateway) {
  ScopedRegion region("replace");
  WorkerAdds(region.name(), 5);
  START_GATEWAY_WITH(gw, region.name(), {"--reap-interval", "1"});
  ASSERT_TRUE(ScrapeUntil(
      *gw, [](const Exposition& e) { return e.Value("it_safety_total") == 5; }, 5s));
  const off_t size = 32 << 20;  // the worker's region: default options
  for (int garbage = 0; garbage < 2; ++garbage) {
    ASSERT_EQ(::unlink(ShmPath(region.name()).c_str()), 0);
    const int fd = ::open(ShmPath(region.name()).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, size), 0);  // zero-filled: a creator killed mid-initialisation
    if (garbage) {
      std::vector<char> bytes(1 << 20);
      std::mt19937 rng(9);
      for (char& b : bytes) b = static_cast<char>(rng());
      ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    }
    ::close(fd);
    // Before the fix the reaper waited 5 s for `ready` holding the lock, then crashed.
    ExpectServesValueFor(*gw, 5, 7s);
    ASSERT_TRUE(gw->process().running()) << gw->Log();
  }
  const Exposition e = Scrape(*gw);
  EXPECT_GE(e.Value("shmetrics_region_attach_failures_total{reason=\"not_ready\"}"), 1);
  EXPECT_GE(e.Value("shmetrics_region_attach_failures_total{reason=\"invalid\"}"), 1);
  EXPECT_EQ(e.Value("shmetrics_region_attached"), 0);
}

TEST(RegionSafetyTest, FifoReplacementNeitherHangsScrapesNorSigterm) {
  ScopedRegion region("fifo");
  WorkerAdds(region.name(), 5);
  START_GATEWAY_WITH(gw, region.name(), {"--reap-interval", "1"});
  ASSERT_TRUE(ScrapeUntil(
      *gw, [](const Exposition& e) { return e.Value("it_safety_total") == 5; }, 5s));
  ASSERT_EQ(::unlink(ShmPath(region.name()).c_str()), 0);
  ASSERT_EQ(::mkfifo(ShmPath(region.name()).c_str(), 0600), 0);
  ExpectServesValueFor(*gw, 5, 3s);
  EXPECT_TRUE(Contains(gw->Log(), "is a FIFO, not a regular file")) << gw->Log();
  gw->process().Signal(SIGTERM);
  const std::optional<int> status = gw->process().Wait(5s);
  // A writer's open releases a reaper blocked in open(): the test then fails instead of hanging.
  if (!status) ::close(::open(ShmPath(region.name()).c_str(), O_WRONLY | O_NONBLOCK));
  ASSERT_TRUE(status) << "SIGTERM did not stop the gateway\n" << gw->Log();
  EXPECT_TRUE(ExitedWith(*status, 0)) << DescribeStatus(*status);
  ::unlink(ShmPath(region.name()).c_str());
}

// --- Squatting ---------------------------------------------------------------------------------

// A valid region that another user owns, with `mode` (the squatter's).
void MakeForeignRegion(const std::string& name, mode_t mode) {
  shm::Region::OpenOrCreate(name);
  ASSERT_EQ(::chown(ShmPath(name).c_str(), kNobody, kNogroup), 0) << std::strerror(errno);
  ASSERT_EQ(::chmod(ShmPath(name).c_str(), mode), 0) << std::strerror(errno);
}

// In a worker: Client::Attach with `options`; returns "attached" or the RegionError's text.
std::string WorkerAttach(const std::string& region, const RegionOptions& options = {}) {
  Pipe out;
  ChildProcess worker = ChildProcess::Fork([&] {
    out.CloseRead();
    std::string what = "attached";
    try {
      Client::Attach(region, options);
    } catch (const RegionError& e) {
      what = e.what();
    }
    const std::string framed = std::to_string(what.size()) + "\n" + what;
    return out.Write(framed) ? 0 : 1;
  });
  out.CloseWrite();
  std::string length;
  while (auto c = out.Read(1, 5s)) {
    if (*c == "\n") break;
    length += *c;
  }
  const std::optional<std::string> text =
      length.empty() ? std::nullopt : out.Read(std::stoul(length), 5s);
  worker.Wait(5s);
  return text.value_or("(no answer from the worker)");
}

TEST(RegionSafetyTest, SquattedRegionIsRefusedByGatewayAndWorkers) {
  REQUIRE_ROOT();
  ScopedRegion region("squat");
  MakeForeignRegion(region.name(), 0666);
  const RunResult gw = RunGateway(
      {"--region", region.name(), "--listen", "127.0.0.1:" + std::to_string(PickFreePort())});
  ASSERT_TRUE(gw.status) << "the gateway served a squatted region: " << gw.output;
  EXPECT_TRUE(ExitedWith(*gw.status, 1)) << DescribeStatus(*gw.status) << gw.output;
  EXPECT_TRUE(Contains(gw.output, "uid 65534 (nobody)")) << gw.output;
  EXPECT_TRUE(Contains(gw.output, "mode 0666")) << gw.output;
  EXPECT_TRUE(Contains(gw.output, "runs as uid 0")) << gw.output;

  const std::string worker = WorkerAttach(region.name());
  EXPECT_TRUE(Contains(worker, "uid 65534 (nobody)")) << worker;
  EXPECT_TRUE(Contains(worker, "mode 0666")) << worker;

  RegionOptions trusting;
  trusting.group = "nogroup";  // trusting its group does not make world-writable acceptable
  EXPECT_TRUE(Contains(WorkerAttach(region.name(), trusting), "lets every user write it"));
}

TEST(RegionSafetyTest, AnotherUsersRegionIsAcceptedOnlyInTheTrustedGroup) {
  REQUIRE_ROOT();
  ScopedRegion region("group");
  MakeForeignRegion(region.name(), 0660);
  const RunResult refused = RunGateway(
      {"--region", region.name(), "--listen", "127.0.0.1:" + std::to_string(PickFreePort())});
  ASSERT_TRUE(refused.status) << refused.output;
  EXPECT_TRUE(ExitedWith(*refused.status, 1)) << refused.output;
  EXPECT_TRUE(Contains(refused.output, "no group is trusted")) << refused.output;

  START_GATEWAY_WITH(gw, region.name(), {"--group", "nogroup"});
  RegionOptions trusting;
  trusting.group = "nogroup";
  EXPECT_EQ(WorkerAttach(region.name(), trusting), "attached");
  EXPECT_TRUE(Contains(WorkerAttach(region.name()), "no group is trusted"));
  WorkerAdds(region.name(), 4, trusting);
  EXPECT_TRUE(ScrapeUntil(
      *gw, [](const Exposition& e) { return e.Value("it_safety_total") == 4; }, 5s))
      << gw->Log();
}

TEST(RegionSafetyTest, GatewayCreatesTheRegionWithItsGroupAndExactMode) {
  REQUIRE_ROOT();
  ScopedRegion region("create");
  const mode_t old_umask = ::umask(077);  // inherited: the mode must not depend on it
  std::string error;
  auto gw = Gateway::Start(region.name(), {"--group", "nogroup", "--mode", "0660"}, &error);
  ::umask(old_umask);
  ASSERT_NE(gw, nullptr) << error;
  struct stat st {};
  ASSERT_EQ(::stat(ShmPath(region.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_gid, kNogroup);
}

TEST(RegionSafetyTest, UnsafeModesAndUnknownGroupsAreUsageErrors) {
  ScopedRegion region("usage");
  for (const char* mode : {"0666", "0602", "0777", "04600", "02660", "01600", "17777"}) {
    const RunResult r = RunGateway({"--region", region.name(), "--mode", mode});
    ASSERT_TRUE(r.status) << mode << ": " << r.output;
    EXPECT_TRUE(ExitedWith(*r.status, 2)) << mode << ": " << DescribeStatus(*r.status) << r.output;
    EXPECT_TRUE(Contains(r.output, "--mode")) << mode << ": " << r.output;
  }
  const RunResult r = RunGateway({"--region", region.name(), "--group", "shmetrics-no-such"});
  ASSERT_TRUE(r.status) << r.output;
  EXPECT_TRUE(ExitedWith(*r.status, 2)) << DescribeStatus(*r.status) << r.output;
  EXPECT_TRUE(Contains(r.output, "unknown group \"shmetrics-no-such\"")) << r.output;
  EXPECT_EQ(shm::Region::CurrentInode(region.name()), 0u) << "a refused usage created the region";
}

// --- --reset -----------------------------------------------------------------------------------

TEST(RegionSafetyTest, ResetByAUserWhoMayNotRemoveTheRegionFailsSayingWhy) {
  REQUIRE_ROOT();
  ScopedRegion region("reset");
  shm::Region::OpenOrCreate(region.name());  // root's; /dev/shm is sticky
  const RunResult r = RunGatewayAs(kNobody, kNogroup, {"--region", region.name(), "--reset"});
  ASSERT_TRUE(r.status) << r.output;
  EXPECT_TRUE(ExitedWith(*r.status, 1)) << DescribeStatus(*r.status) << r.output;
  EXPECT_TRUE(Contains(r.output, "cannot remove")) << r.output;
  EXPECT_TRUE(Contains(r.output, std::strerror(EACCES)) || Contains(r.output, std::strerror(EPERM)))
      << r.output;
  EXPECT_FALSE(Contains(r.output, "no region named")) << r.output;
  EXPECT_NE(shm::Region::CurrentInode(region.name()), 0u) << "the region is gone";

  const RunResult removed = RunGateway({"--region", region.name(), "--reset"});
  ASSERT_TRUE(removed.status);
  EXPECT_TRUE(ExitedWith(*removed.status, 0)) << removed.output;
  EXPECT_TRUE(Contains(removed.output, "removed region " + region.name())) << removed.output;
  const RunResult none = RunGateway({"--region", region.name(), "--reset"});
  ASSERT_TRUE(none.status);
  EXPECT_TRUE(ExitedWith(*none.status, 0)) << none.output;
  EXPECT_TRUE(Contains(none.output, "no region named " + region.name())) << none.output;
}

}  // namespace
}  // namespace shmetrics::integration
