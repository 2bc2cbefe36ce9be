// The real shmetrics-inspect binary against regions in known states, made by real processes:
// empty; written by forked C++ workers, some alive and some SIGKILLed with no gateway to fold
// them; full; corrupted by overwriting bytes of /dev/shm/NAME. Every run checks that its --json
// is one JSON object (/usr/bin/python3's json.load) and that the region's bytes are unchanged.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "integration/test_support.h"
#include "shmetrics/shm/layout.h"
#include "shmetrics/shm/region.h"
#include "shmetrics/shmetrics.h"

namespace shmetrics::integration {
namespace {

struct InspectRun {
  std::optional<int> status;  // nullopt: killed at the timeout
  std::string out, err;
  std::map<std::string, std::string> json;  // flattened: "families.0.name" -> "it_requests"
  std::string json_error;                   // why the output did not parse as JSON
  int exit_code() const { return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1; }
  std::string Get(const std::string& key) const {
    auto it = json.find(key);
    return it == json.end() ? "<absent " + key + ">" : it->second;
  }
};

// Runs `argv` with stdout and stderr to files, bounded by 20 s; as `uid` when not -1.
std::pair<std::optional<int>, std::pair<std::string, std::string>> RunBinary(
    const std::vector<std::string>& argv, uid_t uid = static_cast<uid_t>(-1)) {
  const std::string out = TempPath("inspect.out"), err = TempPath("inspect.err");
  ChildProcess p = ChildProcess::Fork([&] {
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (o < 0 || e < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0) return 126;
    if (uid != static_cast<uid_t>(-1) && (::setgid(uid) != 0 || ::setuid(uid) != 0)) return 125;
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    return 127;
  });
  const std::optional<int> status = p.Wait(20s);
  p.KillAndWait();
  std::pair<std::string, std::string> text{ReadFile(out), ReadFile(err)};
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return {status, text};
}

// json.load, then one "key<TAB>value" line per scalar; fails loudly on anything but an object.
constexpr const char* kFlatten = R"(import json, sys
def walk(prefix, v):
    if isinstance(v, dict):
        for k, x in v.items(): walk(prefix + [str(k)], x)
    elif isinstance(v, list):
        print('\t'.join(['.'.join(prefix + ['length']), str(len(v))]))
        for i, x in enumerate(v): walk(prefix + [str(i)], x)
    else:
        s = 'null' if v is None else ('true' if v is True else ('false' if v is False else str(v)))
        print('.'.join(prefix) + '\t' + s.replace('\n', ' '))
with open(sys.argv[1]) as f:
    doc = json.load(f)
assert isinstance(doc, dict), 'not an object'
walk([], doc)
)";

void ParseJson(InspectRun& r) {
  const std::string path = TempPath("inspect.json");
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fwrite(r.out.data(), 1, r.out.size(), f);
    std::fclose(f);
  }
  auto [status, text] = RunBinary({"/usr/bin/python3", "-c", kFlatten, path});
  std::filesystem::remove(path);
  if (!status || !ExitedWith(*status, 0)) {
    r.json_error = "python3 json.load failed: " + text.second;
    return;
  }
  std::istringstream lines(text.first);
  for (std::string line; std::getline(lines, line);) {
    const size_t tab = line.find('\t');
    if (tab != std::string::npos) r.json[line.substr(0, tab)] = line.substr(tab + 1);
  }
}

InspectRun Inspect(const std::string& region, std::vector<std::string> extra = {},
                   uid_t uid = static_cast<uid_t>(-1)) {
  std::vector<std::string> argv = {SHMETRICS_INSPECT_BIN, "--region", region};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto [status, text] = RunBinary(argv, uid);
  InspectRun r{status, text.first, text.second, {}, {}};
  if (std::find(extra.begin(), extra.end(), "--json") != extra.end()) ParseJson(r);
  return r;
}

std::string ShmPath(const std::string& region) { return "/dev/shm/" + region; }

// Both renderings, checked to leave every byte of the region as it was.
struct Both {
  InspectRun text, json;
};
Both InspectUnchanged(const std::string& region, std::vector<std::string> extra = {}) {
  const std::string before = ReadFile(ShmPath(region));
  Both b{Inspect(region, extra), {}};
  extra.push_back("--json");
  b.json = Inspect(region, extra);
  const std::string after = ReadFile(ShmPath(region));
  EXPECT_FALSE(before.empty());
  EXPECT_TRUE(before == after) << "inspect changed the region's bytes";
  EXPECT_TRUE(b.json.json_error.empty()) << b.json.json_error << "\n" << b.json.out;
  EXPECT_EQ(b.text.exit_code(), b.json.exit_code()) << b.text.out << b.text.err;
  EXPECT_EQ(b.json.Get("exit_code"), std::to_string(b.json.exit_code()));
  return b;
}

