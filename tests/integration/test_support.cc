#include "integration/test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "shmetrics/shm/region.h"

#ifndef SHMETRICS_GATEWAY_BIN
#error "SHMETRICS_GATEWAY_BIN must name the shmetrics-gateway binary"
#endif
#ifndef SHMETRICS_PROMTOOL_BIN
#define SHMETRICS_PROMTOOL_BIN "/usr/bin/promtool"
#endif

namespace shmetrics::integration {
std::atomic<int> g_unique{0};

std::string TempPath(std::string_view what) {
  return (std::filesystem::temp_directory_path() /
          ("shmetrics-it-" + std::to_string(::getpid()) + "-" + std::to_string(g_unique++) + "-" +
           std::string(what)))
      .string();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

// Fork + exec with stdin from `stdin_path` (or /dev/null) and stdout+stderr appended to
// `log_path` (or /dev/null). Everything the child needs is prepared before fork().
ChildProcess SpawnWith(const std::vector<std::string>& argv, const std::string& stdin_path,
                       const std::string& log_path) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string in = stdin_path.empty() ? "/dev/null" : stdin_path;
  const std::string out = log_path.empty() ? "/dev/null" : log_path;
  return ChildProcess::Fork([&]() -> int {
    // Only async-signal-safe calls from here on.
    const int in_fd = ::open(in.c_str(), O_RDONLY);
    const int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in_fd < 0 || out_fd < 0) return 126;
    ::dup2(in_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(out_fd, 2);
    ::execv(args[0], args.data());
    return 127;
  });
}

void SetTimeouts(int fd, Clock::duration timeout) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(us / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1000000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

int ConnectLoopback(uint16_t port, Clock::duration timeout, std::string* error) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  SetTimeouts(fd, timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    *error = std::string("connect: ") + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::optional<double> ParseValue(std::string_view text) {
  if (text == "+Inf" || text == "Inf") return HUGE_VAL;
  if (text == "-Inf") return -HUGE_VAL;
  if (text == "NaN") return std::nan("");
  const std::string s(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0' || errno == ERANGE) return std::nullopt;
  return v;
}

bool IsNameChar(char c, bool first) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
         (!first && std::isdigit(static_cast<unsigned char>(c)));
}

}  // namespace

// --- Regions -----------------------------------------------------------------------------------

std::string UniqueRegionName(std::string_view tag) {
  return "shmetrics-it-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(g_unique++);
}

ScopedRegion::ScopedRegion(std::string_view tag) : name_(UniqueRegionName(tag)) {
  shm::Region::Remove(name_);
}

ScopedRegion::~ScopedRegion() { shm::Region::Remove(name_); }

// --- Child processes ---------------------------------------------------------------------------

ChildProcess ChildProcess::Fork(const std::function<int()>& body) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Never outlive the test: a crashed test must not leave workers or gateways behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(98);
    int code = 99;
    try {
      code = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: %s\n", static_cast<int>(::getpid()), e.what());
    } catch (...) {
      std::fprintf(stderr, "child %d: unknown exception\n", static_cast<int>(::getpid()));
    }
    ::_exit(code);
  }
  ChildProcess c;
  c.pid_ = pid;
  return c;
}

ChildProcess ChildProcess::Spawn(const std::vector<std::string>& argv,
                                 const std::string& log_path) {
  return SpawnWith(argv, "", log_path);
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(other.pid_), status_(other.status_) {
  other.pid_ = -1;
  other.status_.reset();
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    Reset();
    pid_ = other.pid_;
    status_ = other.status_;
    other.pid_ = -1;
    other.status_.reset();
  }
  return *this;
}

ChildProcess::~ChildProcess() { Reset(); }

void ChildProcess::Reset() {
  if (running()) KillAndWait();
  pid_ = -1;
  status_.reset();
}

void ChildProcess::Signal(int sig) const {
  if (running()) ::kill(pid_, sig);
}

