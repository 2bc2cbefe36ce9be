// Fuzzes the gateway's HTTP front: raw bytes from a client into a real HttpServer. The server has
// no in-process seam below the socket (Beast parses off the stream), so the fuzz process runs one
// HttpServer on an ephemeral loopback port, with the real MetricsEndpoint on /metrics (negotiation,
// gzip, the scrape deadline; the renderer returns a fixed body per format), /healthz, and /boom
// (a handler that throws), and sends each input over a fresh TCP connection.
//
// Input: byte 0 is flags, the rest the bytes to send.
//   flags & 7 == 7   keep our write side open after sending (the server must end the connection
//                    by its own deadlines); otherwise half-close it (shutdown SHUT_WR) at once
//   flags >> 3 & 3   the bytes go out in 1..4 writes
// Findings, besides sanitizer reports:
//   - what came back is not a sequence of well-formed HTTP/1.x responses: a status line with
//     version HTTP/1.1 (or 1.0), a status the server or these handlers can give, header fields with
//     token names and no control characters, at most one Content-Length and a body framed by it
//     (or, for HEAD, none), nothing after a response that said Connection: close;
//   - a plain GET or HEAD of /metrics or /healthz at the start of the input (no body framing, no
//     scrape deadline) is not answered 200;
//   - the connection is still open 3 s after its deadlines (request_timeout 300 ms here);
//   - the server stops answering: after every input a fresh connection must get 200 for
//     GET /healthz;
//   - an exception escaped to an io thread (HttpServerStats::internal_errors).
// An answer is not required: the server may close without one (garbage, or a reset).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include "fuzz_report.h"
#include "http_server.h"
#include "metrics_endpoint.h"
#include "negotiation.h"

