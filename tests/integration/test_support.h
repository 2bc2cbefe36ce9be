// Helpers for the multi-process integration tests: uniquely named regions that are always removed,
// the real shmetrics-gateway binary started on a free loopback port, a tiny blocking HTTP client,
// a parser of the text exposition format, RAII guards for forked children, and promtool.
//
// Everything here runs in the test (parent) process, which never attaches to a region itself:
// only forked children do, so each test starts from a process with no client state.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shmetrics::integration {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// --- Regions -----------------------------------------------------------------------------------

// "shmetrics-it-<tag>-<pid>-<n>": unique per process and call.
std::string UniqueRegionName(std::string_view tag);
// A unique path in the temp directory, and a whole file's contents ("" if unreadable).
std::string TempPath(std::string_view what);
std::string ReadFile(const std::string& path);

// Owns a region name: removes any stale region of that name now, and the region at scope exit,
// whether the test passed or not.
class ScopedRegion {
 public:
  explicit ScopedRegion(std::string_view tag);
  ~ScopedRegion();
  ScopedRegion(const ScopedRegion&) = delete;
  ScopedRegion& operator=(const ScopedRegion&) = delete;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

// --- Child processes ---------------------------------------------------------------------------

// A forked child. The destructor SIGKILLs and reaps it if it is still there, so no test leaves a
// process behind, even when an assertion returns early.
class ChildProcess {
 public:
  ChildProcess() = default;
  // Forks; the child runs `body` and _exit()s with its return value (an escaping exception: 99).
  // _exit on purpose: the child must not run the parent's (gtest's) atexit handlers.
  static ChildProcess Fork(const std::function<int()>& body);
  // Forks and execs `argv[0]` with stdout and stderr appended to `log_path` (if not empty).
  static ChildProcess Spawn(const std::vector<std::string>& argv, const std::string& log_path);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !status_; }
  void Signal(int sig) const;
  // Sends SIGKILL and reaps; returns the wait status.
  int KillAndWait();
  // Waits up to `timeout` for the child to exit; returns its wait status, nullopt on timeout.
  std::optional<int> Wait(Clock::duration timeout);
  // The wait status once reaped.
  std::optional<int> status() const { return status_; }

 private:
  void Reset();
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// "exited 0", "killed by signal 9", ...
std::string DescribeStatus(int status);
bool ExitedWith(int status, int code);

// A pipe for parent/child coordination. Both ends are closed by the destructor.
class Pipe {
 public:
  Pipe();
  ~Pipe();
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  int read_fd() const { return fds_[0]; }
  int write_fd() const { return fds_[1]; }
  void CloseRead();
  void CloseWrite();
  // Writes all of `data`; false on error.
  bool Write(std::string_view data) const;
  // Reads exactly `n` bytes within `timeout`; nullopt on timeout, EOF or error.
  std::optional<std::string> Read(size_t n, Clock::duration timeout) const;

 private:
  int fds_[2] = {-1, -1};
};

// In a child: blocks until the pipe's read end reports EOF (the parent closed the write end, or
// died). Used to park workers until the test lets them go.
void BlockUntilEof(int read_fd);

// --- The gateway -------------------------------------------------------------------------------

// A free TCP port on 127.0.0.1 right now (bind to port 0, read it, close). Another process may
// take it before we use it: callers retry on collision.
uint16_t PickFreePort();

struct HttpResult {
  int status = 0;                              // 0 when the request failed
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string error;  // why status is 0
};

// One blocking HTTP/1.1 request on a new connection to 127.0.0.1:port ("Connection: close"), with
// connect/send/receive bounded by `timeout`.
HttpResult HttpRequest(uint16_t port, std::string_view method, std::string_view path,
                       Clock::duration timeout = 5s);

// Connects, sends `GET path` and returns without reading: the request is in flight. Returns the
// socket (caller closes) or -1.
int SendRequestNoWait(uint16_t port, std::string_view path);

// The real shmetrics-gateway binary, serving `region` on 127.0.0.1:<free port>. SIGKILLed and
// reaped by the destructor if still running.
class Gateway {
 public:
  // Starts it and waits (up to 10 s) for GET /healthz to answer 200. Retries with another port
  // if the chosen one was taken. Returns nullptr (with the reason in *error) on failure.
  static std::unique_ptr<Gateway> Start(const std::string& region,
                                        const std::vector<std::string>& extra_args = {},
                                        std::string* error = nullptr);
  ~Gateway();

  uint16_t port() const { return port_; }
  pid_t pid() const { return process_.pid(); }
  ChildProcess& process() { return process_; }
  // Everything the gateway wrote to stdout and stderr so far.
  std::string Log() const;
  HttpResult Get(std::string_view path, Clock::duration timeout = 5s) const {
    return HttpRequest(port_, "GET", path, timeout);
  }
  int Kill() { return process_.KillAndWait(); }

 private:
  Gateway() = default;
  ChildProcess process_;
  uint16_t port_ = 0;
  std::string log_path_;
};

// Runs the gateway binary to completion (bounded by `timeout`, then SIGKILL). Returns the exit
// status and the combined stdout+stderr.
struct RunResult {
  std::optional<int> status;  // nullopt: had to be killed
  std::string output;
};
RunResult RunGateway(const std::vector<std::string>& args, Clock::duration timeout = 10s);

// --- The text exposition format ----------------------------------------------------------------

// A parsed /metrics body. Sample keys are the series exactly as written: `name{a="x",b="y"}`, or
// `name` without labels; label values stay escaped.
struct Exposition {
  std::map<std::string, double> samples;
  std::vector<std::string> duplicate_series;
  std::map<std::string, int> help_lines;  // family name -> number of HELP lines
  std::map<std::string, int> type_lines;  // family name -> number of TYPE lines
  std::map<std::string, std::string> types;
  std::vector<std::string> errors;  // lines that could not be parsed

  bool Has(const std::string& series) const { return samples.count(series) != 0; }
  // The sample's value, or nullopt when absent.
  std::optional<double> Value(const std::string& series) const;
  // Samples whose key starts with `prefix`.
  std::map<std::string, double> WithPrefix(const std::string& prefix) const;
};
Exposition ParseExposition(std::string_view body);

// GET /metrics, checked to be a 200, parsed. On failure returns an Exposition whose `errors`
// say why.
Exposition Scrape(const Gateway& gateway);

// --- promtool ----------------------------------------------------------------------------------

struct PromtoolResult {
  int exit_code = -1;  // -1: could not run it
  std::string output;  // stdout + stderr
};
// `promtool check metrics` with `body` on its stdin.
PromtoolResult PromtoolCheckMetrics(const std::string& body);

// --- Looking into a region (read only) ---------------------------------------------------------

// Writer slots by state, read from the region's slot headers without touching anything.
struct SlotCensus {
  int free = 0, active = 0, released = 0, folding = 0;
};
SlotCensus CountSlots(const std::string& region);

// --- Misc --------------------------------------------------------------------------------------

// Polls `condition` every 20 ms until it holds or `timeout` passes; returns its last result.
bool WaitFor(const std::function<bool()>& condition, Clock::duration timeout);

// A block of shared anonymous memory inherited by forked children (progress counters and the
// like). Unmapped by the destructor.
class SharedBlock {
 public:
  explicit SharedBlock(size_t bytes);
  ~SharedBlock();
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;
  void* data() const { return data_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace shmetrics::integration