// The warnings' kinds, as JSON lists them.
std::vector<std::string> WarningKinds(const InspectRun& r) {
  std::vector<std::string> kinds;
  const int n = std::stoi(r.json.count("warnings.length") ? r.Get("warnings.length") : "0");
  for (int i = 0; i < n; ++i) kinds.push_back(r.Get("warnings." + std::to_string(i) + ".kind"));
  return kinds;
}
bool HasWarning(const InspectRun& r, const std::string& kind) {
  const std::vector<std::string> k = WarningKinds(r);
  return std::find(k.begin(), k.end(), kind) != k.end();
}
// The index of the JSON slot row for `pid`, or -1.
int SlotOfPid(const InspectRun& r, pid_t pid, bool primary) {
  const int n = std::stoi(r.Get("slots.length"));
  for (int i = 0; i < n; ++i) {
    const std::string s = "slots." + std::to_string(i) + ".";
    if (r.Get(s + "pid") == std::to_string(pid) &&
        (r.Get(s + "primary_slot") == r.Get(s + "index")) == primary)
      return i;
  }
  return -1;
}

RegionOptions SmallRegion() {
  RegionOptions o;
  o.size_bytes = 1 << 20;
  o.max_families = 16;
  o.max_series = 64;
  o.max_slots = 8;
  o.max_cells = 4096;
  o.string_bytes = 16384;
  return o;
}

TEST(InspectTest, EmptyRegionIsHealthy) {
  ScopedRegion region("inspect-empty");
  const RegionOptions o = SmallRegion();
  ChildProcess creator = ChildProcess::Fork([&] {
    shm::Region::OpenOrCreate(region.name(), o);
    return 0;
  });
  ASSERT_TRUE(creator.Wait(20s).has_value());
  ASSERT_TRUE(ExitedWith(*creator.status(), 0));

  const Both b = InspectUnchanged(region.name());
  EXPECT_EQ(b.text.exit_code(), 0) << b.text.out << b.text.err;
  EXPECT_NE(b.text.out.find("none: healthy"), std::string::npos) << b.text.out;
  EXPECT_NE(b.text.out.find("families (0, most series first)"), std::string::npos) << b.text.out;
  const InspectRun& j = b.json;
  EXPECT_EQ(j.Get("error"), "null");
  EXPECT_EQ(j.Get("decoded"), "true");
  EXPECT_EQ(j.Get("header.layout_version"), std::to_string(shm::kLayoutVersion));
  EXPECT_EQ(j.Get("header.region_bytes"), std::to_string(o.size_bytes));
  EXPECT_EQ(j.Get("capacities.max_series"), "64");
  EXPECT_EQ(j.Get("capacities.max_slots"), "8");
  EXPECT_EQ(j.Get("capacities.max_families"), "16");
  EXPECT_EQ(j.Get("sections.families.used"), "0");
  EXPECT_EQ(j.Get("sections.series.capacity"), "64");
  EXPECT_EQ(j.Get("sections.slots.used"), "0");
  EXPECT_EQ(j.Get("families.length"), "0");
  EXPECT_EQ(j.Get("slots.length"), "0");
  EXPECT_EQ(j.Get("free_slots"), "8");
  EXPECT_EQ(j.Get("warnings.length"), "0");
  EXPECT_EQ(j.Get("gateway.serving"), "false");
  EXPECT_EQ(j.Get("file.mode"), "0600");
}