int ChildProcess::KillAndWait() {
  if (status_) return *status_;
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGKILL);
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  status_ = st;
  return st;
}

std::optional<int> ChildProcess::Wait(Clock::duration timeout) {
  if (status_) return status_;
  if (pid_ <= 0) return std::nullopt;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int st = 0;
    const pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = st;
      return status_;
    }
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(2ms);
  }
}

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return "exited " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

bool ExitedWith(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

Pipe::Pipe() {
  if (::pipe2(fds_, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
}

Pipe::~Pipe() {
  CloseRead();
  CloseWrite();
}

void Pipe::CloseRead() {
  if (fds_[0] >= 0) ::close(fds_[0]);
  fds_[0] = -1;
}

void Pipe::CloseWrite() {
  if (fds_[1] >= 0) ::close(fds_[1]);
  fds_[1] = -1;
}

bool Pipe::Write(std::string_view data) const {
  while (!data.empty()) {
    const ssize_t n = ::write(fds_[1], data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::optional<std::string> Pipe::Read(size_t n, Clock::duration timeout) const {
  const auto deadline = Clock::now() + timeout;
  std::string out;
  while (out.size() < n) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fds_[0], POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    char buf[256];
    const ssize_t got = ::read(fds_[0], buf, std::min(sizeof buf, n - out.size()));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return std::nullopt;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

void BlockUntilEof(int read_fd) {
  char buf[64];
  for (;;) {
    const ssize_t n = ::read(read_fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR)) return;
  }
}

// --- The gateway -------------------------------------------------------------------------------

uint16_t PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  uint16_t port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

HttpResult HttpRequest(uint16_t port, std::string_view method, std::string_view path,
                       Clock::duration timeout) {
  HttpResult result;
  const auto deadline = Clock::now() + timeout;
  const int fd = ConnectLoopback(port, timeout, &result.error);
  if (fd < 0) return result;
  std::string request;
  request.append(method).append(" ").append(path).append(" HTTP/1.1\r\n");
  request += "Host: 127.0.0.1\r\nConnection: close\r\n";
  if (method != "GET" && method != "HEAD") request += "Content-Length: 0\r\n";
  request += "\r\n";
  if (!SendAll(fd, request)) {
    result.error = std::string("send: ") + std::strerror(errno);
    ::close(fd);
    return result;
  }
  std::string raw;
  size_t header_end = std::string::npos;
  std::optional<size_t> content_length;
  for (;;) {
    if (header_end != std::string::npos && content_length &&
        raw.size() >= header_end + 4 + *content_length) {
      break;
    }
    if (Clock::now() >= deadline) {
      result.error = "timed out reading the response";
      ::close(fd);
      return result;
    }
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      result.error = std::string("recv: ") + std::strerror(errno);
      ::close(fd);
      return result;
    }
    if (n == 0) break;  // server closed: the body ends here
    raw.append(buf, static_cast<size_t>(n));
    if (header_end == std::string::npos) {
      header_end = raw.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        std::istringstream lines(raw.substr(0, header_end));
        std::string line;
        std::getline(lines, line);
        while (std::getline(lines, line)) {
          if (!line.empty() && line.back() == '\r') line.pop_back();
          const size_t colon = line.find(':');
          if (colon == std::string::npos) continue;
          std::string value = line.substr(colon + 1);
          while (!value.empty() && value.front() == ' ') value.erase(0, 1);
          result.headers[Lower(line.substr(0, colon))] = value;
        }
        if (auto it = result.headers.find("content-length"); it != result.headers.end()) {
          content_length = std::stoul(it->second);
        }
      }
    }
  }
  ::close(fd);
  if (header_end == std::string::npos) {
    result.error = "no complete response header in " + std::to_string(raw.size()) + " bytes";
    return result;
  }
  // "HTTP/1.1 200 OK"
  const size_t sp = raw.find(' ');
  if (sp == std::string::npos || sp > header_end) {
    result.error = "bad status line";
    return result;
  }
  result.status = std::atoi(raw.c_str() + sp + 1);
  result.body = raw.substr(header_end + 4);
  if (content_length && result.body.size() > *content_length) result.body.resize(*content_length);
  return result;
}

int SendRequestNoWait(uint16_t port, std::string_view path) {
  std::string error;
  const int fd = ConnectLoopback(port, 2s, &error);
  if (fd < 0) return -1;
  std::string request = "GET " + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  SendAll(fd, request);
  return fd;
}

std::unique_ptr<Gateway> Gateway::Start(const std::string& region,
                                        const std::vector<std::string>& extra_args,
                                        std::string* error) {
  std::string why;
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::unique_ptr<Gateway> gw(new Gateway());
    gw->port_ = PickFreePort();
    gw->log_path_ = TempPath("gateway.log");
    std::vector<std::string> argv = {SHMETRICS_GATEWAY_BIN, "--region", region, "--listen",
                                     "127.0.0.1:" + std::to_string(gw->port_)};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    gw->process_ = ChildProcess::Spawn(argv, gw->log_path_);
    const auto deadline = Clock::now() + 10s;
    bool exited = false;
    while (Clock::now() < deadline) {
      if (gw->process_.Wait(0s)) {
        exited = true;
        break;
      }
      const HttpResult r = HttpRequest(gw->port_, "GET", "/healthz", 1s);
      if (r.status == 200) return gw;
      std::this_thread::sleep_for(10ms);
    }
    const std::string log = gw->Log();
    why = exited ? "gateway " + DescribeStatus(*gw->process_.status()) + ": " + log
                 : "gateway not healthy within 10 s: " + log;
    // Only a port taken between PickFreePort and bind is worth another try.
    if (!exited || log.find("in use") == std::string::npos) break;
  }
  if (error != nullptr) *error = why;
  return nullptr;
}

Gateway::~Gateway() {
  process_.KillAndWait();
  if (!log_path_.empty()) std::filesystem::remove(log_path_);
}

std::string Gateway::Log() const { return ReadFile(log_path_); }

RunResult RunGateway(const std::vector<std::string>& args, Clock::duration timeout) {
  const std::string log = TempPath("run.log");
  std::vector<std::string> argv = {SHMETRICS_GATEWAY_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess p = ChildProcess::Spawn(argv, log);
  RunResult r;
  r.status = p.Wait(timeout);
  p.KillAndWait();
  r.output = ReadFile(log);
  std::filesystem::remove(log);
  return r;
}

// --- The text exposition format ----------------------------------------------------------------

std::optional<double> Exposition::Value(const std::string& series) const {
  auto it = samples.find(series);
  if (it == samples.end()) return std::nullopt;
  return it->second;
}

std::map<std::string, double> Exposition::WithPrefix(const std::string& prefix) const {
  std::map<std::string, double> out;
  for (auto it = samples.lower_bound(prefix); it != samples.end() && it->first.starts_with(prefix);
       ++it) {
    out.insert(*it);
  }
  return out;
}

Exposition ParseExposition(std::string_view body) {
  Exposition e;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find('\n', pos);
    if (eol == std::string_view::npos) {
      e.errors.push_back("last line has no newline");
      eol = body.size();
    }
    const std::string_view line = body.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty()) continue;
    if (line.front() == '#') {
      std::istringstream in{std::string(line)};
      std::string hash, keyword, name, rest;
      in >> hash >> keyword >> name;
      if (keyword == "HELP") {
        ++e.help_lines[name];
      } else if (keyword == "TYPE") {
        in >> rest;
        ++e.type_lines[name];
        e.types[name] = rest;
      }
      continue;
    }
    size_t i = 0;
    while (i < line.size() && IsNameChar(line[i], i == 0)) ++i;
    if (i == 0) {
      e.errors.push_back("no metric name: " + std::string(line));
      continue;
    }
    if (i < line.size() && line[i] == '{') {
      bool quoted = false, ok = false;
      for (++i; i < line.size(); ++i) {
        const char c = line[i];
        if (quoted) {
          if (c == '\\') {
            ++i;  // skip the escaped character
          } else if (c == '"') {
            quoted = false;
          }
        } else if (c == '"') {
          quoted = true;
        } else if (c == '}') {
          ok = true;
          ++i;
          break;
        }
      }
      if (!ok) {
        e.errors.push_back("unterminated labels: " + std::string(line));
        continue;
      }
    }
    const std::string key(line.substr(0, i));
    if (i >= line.size() || line[i] != ' ') {
      e.errors.push_back("no value: " + std::string(line));
      continue;
    }
    std::string_view rest = line.substr(i + 1);
    const std::string_view value_text = rest.substr(0, rest.find(' '));
    const std::optional<double> value = ParseValue(value_text);
    if (!value) {
      e.errors.push_back("bad value: " + std::string(line));
      continue;
    }
    if (!e.samples.emplace(key, *value).second) e.duplicate_series.push_back(key);
  }
  return e;
}

Exposition Scrape(const Gateway& gateway) {
  const HttpResult r = gateway.Get("/metrics");
  if (r.status != 200) {
    Exposition e;
    e.errors.push_back("GET /metrics: status " + std::to_string(r.status) + " " + r.error);
    return e;
  }
  return ParseExposition(r.body);
}

// --- promtool ----------------------------------------------------------------------------------

PromtoolResult PromtoolCheckMetrics(const std::string& body) {
  PromtoolResult result;
  if (::access(SHMETRICS_PROMTOOL_BIN, X_OK) != 0) {
    result.output = std::string(SHMETRICS_PROMTOOL_BIN) + " not found (Debian package prometheus)";
    return result;
  }
  const std::string in_path = TempPath("body.txt");
  const std::string out_path = TempPath("promtool.out");
  {
    std::ofstream out(in_path, std::ios::binary);
    out << body;
  }
  ChildProcess p = SpawnWith({SHMETRICS_PROMTOOL_BIN, "check", "metrics"}, in_path, out_path);
  const std::optional<int> st = p.Wait(30s);
  result.output = ReadFile(out_path);
  if (st && WIFEXITED(*st)) {
    result.exit_code = WEXITSTATUS(*st);
  } else {
    result.output += "\n(promtool did not finish: " + (st ? DescribeStatus(*st) : "timeout") + ")";
  }
  std::filesystem::remove(in_path);
  std::filesystem::remove(out_path);
  return result;
}

// --- Looking into a region (read only) ---------------------------------------------------------

SlotCensus CountSlots(const std::string& region) {
  SlotCensus census;
  const std::unique_ptr<shm::Region> r = shm::Region::Open(region);
  for (uint32_t i = 0; i < r->layout().max_slots; ++i) {
    switch (static_cast<shm::SlotState>(r->slot(i)->state.load(std::memory_order_acquire))) {
      case shm::SlotState::kFree:
        ++census.free;
        break;
      case shm::SlotState::kActive:
        ++census.active;
        break;
      case shm::SlotState::kReleased:
        ++census.released;
        break;
      case shm::SlotState::kFolding:
        ++census.folding;
        break;
    }
  }
  return census;
}

// --- Misc --------------------------------------------------------------------------------------

bool WaitFor(const std::function<bool()>& condition, Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(20ms);
  }
}

SharedBlock::SharedBlock(size_t bytes) : bytes_(bytes) {
  data_ = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (data_ == MAP_FAILED) throw std::runtime_error(std::string("mmap: ") + std::strerror(errno));
}

SharedBlock::~SharedBlock() { ::munmap(data_, bytes_); }

}  // namespace shmetrics::integration