namespace {

namespace gw = shmetrics::gateway;
using shmetrics::fuzz::Finding;
using Clock = std::chrono::steady_clock;

constexpr const char* kTarget = "http_server_fuzz_test";
constexpr auto kRequestTimeout = std::chrono::milliseconds(300);
constexpr auto kGrace = std::chrono::seconds(3);  // on top of the server's own deadlines

struct Server {
  prometheus::Registry registry;
  gw::MetricsEndpoint endpoint{registry};
  std::unique_ptr<gw::HttpServer> http;
};

Server& TheServer() {
  static Server* server = [] {
    auto* s = new Server();  // lives until exit, like the gateway's
    gw::HttpServerOptions options;
    options.listen = {{"127.0.0.1", 0}};
    options.threads = 2;
    options.request_timeout = kRequestTimeout;
    options.idle_timeout = kRequestTimeout;
    options.max_connections = 64;
    std::map<std::string, gw::HttpHandler> routes;
    routes["/metrics"] = [s](const gw::HttpRequestInfo& r) {
      return s->endpoint.Handle(r, [](gw::Format f) -> std::string {
        switch (f) {
          case gw::Format::kText:
            return "# TYPE up gauge\nup 1\n";
          case gw::Format::kOpenMetrics:
            return "# TYPE up gauge\nup 1\n# EOF\n";
          case gw::Format::kProtobuf: {
            static const char kUp[] = "\x06\x0a\x02up\x18\x01";  // [6][name "up", GAUGE]
            return std::string(kUp, sizeof kUp - 1);
          }
        }
        return {};
      });
    };
    routes["/healthz"] = [](const gw::HttpRequestInfo&) {
      gw::HttpResponse r;
      r.body = "ok\n";
      return r;
    };
    routes["/boom"] = [](const gw::HttpRequestInfo&) -> gw::HttpResponse {
      throw std::runtime_error("boom");
    };
    s->http = std::make_unique<gw::HttpServer>(options, std::move(routes));
    s->http->Start();
    return s;
  }();
  return *server;
}

int Connect(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Finding(kTarget, std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    // A signal (libFuzzer's timers) can interrupt a blocking connect; the kernel then completes
    // it asynchronously: wait for that, bounded, instead of calling the interruption a finding.
    int error = errno;
    if (error == EINTR) {
      pollfd p{fd, POLLOUT, 0};
      int ready;
      do {
        ready = ::poll(&p, 1, 5000);
      } while (ready < 0 && errno == EINTR);
      socklen_t len = sizeof error;
      if (ready == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
      if (ready == 0) error = ETIMEDOUT;
    }
    if (error != 0)
      Finding(kTarget,
              std::string("the server does not accept connections: ") + std::strerror(error));
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Everything the server sends until it closes (or resets) the connection, or the deadline.
// *closed says whether it closed.
std::string ReadAll(int fd, Clock::time_point deadline, bool* closed) {
  std::string in;
  char buf[16384];
  *closed = false;
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return in;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return in;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    *closed = true;  // EOF, or ECONNRESET: the server closed with our bytes unread
    return in;
  }
}

bool IsTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// Checks that `in` is a sequence of well-formed responses (an empty one is fine). "" or the
// problem.
std::string CheckResponses(std::string_view in) {
  static const std::set<int> kStatuses = {200, 400, 404, 405, 413, 431, 500, 501, 503};
  size_t pos = 0;
  for (int n = 1; pos < in.size(); ++n) {
    const std::string which = "response " + std::to_string(n) + ": ";
    const size_t eol = in.find("\r\n", pos);
    if (eol == std::string_view::npos) return which + "no CRLF after the status line";
    const std::string_view status_line = in.substr(pos, eol - pos);
    if (!(status_line.starts_with("HTTP/1.1 ") || status_line.starts_with("HTTP/1.0 ")))
      return which + "status line \"" + std::string(status_line.substr(0, 40)) +
             "\" is not HTTP/1.1 or HTTP/1.0";
    if (status_line.size() < 13 || status_line[12] != ' ' ||
        !(status_line[9] >= '1' && status_line[9] <= '5') || !std::isdigit(status_line[10]) ||
        !std::isdigit(status_line[11]))
      return which + "malformed status line \"" + std::string(status_line) + "\"";
    const int status = std::stoi(std::string(status_line.substr(9, 3)));
    if (kStatuses.count(status) == 0) return which + "unexpected status " + std::to_string(status);
    for (char c : status_line.substr(13)) {
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
        return which + "control character in the reason";
    }
    pos = eol + 2;
    bool has_length = false, close = false, chunked = false;
    uint64_t length = 0;
    while (true) {
      const size_t end = in.find("\r\n", pos);
      if (end == std::string_view::npos) return which + "header block not terminated";
      const std::string_view line = in.substr(pos, end - pos);
      pos = end + 2;
      if (line.empty()) break;
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos || colon == 0)
        return which + "header line without a name";
      const std::string_view name = line.substr(0, colon);
      for (char c : name) {
        if (!IsTokenChar(c))
          return which + "header name \"" + std::string(name) + "\" is not a token";
      }
      std::string_view value = line.substr(colon + 1);
      for (char c : value) {
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
          return which + "control character in header " + std::string(name);
      }
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
        value.remove_suffix(1);
      if (IEquals(name, "content-length")) {
        if (has_length) return which + "two Content-Length fields";
        if (value.empty() || value.size() > 18) return which + "bad Content-Length";
        for (char c : value) {
          if (!std::isdigit(static_cast<unsigned char>(c))) return which + "bad Content-Length";
        }
        has_length = true;
        length = std::stoull(std::string(value));
      } else if (IEquals(name, "connection")) {
        close = close || IEquals(value, "close");
      } else if (IEquals(name, "transfer-encoding")) {
        chunked = true;
      }
    }
    if (chunked) return which + "a chunked response (the server always sends Content-Length)";
    if (!has_length) return which + "no Content-Length";
    const std::string_view rest = in.substr(pos);
    if (rest.starts_with("HTTP/1.") || rest.empty()) {
      // No body: the answer to a HEAD (or a body of 0 bytes).
    } else if (rest.size() >= length) {
      pos += length;
    } else {
      return which + "body of " + std::to_string(rest.size()) + " bytes, Content-Length " +
             std::to_string(length);
    }
    if (close && pos < in.size())
      return which + "bytes after a response that said Connection: close";
  }
  return {};
}

// Whether `in` starts with a request this server must answer 200: GET or HEAD of /metrics (with
// no or a valid ?format=) or /healthz, HTTP/1.1 or 1.0, header fields of plain printable ASCII
// that frame no body and set no scrape deadline, within the header limit.
bool StartsWithPlainRequest(std::string_view in) {
  const size_t end = in.find("\r\n\r\n");
  if (end == std::string_view::npos || end + 4 > 8192) return false;
  const size_t eol = in.find("\r\n");
  const std::string_view line = in.substr(0, eol);
  static const char* kLines[] = {"/metrics", "/metrics?format=text", "/metrics?format=openmetrics",
                                 "/metrics?format=protobuf", "/healthz"};
  bool ok = false;
  for (const char* method : {"GET ", "HEAD "}) {
    for (const char* target : kLines) {
      for (const char* version : {" HTTP/1.1", " HTTP/1.0"}) {
        ok = ok || line == std::string(method) + target + version;
      }
    }
  }
  if (!ok) return false;
  for (size_t pos = eol + 2; pos < end;) {
    const size_t next = in.find("\r\n", pos);
    const std::string_view field = in.substr(pos, next - pos);
    pos = next + 2;
    const size_t colon = field.find(": ");
    if (colon == std::string_view::npos || colon == 0) return false;
    const std::string_view name = field.substr(0, colon);
    for (char c : name) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-')) return false;
    }
    for (char c : field.substr(colon + 2)) {
      if (c < 0x20 || c > 0x7e) return false;
    }
    // Connection too: its value must be a list of tokens, which Beast checks (400 "bad value"
    // for e.g. "Connection: a:b/c", found in an hour's run: a correct answer, not a finding).
    for (const char* framing :
         {"content-length", "transfer-encoding", "expect", "upgrade", "connection"}) {
      if (IEquals(name, framing)) return false;
    }
    if (name.size() >= 12 && IEquals(name.substr(0, 12), "x-prometheus")) return false;
  }
  return true;
}

void SendAll(int fd, const uint8_t* data, size_t size, int writes) {
  size_t done = 0;
  for (int w = 0; w < writes && done < size; ++w) {
    const size_t end = w + 1 == writes ? size : size * (w + 1) / writes;
    while (done < end) {
      const ssize_t n = ::send(fd, data + done, end - done, MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        return;  // the server closed its side (after an error answer): fine
      }
      done += static_cast<size_t>(n);
    }
  }
}

void CheckAlive(uint16_t port) {
  const int fd = Connect(port);
  static const char kProbe[] = "GET /healthz HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n";
  SendAll(fd, reinterpret_cast<const uint8_t*>(kProbe), sizeof kProbe - 1, 1);
  bool closed = false;
  const std::string in = ReadAll(fd, Clock::now() + kRequestTimeout + kGrace, &closed);
  ::close(fd);
  if (!in.starts_with("HTTP/1.1 200 ") || !in.ends_with("\r\n\r\nok\n"))
    Finding(kTarget, "the server no longer answers GET /healthz after the input", in);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  TheServer();  // start the io threads before the first input
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Server& server = TheServer();
  const uint16_t port = server.http->port();
  const uint8_t flags = data[0];
  const bool keep_open = (flags & 7) == 7;
  const int writes = 1 + (flags >> 3 & 3);

  const int fd = Connect(port);
  SendAll(fd, data + 1, size - 1, writes);
  if (!keep_open) ::shutdown(fd, SHUT_WR);
  bool closed = false;
  const std::string in = ReadAll(fd, Clock::now() + 2 * kRequestTimeout + kGrace, &closed);
  ::close(fd);
  if (!closed) Finding(kTarget, "the connection is still open 3 s past its deadlines", in);
  if (std::string problem = CheckResponses(in); !problem.empty()) Finding(kTarget, problem, in);
  if (StartsWithPlainRequest(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1)) &&
      !(in.starts_with("HTTP/1.1 200 ") || in.starts_with("HTTP/1.0 200 "))) {
    Finding(kTarget, "a plain GET/HEAD of a route was not answered 200", in);
  }
  CheckAlive(port);
  const gw::HttpServerStats stats = server.http->stats();
  if (stats.internal_errors != 0)
    Finding(kTarget, "an exception escaped to an io thread (internal_errors)");
  return 0;
}