// Three workers write; one has a second writing thread; two are SIGKILLed and no gateway runs.
TEST(InspectTest, ShowsLiveAndDeadWorkersWithTheirPids) {
  ScopedRegion region("inspect-workers");
  const RegionOptions o = SmallRegion();
  Pipe stop;
  std::vector<Pipe> ready(3);
  std::vector<ChildProcess> workers;
  for (int w = 0; w < 3; ++w) {
    workers.push_back(ChildProcess::Fork([&, w] {
      stop.CloseWrite();
      Client& client = Client::Attach(region.name(), o);
      auto& requests =
          BuildCounter().Name("it_requests").Help("Requests.").Labels({"code"}).Register(client);
      for (const char* code : {"200", "404", "500", "503", "302"}) requests.Add({code}).Inc();
      auto& inflight = BuildGauge().Name("it_inflight").Help("In flight.").Register(client);
      inflight.Get().Set(w);
      auto& latency = BuildHistogram()
                          .Name("it_latency_seconds")
                          .Help("Latency.")
                          .Buckets({0.1, 1})
                          .Labels({"route"})
                          .Register(client);
      latency.Add({"/a"}).Observe(0.5);
      latency.Add({"/b"}).Observe(0.05);
      std::thread second;
      std::atomic<bool> written{false};
      if (w == 0) {  // a second writer thread: the process then owns two slots
        second = std::thread([&] {
          requests.Add({"200"}).Inc();
          written = true;
          BlockUntilEof(stop.read_fd());
        });
        while (!written) std::this_thread::sleep_for(1ms);
      }
      if (!ready[w].Write("r")) return 3;
      BlockUntilEof(stop.read_fd());
      if (second.joinable()) second.join();
      return 0;
    }));
    ASSERT_TRUE(ready[w].Read(1, 20s)) << "worker " << w;
  }
  const pid_t alive = workers[0].pid(), dead1 = workers[1].pid(), dead2 = workers[2].pid();
  workers[1].KillAndWait();
  workers[2].KillAndWait();

  const Both b = InspectUnchanged(region.name());
  const InspectRun& j = b.json;
  EXPECT_EQ(j.exit_code(), 1) << j.out << j.err;  // dead slots wait for a fold
  EXPECT_TRUE(HasWarning(j, "dead_slots")) << j.out;
  EXPECT_EQ(WarningKinds(j).size(), 1u) << j.out;
  EXPECT_EQ(j.Get("gateway.serving"), "false");
  // Families by series count: 5 codes, 2 routes, 1 gauge.
  EXPECT_EQ(j.Get("families.length"), "3");
  EXPECT_EQ(j.Get("families.0.name"), "it_requests");
  EXPECT_EQ(j.Get("families.0.type"), "counter");
  EXPECT_EQ(j.Get("families.0.series"), "5");
  EXPECT_EQ(j.Get("families.0.labels.0"), "code");
  EXPECT_EQ(j.Get("families.0.max_series"), "10000");
  EXPECT_EQ(j.Get("families.0.gauge_mode"), "null");
  EXPECT_EQ(j.Get("families.1.name"), "it_latency_seconds");
  EXPECT_EQ(j.Get("families.1.type"), "histogram");
  EXPECT_EQ(j.Get("families.1.series"), "2");
  EXPECT_EQ(j.Get("families.2.name"), "it_inflight");
  EXPECT_EQ(j.Get("families.2.gauge_mode"), "livesum");
  EXPECT_EQ(j.Get("families.0.dropped.series_limit"), "0");
  EXPECT_EQ(j.Get("sections.families.used"), "3");
  EXPECT_EQ(j.Get("sections.series.used"), "8");
  EXPECT_EQ(j.Get("sections.slots.used"), "4");  // 3 primaries + 1 thread
  EXPECT_EQ(j.Get("slots.length"), "4");
  EXPECT_EQ(j.Get("free_slots"), "4");

  const int a = SlotOfPid(j, alive, true), t = SlotOfPid(j, alive, false);
  const int d1 = SlotOfPid(j, dead1, true), d2 = SlotOfPid(j, dead2, true);
  ASSERT_GE(a, 0) << j.out;
  ASSERT_GE(t, 0) << j.out;
  ASSERT_GE(d1, 0) << j.out;
  ASSERT_GE(d2, 0) << j.out;
  auto slot = [&](int i, const std::string& key) {
    return j.Get("slots." + std::to_string(i) + "." + key);
  };
  EXPECT_EQ(slot(a, "liveness"), "live");
  EXPECT_EQ(slot(a, "lock"), "held");
  EXPECT_EQ(slot(a, "pid_running"), "true");
  EXPECT_EQ(slot(a, "proc_entry"), "true");
  EXPECT_EQ(slot(a, "threads"), "2");
  EXPECT_EQ(slot(t, "liveness"), "live");
  EXPECT_EQ(slot(t, "primary_slot"), slot(a, "index"));
  EXPECT_NE(slot(t, "tid"), slot(a, "tid"));
  for (int d : {d1, d2}) {
    EXPECT_EQ(slot(d, "state"), "active");
    EXPECT_EQ(slot(d, "liveness"), "dead");
    EXPECT_EQ(slot(d, "lock"), "free");
    EXPECT_EQ(slot(d, "pid_running"), "false");
    EXPECT_EQ(slot(d, "proc_entry"), "false");
    EXPECT_EQ(slot(d, "threads"), "1");
    EXPECT_NE(slot(d, "pages"), "0");
  }
  // The text names the dead with their pid, in aligned columns.
  const std::string& text = b.text.out;
  for (pid_t pid : {dead1, dead2}) {
    const std::string needle = " " + std::to_string(pid) + "  no such process";
    EXPECT_NE(text.find(needle), std::string::npos) << needle << "\n" << text;
  }
  EXPECT_NE(text.find("dead_slots: 2 writer slots wait for a gateway"), std::string::npos) << text;
  EXPECT_NE(text.find("writer slots (4 in use, 4 free"), std::string::npos) << text;

  // A gateway folds the dead ones; inspect then sees two slots and the gateway serving.
  std::string error;
  std::unique_ptr<Gateway> gw = Gateway::Start(region.name(), {}, &error);
  ASSERT_NE(gw, nullptr) << error;
  ASSERT_TRUE(WaitFor([&] { return CountSlots(region.name()).active == 2; }, 20s));
  const InspectRun after = Inspect(region.name(), {"--json"});
  EXPECT_EQ(after.exit_code(), 0) << after.out << after.err;
  EXPECT_EQ(after.Get("gateway.serving"), "true");
  EXPECT_EQ(after.Get("slots.length"), "2");
  EXPECT_EQ(after.Get("free_slots_with_pages"), "2");  // folded slots keep their zeroed pages
  EXPECT_EQ(after.Get("gateway.fold_epoch"), "1");
}

TEST(InspectTest, FullRegionShowsDropsAndWarnings) {
  ScopedRegion region("inspect-full");
  RegionOptions o = SmallRegion();
  o.max_series = 4;
  Pipe ready, stop;
  ChildProcess worker = ChildProcess::Fork([&] {
    stop.CloseWrite();
    Client& client = Client::Attach(region.name(), o);
    auto& capped = BuildCounter()
                       .Name("it_capped")
                       .Help("Capped.")
                       .Labels({"user"})
                       .MaxSeries(3)
                       .Register(client);
    for (const char* u : {"a", "b", "c", "d", "e"}) capped.Add({u}).Inc();  // d, e dropped
    auto& other = BuildCounter().Name("it_other").Help("Other.").Labels({"k"}).Register(client);
    for (const char* k : {"x", "y", "z"}) other.Add({k}).Inc();  // the 4th series fits, no more
    capped.Add({"a"}).Add(-1);                                   // an invalid value: dropped
    if (!ready.Write("r")) return 3;
    BlockUntilEof(stop.read_fd());
    return 0;
  });
  ASSERT_TRUE(ready.Read(1, 20s));

  const Both b = InspectUnchanged(region.name());
  const InspectRun& j = b.json;
  EXPECT_EQ(j.exit_code(), 1) << j.out << j.err;
  EXPECT_EQ(j.Get("sections.series.used"), "4");
  EXPECT_EQ(j.Get("sections.series.percent"), "100");
  EXPECT_TRUE(HasWarning(j, "section_full")) << j.out;
  EXPECT_TRUE(HasWarning(j, "drops")) << j.out;
  EXPECT_TRUE(HasWarning(j, "family_cap")) << j.out;
  EXPECT_EQ(j.Get("families.0.name"), "it_capped");
  EXPECT_EQ(j.Get("families.0.series"), "3");
  EXPECT_EQ(j.Get("families.0.max_series"), "3");
  EXPECT_EQ(j.Get("families.0.dropped.series_limit"), "2");
  EXPECT_EQ(j.Get("families.0.dropped.invalid_value"), "1");
  EXPECT_EQ(j.Get("families.1.series"), "1");
  EXPECT_EQ(j.Get("drops.invalid_value"), "1");
  // The gateway's own numbers for the same region, served the same way.
  std::string error;
  std::unique_ptr<Gateway> gw = Gateway::Start(region.name(), {}, &error);
  ASSERT_NE(gw, nullptr) << error;
  const Exposition e = Scrape(*gw);
  ASSERT_TRUE(e.errors.empty());
  for (const char* reason :
       {"series_limit", "invalid_value", "region_full", "no_slot", "no_page", "exemplar"}) {
    const auto served =
        e.Value("shmetrics_dropped_updates_total{reason=\"" + std::string(reason) + "\"}");
    ASSERT_TRUE(served) << reason;
    EXPECT_EQ(j.Get("drops." + std::string(reason)),
              std::to_string(static_cast<long long>(*served)))
        << reason;
  }
  EXPECT_EQ(j.Get("drops.registration_errors"),
            std::to_string(static_cast<long long>(
                e.Value("shmetrics_registration_errors_total").value_or(-1))));
  EXPECT_NE(b.text.out.find("section_full: series 100.0% full (4 of 4)"), std::string::npos)
      << b.text.out;
}

// Overwrites `bytes` at `offset` of /dev/shm/NAME, as a stray or hostile writer would.
void Scribble(const std::string& region, uint64_t offset, const void* bytes, size_t n) {
  const int fd = ::open(ShmPath(region).c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::pwrite(fd, bytes, n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
  ::close(fd);
}

TEST(InspectTest, CorruptRecordsAndHeadersAreNamedNotFatal) {
  ScopedRegion region("inspect-corrupt");
  const RegionOptions o = SmallRegion();
  ChildProcess worker = ChildProcess::Fork([&] {
    Client& client = Client::Attach(region.name(), o);
    BuildCounter().Name("it_first").Help("First.").Register(client).Get().Inc();
    BuildCounter()
        .Name("it_second")
        .Help("Second.")
        .Labels({"l"})
        .Register(client)
        .Add({"v"})
        .Inc();
    BuildCounter().Name("it_third").Help("Third.").Register(client).Get().Inc();
    return 0;
  });
  ASSERT_TRUE(worker.Wait(20s).has_value());
  ASSERT_TRUE(ExitedWith(*worker.status(), 0));
  const InspectRun clean = Inspect(region.name(), {"--json"});
  ASSERT_TRUE(clean.json_error.empty()) << clean.json_error;
  const uint64_t families = std::stoull(clean.Get("offsets.families"));
  const uint64_t slots = std::stoull(clean.Get("offsets.slots"));

  // Family record #1 gets an unknown type: it and its series are rejected, each with its offset.
  const uint64_t record = families + 1 * sizeof(shm::FamilyRecord);
  const uint8_t bad_type = 9;
  Scribble(region.name(), record + offsetof(shm::FamilyRecord, type), &bad_type, 1);
  // Slot 5 (free) gets an unknown state.
  const uint32_t bad_state = 7;
  Scribble(region.name(), slots + 5 * sizeof(shm::SlotHeader), &bad_state, sizeof bad_state);
  {
    const Both b = InspectUnchanged(region.name());
    const InspectRun& j = b.json;
    EXPECT_EQ(j.exit_code(), 1) << j.out << j.err;
    EXPECT_EQ(j.Get("families.length"), "2");
    bool family_named = false, series_named = false, slot_named = false;
    for (int i = 0; i < std::stoi(j.Get("warnings.length")); ++i) {
      const std::string w = "warnings." + std::to_string(i) + ".";
      const std::string message = j.Get(w + "message");
      if (message.starts_with("family #1: unknown type 9")) {
        family_named = true;
        EXPECT_EQ(j.Get(w + "kind"), "corrupt_record");
        EXPECT_EQ(j.Get(w + "offset"), std::to_string(record));
      }
      if (message.starts_with("series #1:")) {
        series_named = true;
        EXPECT_EQ(j.Get(w + "offset"),
                  std::to_string(std::stoull(j.Get("offsets.series")) + sizeof(shm::SeriesRecord)));
      }
      if (message.starts_with("slot 5: unknown state 7")) {
        slot_named = true;
        EXPECT_EQ(j.Get(w + "kind"), "corrupt_slot");
      }
    }
    EXPECT_TRUE(family_named && series_named && slot_named) << j.out;
    EXPECT_NE(b.text.out.find("corrupt_record: family #1: unknown type 9"), std::string::npos)
        << b.text.out;
  }

  // A layout version this build does not know: the header is still shown, the rest refused.
  const uint32_t future = shm::kLayoutVersion + 1;
  Scribble(region.name(), offsetof(shm::RegionHeader, layout_version), &future, sizeof future);
  {
    const Both b = InspectUnchanged(region.name());
    const InspectRun& j = b.json;
    EXPECT_EQ(j.exit_code(), 2) << j.out << j.err;
    EXPECT_EQ(j.Get("decoded"), "false");
    EXPECT_EQ(j.Get("header.layout_version"), std::to_string(future));
    EXPECT_TRUE(HasWarning(j, "layout_version")) << j.out;
    EXPECT_NE(j.Get("error").find("layout version " + std::to_string(future)), std::string::npos);
    EXPECT_NE(b.text.err.find("region \"" + region.name() + "\""), std::string::npos) << b.text.err;
  }
  const uint32_t current = shm::kLayoutVersion;
  Scribble(region.name(), offsetof(shm::RegionHeader, layout_version), &current, sizeof current);

  // Capacities that do not match the offsets: a corrupt header, named.
  const uint32_t bogus_series = 1000;
  Scribble(region.name(),
           offsetof(shm::RegionHeader, capacities) + offsetof(shm::RegionCapacities, max_series),
           &bogus_series, sizeof bogus_series);
  {
    const Both b = InspectUnchanged(region.name());
    EXPECT_EQ(b.json.exit_code(), 2);
    EXPECT_TRUE(HasWarning(b.json, "corrupt_header")) << b.json.out;
    EXPECT_NE(b.json.Get("error").find("corrupt header"), std::string::npos) << b.json.out;
  }

  // Not a region at all.
  const uint64_t junk = 0x0123456789abcdefull;
  Scribble(region.name(), 0, &junk, sizeof junk);
  {
    const Both b = InspectUnchanged(region.name());
    EXPECT_EQ(b.json.exit_code(), 2);
    EXPECT_EQ(b.json.Get("header.magic_ok"), "false");
    EXPECT_NE(b.json.Get("error").find("bad magic"), std::string::npos) << b.json.out;
  }
}

TEST(InspectTest, ReadPermissionIsEnough) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give the region to nobody";
  ScopedRegion region("inspect-readonly");
  const RegionOptions o = SmallRegion();
  ChildProcess creator = ChildProcess::Fork([&] {
    Client& client = Client::Attach(region.name(), o);
    BuildCounter().Name("it_ro").Help("Read only.").Register(client).Get().Inc();
    return 0;
  });
  ASSERT_TRUE(creator.Wait(20s).has_value());
  ASSERT_TRUE(ExitedWith(*creator.status(), 0));
  // nobody owns it, read-only: a read-write open would fail with EACCES.
  ASSERT_EQ(::chown(ShmPath(region.name()).c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chmod(ShmPath(region.name()).c_str(), 0400), 0);
  const InspectRun j = Inspect(region.name(), {"--json"}, 65534);
  ASSERT_TRUE(j.json_error.empty()) << j.json_error << j.out << j.err;
  EXPECT_EQ(j.Get("error"), "null") << j.out;
  EXPECT_EQ(j.Get("families.0.name"), "it_ro");
  EXPECT_EQ(j.Get("file.mode"), "0400");
  EXPECT_EQ(j.exit_code(), 1) << j.out;  // the creator exited: its slot waits for a fold
  EXPECT_TRUE(HasWarning(j, "dead_slots")) << j.out;
}

TEST(InspectTest, UsageErrorsAndMissingRegions) {
  const InspectRun bad_name = Inspect("../etc");
  EXPECT_EQ(bad_name.exit_code(), 2);
  EXPECT_NE(bad_name.err.find("invalid region name \"../etc\""), std::string::npos) << bad_name.err;
  const InspectRun missing = Inspect("shmetrics-it-inspect-none-" + std::to_string(::getpid()));
  EXPECT_EQ(missing.exit_code(), 2);
  EXPECT_NE(missing.err.find("No such file or directory"), std::string::npos) << missing.err;
  auto [status, text] = RunBinary({SHMETRICS_INSPECT_BIN, "--bogus"});
  ASSERT_TRUE(status);
  EXPECT_TRUE(ExitedWith(*status, 2));
  EXPECT_NE(text.second.find("unknown option '--bogus'"), std::string::npos);
  auto [help_status, help] = RunBinary({SHMETRICS_INSPECT_BIN, "--help"});
  ASSERT_TRUE(help_status);
  EXPECT_TRUE(ExitedWith(*help_status, 0));
  EXPECT_NE(help.first.find("Exit status: 0 healthy"), std::string::npos);
  auto [version_status, version] = RunBinary({SHMETRICS_INSPECT_BIN, "--version"});
  ASSERT_TRUE(version_status);
  EXPECT_TRUE(ExitedWith(*version_status, 0));
  EXPECT_TRUE(std::regex_match(
      version.first,
      std::regex(R"(shmetrics-inspect, version \d+\.\d+\.\d+ \(region layout \d+\)\n)")))
      << version.first;
}

}  // namespace
}  // namespace shmetrics::integration
