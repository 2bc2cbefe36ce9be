// Tests for HttpServer over real sockets on 127.0.0.1 with ephemeral ports. The client is a tiny
// blocking POSIX one so that tests can send exactly the bytes they want (malformed, half-sent,
// pipelined); every receive has a timeout, so no test can hang on a server bug.
#include "http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "transfer_coding.h"

namespace shmetrics::gateway {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kClientTimeout = 5s;  // upper bound for any single receive in these tests

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
  }
  bool Has(const std::string& lower_name) const { return headers.count(lower_name) > 0; }
};

enum class End { kClosed, kTimeout };

// One blocking connection to 127.0.0.1:port.
class HttpTestClient {
 public:
  explicit HttpTestClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return;
    timeval tv{};
    tv.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(kClientTimeout).count();
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~HttpTestClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  HttpTestClient(const HttpTestClient&) = delete;
  HttpTestClient& operator=(const HttpTestClient&) = delete;

  bool connected() const { return fd_ >= 0; }

  // Without blocking: has the server closed (or reset) this connection? Data waiting to be read
  // does not count.
  bool PeerClosed() const {
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads one response; a HEAD response has Content-Length but no body. nullopt if the
  // connection ended or timed out first.
  std::optional<Response> Read(bool head = false) {
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return std::nullopt;
    }
    Response r;
    const std::string head_text = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    size_t line_end = head_text.find("\r\n");
    const std::string status_line = head_text.substr(0, line_end);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) return std::nullopt;
    r.status = std::stoi(status_line.substr(9, 3));
    while (line_end != std::string::npos) {
      const size_t start = line_end + 2;
      line_end = head_text.find("\r\n", start);
      const std::string line = head_text.substr(start, line_end - start);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) return std::nullopt;
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      r.headers[name] = value;
    }
    if (head || !r.Has("content-length")) return r;
    const size_t length = std::stoul(r.Header("content-length"));
    while (buf_.size() < length) {
      if (!Fill()) return std::nullopt;
    }
    r.body = buf_.substr(0, length);
    buf_.erase(0, length);
    return r;
  }

  // Discards anything further; kClosed on EOF or reset, kTimeout if the server kept it open.
  End WaitForClose() {
    buf_.clear();
    for (;;) {
      char tmp[4096];
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n > 0) continue;
      if (n == 0 || errno == ECONNRESET) return End::kClosed;
      if (errno == EINTR) continue;
      return End::kTimeout;
    }
  }

 private:
  bool Fill() {
    char tmp[4096];
    ssize_t n;
    do {
      n = ::recv(fd_, tmp, sizeof tmp, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buf_;  // received, not yet consumed
};

std::string Get(std::string_view target, std::string_view extra_headers = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra_headers) +
         "\r\n";
}

// Polls: some counters move just after the client has seen the effect (e.g. after a close).
bool Eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 3s) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

constexpr char kMetricsBody[] = "# TYPE up gauge\nup 1\n";
// Larger than any loopback socket buffers, so a client that does not read stalls the write.
constexpr size_t kBigBodyBytes = 64u << 20;

std::map<std::string, HttpHandler> TestRoutes() {
  std::map<std::string, HttpHandler> routes;
  routes["/metrics"] = [](const HttpRequestInfo&) {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = kMetricsBody;
    r.headers.emplace_back("Vary", "Accept-Encoding");
    return r;
  };
  // Reports what the server parsed, one "key=value" per line.
  routes["/echo"] = [](const HttpRequestInfo& info) {
    HttpResponse r;
    r.body = "method=" + std::string(info.method) + "\npath=" + std::string(info.path) +
             "\nquery=" + std::string(info.query) + "\naccept=" + std::string(info.accept) +
             "\naccept_encoding=" + std::string(info.accept_encoding) +
             "\ntimeout=" + std::to_string(info.scrape_timeout_seconds) + "\n";
    return r;
  };
  routes["/throw"] = [](const HttpRequestInfo&) -> HttpResponse {
    throw std::runtime_error("boom");
  };
  routes["/slow"] = [](const HttpRequestInfo&) {
    std::this_thread::sleep_for(600ms);
    HttpResponse r;
    r.body = "slow\n";
    return r;
  };
  routes["/big"] = [](const HttpRequestInfo&) {
    HttpResponse r;
    r.body.assign(kBigBodyBytes, 'x');
    return r;
  };
  routes["/badheaders"] = [](const HttpRequestInfo&) {
    HttpResponse r;
    r.body = "x";
    r.headers.emplace_back("X-Split", "a\r\nSet-Cookie: evil=1");
    r.headers.emplace_back("Content-Length", "999");
    r.headers.emplace_back("X-Good", "yes");
    return r;
  };
  return routes;
}

std::unique_ptr<HttpServer> StartServer(HttpServerOptions options = {}) {
  options.listen = {{"127.0.0.1", 0}};
  auto server = std::make_unique<HttpServer>(std::move(options), TestRoutes());
  server->Start();
  return server;
}

TEST(HttpServerTest, GetReturnsBodyAndHeaders) {
  auto server = StartServer();
  ASSERT_NE(server->port(), 0);
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Send(Get("/metrics")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, kMetricsBody);
  EXPECT_EQ(r->Header("server"), "shmetrics-gateway");
  EXPECT_EQ(r->Header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(r->Header("content-length"), std::to_string(std::strlen(kMetricsBody)));
  EXPECT_EQ(r->Header("vary"), "Accept-Encoding");
  EXPECT_EQ(server->stats().requests, 1u);
}

TEST(HttpServerTest, HeadSendsGetHeadersWithoutBody) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send("HEAD /metrics HTTP/1.1\r\nHost: test\r\n\r\n"));
  auto r = c.Read(/*head=*/true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("content-length"), std::to_string(std::strlen(kMetricsBody)));
  EXPECT_EQ(r->Header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  // Had any body bytes followed the HEAD response, this response would not parse.
  ASSERT_TRUE(c.Send(Get("/metrics")));
  auto next = c.Read();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
  EXPECT_EQ(next->body, kMetricsBody);
}

TEST(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(c.Send(Get("/metrics")));
    auto r = c.Read();
    ASSERT_TRUE(r) << "request " << i;
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->Header("connection"), "close");
  }
  EXPECT_EQ(server->stats().requests, 2u);
  EXPECT_EQ(server->stats().open_connections, 1u);
}

TEST(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send(Get("/echo?n=1") + Get("/echo?n=2") + Get("/echo?n=3")));
  for (int i = 1; i <= 3; ++i) {
    auto r = c.Read();
    ASSERT_TRUE(r) << "response " << i;
    EXPECT_NE(r->body.find("query=n=" + std::to_string(i) + "\n"), std::string::npos) << r->body;
  }
}

TEST(HttpServerTest, ConnectionCloseIsHonoured) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send(Get("/metrics", "Connection: close\r\n")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_EQ(c.WaitForClose(), End::kClosed);
}

TEST(HttpServerTest, Http10ClosesUnlessKeepAliveAsked) {
  auto server = StartServer();
  {
    HttpTestClient c(server->port());
    ASSERT_TRUE(c.Send("GET /metrics HTTP/1.0\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, kMetricsBody);
    EXPECT_EQ(c.WaitForClose(), End::kClosed);
  }
  HttpTestClient c(server->port());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(c.Send("GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r) << "request " << i;
    EXPECT_EQ(r->Header("connection"), "keep-alive");
  }
}

TEST(HttpServerTest, UnknownPathIs404WithHint) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send(Get("/nope?x=1")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->Header("server"), "shmetrics-gateway");
  EXPECT_EQ(r->Header("content-type"), "text/plain; charset=utf-8");
  EXPECT_NE(r->body.find("not found: /nope;"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("/metrics"), std::string::npos) << r->body;
  EXPECT_EQ(server->stats().not_found, 1u);
  // A 404 does not end the connection.
  ASSERT_TRUE(c.Send(Get("/metrics")));
  auto next = c.Read();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
}

TEST(HttpServerTest, PostIs405WithAllowHeader) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send("POST /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->Header("allow"), "GET, HEAD");
  EXPECT_NE(r->body.find("POST /metrics"), std::string::npos) << r->body;
  EXPECT_EQ(server->stats().method_not_allowed, 1u);
  // The small body was consumed, so the connection is still in step.
  ASSERT_TRUE(c.Send(Get("/metrics")));
  auto next = c.Read();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
}

TEST(HttpServerTest, MalformedRequestLineIs400ThenClose) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send("THIS IS NOT HTTP\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_NE(r->body.find("bad request"), std::string::npos) << r->body;
  EXPECT_EQ(c.WaitForClose(), End::kClosed);
  EXPECT_EQ(server->stats().bad_requests, 1u);
  EXPECT_EQ(server->stats().requests, 0u);
}

// --- Transfer-Encoding ---------------------------------------------------------------------------

// Sends `request`, expects one answer with `status` and `Connection: close`, and then the close:
// nothing after the header block may be taken for another request.
void ExpectRefusedThenClosed(HttpServer& server, const std::string& request, int status) {
  SCOPED_TRACE(request);
  HttpTestClient c(server.port());
  // A request smuggled in the body: answering it too would mean the body was framed wrongly.
  ASSERT_TRUE(c.Send(request + Get("/echo?smuggled")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status) << r->body;
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_NE(r->body.find("Transfer-Encoding"), std::string::npos) << r->body;
  if (auto second = c.Read()) {
    ADD_FAILURE() << "a second response (" << second->status
                  << "): the request smuggled in the body was served";
  }
  EXPECT_TRUE(c.WaitForClose() == End::kClosed) << "the connection was kept open";
}

TEST(HttpServerTest, UnsupportedTransferCodingIs501ThenClose) {
  auto server = StartServer();
  const std::string start = "GET /metrics HTTP/1.1\r\nHost: test\r\n";
  // chunked last frames the body, but the gzip under it is still not something we decode.
  ExpectRefusedThenClosed(*server, start + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                          501);
  ExpectRefusedThenClosed(*server, start + "Transfer-Encoding: chunked;ext=1\r\n\r\n0\r\n\r\n",
                          501);
  // Two field lines are one list: "gzip, chunked".
  ExpectRefusedThenClosed(
      *server, start + "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      501);
  EXPECT_EQ(server->stats().bad_requests, 3u);
  EXPECT_EQ(server->stats().requests, 0u);
}

TEST(HttpServerTest, MalformedTransferEncodingIs400ThenClose) {
  auto server = StartServer();
  const std::string start = "GET /metrics HTTP/1.1\r\nHost: test\r\n";
  // Without chunked last the body cannot be framed: 400, whatever the coding (RFC 9112 6.3 MUST).
  ExpectRefusedThenClosed(*server, start + "Transfer-Encoding: gzip\r\n\r\n", 400);
  ExpectRefusedThenClosed(*server, start + "Transfer-Encoding: deflate\r\n\r\n", 400);
  ExpectRefusedThenClosed(*server, start + "Transfer-Encoding: x-custom\r\n\r\n", 400);
  ExpectRefusedThenClosed(*server, start + "Transfer-Encoding: chunked, gzip\r\n\r\n", 400);
  ExpectRefusedThenClosed(*server, start + "Transfer-Encoding: chunked, chunked\r\n\r\n", 400);
  ExpectRefusedThenClosed(*server, start + "Transfer-Encoding: ,\r\n\r\n", 400);
  ExpectRefusedThenClosed(*server, start + "Transfer-Encoding: chunked;\r\n\r\n", 400);
  ExpectRefusedThenClosed(*server, start + "Transfer-Encoding: \"chunked\"\r\n\r\n", 400);
  // An HTTP/1.0 message with Transfer-Encoding has faulty framing (RFC 9112 6.1).
  ExpectRefusedThenClosed(
      *server, "GET /metrics HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
  EXPECT_EQ(server->stats().requests, 0u);
}

TEST(HttpServerTest, ChunkedRequestBodyIsStillAccepted) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  for (const char* te : {"chunked", "Chunked", "  chunked  "}) {
    ASSERT_TRUE(c.Send("GET /metrics HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: " +
                       std::string(te) + "\r\n\r\n3\r\nabc\r\n0\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r) << te;
    EXPECT_EQ(r->status, 200) << te;
    EXPECT_NE(r->Header("connection"), "close") << te;
  }
}

TransferCodingVerdict VerdictOf(std::vector<std::string_view> lines, unsigned version = 11) {
  return CheckTransferEncoding(lines, version).verdict;
}

TEST(TransferCodingTest, OnlyChunkedOnceAndLastIsAccepted) {
  using V = TransferCodingVerdict;
  EXPECT_EQ(VerdictOf({}), V::kNone);
  for (std::string_view ok :
       {"chunked", "CHUNKED", " chunked ", ", chunked", "chunked ,", "\tchunked"}) {
    EXPECT_EQ(VerdictOf({ok}), V::kChunked) << ok;
  }
  EXPECT_EQ(VerdictOf({"", "chunked"}), V::kChunked);
  for (std::string_view no : {"gzip, chunked", "chunked;a=b", "gzip;q=\"x\\\"y\", chunked"}) {
    EXPECT_EQ(VerdictOf({no}), V::kUnsupported) << no;
  }
  EXPECT_EQ(VerdictOf({"gzip", "chunked"}), V::kUnsupported);
  for (std::string_view bad :
       {"gzip", "chunked, gzip", "identity", "chunkedx", "", ",", " , ,", "chunked, chunked",
        "chunked;", "chunked;a", "chunked;a=", "chunked;=b", "gzip;q=\"open", "\"chunked\"",
        "chunked chunked", "chu/nked", "chunked\x01", "gzip;q=\"\x01\""}) {
    EXPECT_EQ(VerdictOf({bad}), V::kMalformed) << ::testing::PrintToString(std::string(bad));
  }
  EXPECT_EQ(VerdictOf({"chunked", "chunked"}), V::kMalformed);
  EXPECT_EQ(VerdictOf({"chunked"}, 10), V::kMalformed);
}

TEST(TransferCodingTest, ReasonNamesTheCodingAndStaysPrintable) {
  const std::vector<std::string_view> gzip = {"gzip, chunked"};
  EXPECT_NE(CheckTransferEncoding(gzip, 11).reason.find("'gzip'"), std::string::npos);
  const std::string hostile = "\x01\x7f" + std::string(1000, 'a') + "\"";
  const std::vector<std::string_view> lines = {hostile};
  const TransferCodingCheck check = CheckTransferEncoding(lines, 11);
  EXPECT_EQ(check.verdict, TransferCodingVerdict::kMalformed);
  EXPECT_LT(check.reason.size(), 200u);
  for (char c : check.reason) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << int(c);
}

TEST(HttpServerTest, OversizedHeaderIs431ThenClose) {
  HttpServerOptions options;
  options.header_limit = 4096;
  auto server = StartServer(options);
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send(Get("/metrics", "X-Big: " + std::string(16384, 'a') + "\r\n")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
  EXPECT_NE(r->body.find("4096"), std::string::npos) << r->body;
  EXPECT_EQ(c.WaitForClose(), End::kClosed);
  EXPECT_EQ(server->stats().bad_requests, 1u);
}

// The body limit is enforced from Content-Length before routing, so an oversized POST is 413
// (not 405) and its body is never read.
TEST(HttpServerTest, LargeBodyIs413ThenClose) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send("POST /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n" +
                     std::string(8192, 'b')));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_NE(r->body.find("1024"), std::string::npos) << r->body;
  EXPECT_EQ(c.WaitForClose(), End::kClosed);
  EXPECT_EQ(server->stats().bad_requests, 1u);
  EXPECT_EQ(server->stats().method_not_allowed, 0u);
}

TEST(HttpServerTest, StalledHalfRequestIsClosedAfterRequestTimeout) {
  HttpServerOptions options;
  options.request_timeout = 300ms;
  auto server = StartServer(options);
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send("GET /metrics HTTP/1.1\r\nHost: te"));
  const auto start = Clock::now();
  EXPECT_EQ(c.WaitForClose(), End::kClosed);
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 3s);
  EXPECT_TRUE(Eventually([&] { return server->stats().timeouts == 1; }));
  EXPECT_TRUE(Eventually([&] { return server->stats().open_connections == 0; }));
}

// The deadline covers the whole request, not each read: trickling a byte at a time does not
// extend it.
TEST(HttpServerTest, TricklingClientIsClosedAtRequestDeadline) {
  HttpServerOptions options;
  options.request_timeout = 300ms;
  auto server = StartServer(options);
  HttpTestClient c(server->port());
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    const std::string request = Get("/metrics", "X-Pad: " + std::string(200, 'p') + "\r\n");
    for (char ch : request) {
      if (done || !c.Send(std::string_view(&ch, 1))) return;
      std::this_thread::sleep_for(20ms);
    }
  });
  const auto start = Clock::now();
  EXPECT_EQ(c.WaitForClose(), End::kClosed);
  const auto elapsed = Clock::now() - start;
  done = true;
  trickle.join();
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 3s);  // the whole request would take over 5 s to trickle in
  EXPECT_TRUE(Eventually([&] { return server->stats().timeouts == 1; }));
  EXPECT_EQ(server->stats().requests, 0u);
}

TEST(HttpServerTest, ClientThatDoesNotReadIsClosedAfterRequestTimeout) {
  HttpServerOptions options;
  options.request_timeout = 300ms;
  auto server = StartServer(options);
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send(Get("/big")));
  EXPECT_TRUE(Eventually([&] { return server->stats().timeouts == 1; }));
  EXPECT_TRUE(Eventually([&] { return server->stats().open_connections == 0; }));
}

TEST(HttpServerTest, IdleKeepAliveConnectionIsClosedAfterIdleTimeout) {
  HttpServerOptions options;
  options.idle_timeout = 300ms;
  auto server = StartServer(options);
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send(Get("/metrics")));
  ASSERT_TRUE(c.Read());
  const auto start = Clock::now();
  EXPECT_EQ(c.WaitForClose(), End::kClosed);
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 3s);
  EXPECT_TRUE(Eventually([&] { return server->stats().idle_closes == 1; }));
  EXPECT_EQ(server->stats().timeouts, 0u);
}

TEST(HttpServerTest, HandlerThrowingGives500AndServerCarriesOn) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send(Get("/throw")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->Header("content-type"), "text/plain; charset=utf-8");
  EXPECT_NE(r->body.find("boom"), std::string::npos) << r->body;
  EXPECT_EQ(server->stats().handler_errors, 1u);
  ASSERT_TRUE(c.Send(Get("/metrics")));
  auto next = c.Read();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
}

TEST(HttpServerTest, QueryIsSplitFromPath) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send(Get("/echo?name[]=up&x=1")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("path=/echo\n"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("query=name[]=up&x=1\n"), std::string::npos) << r->body;
  ASSERT_TRUE(c.Send(Get("/echo")));
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("query=\n"), std::string::npos) << r->body;
}

TEST(HttpServerTest, AcceptHeadersAndScrapeTimeoutArePassedToHandler) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send(Get("/echo",
                         "Accept: application/openmetrics-text; version=1.0.0\r\n"
                         "Accept-Encoding: gzip\r\n"
                         "X-Prometheus-Scrape-Timeout-Seconds: 4.5\r\n")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("method=GET\n"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("accept=application/openmetrics-text; version=1.0.0\n"), std::string::npos)
      << r->body;
  EXPECT_NE(r->body.find("accept_encoding=gzip\n"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("timeout=4.500000\n"), std::string::npos) << r->body;

  for (const char* bad : {"abc", "-3", "inf", "nan", "5s"}) {
    ASSERT_TRUE(
        c.Send(Get("/echo", "X-Prometheus-Scrape-Timeout-Seconds: " + std::string(bad) + "\r\n")));
    r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_NE(r->body.find("timeout=0.000000\n"), std::string::npos) << bad << ": " << r->body;
  }
  ASSERT_TRUE(c.Send(Get("/echo")));
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("accept=\n"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("timeout=0.000000\n"), std::string::npos) << r->body;
}

TEST(HttpServerTest, UnsafeHandlerHeadersAreDropped) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send(Get("/badheaders")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->Has("x-split"));
  EXPECT_FALSE(r->Has("set-cookie"));
  EXPECT_EQ(r->Header("content-length"), "1");
  EXPECT_EQ(r->Header("x-good"), "yes");
  EXPECT_EQ(r->body, "x");
}

TEST(HttpServerTest, StatsCountEachOutcome) {
  auto server = StartServer();
  EXPECT_EQ(server->stats().requests, 0u);
  {
    HttpTestClient c(server->port());
    ASSERT_TRUE(c.Send(Get("/metrics") + Get("/missing") +
                       "DELETE /metrics HTTP/1.1\r\nHost: test\r\n\r\n" + Get("/throw")));
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(c.Read()) << "response " << i;
    EXPECT_EQ(server->stats().open_connections, 1u);
  }
  {
    HttpTestClient c(server->port());
    ASSERT_TRUE(c.Send("\x01\x02 garbage\r\n\r\n"));
    ASSERT_TRUE(c.Read());
  }
  EXPECT_TRUE(Eventually([&] { return server->stats().open_connections == 0; }));
  const HttpServerStats s = server->stats();
  EXPECT_EQ(s.requests, 4u);
  EXPECT_EQ(s.not_found, 1u);
  EXPECT_EQ(s.method_not_allowed, 1u);
  EXPECT_EQ(s.handler_errors, 1u);
  EXPECT_EQ(s.bad_requests, 1u);
  EXPECT_EQ(s.timeouts, 0u);
  EXPECT_EQ(s.rejected_connections, 0u);
}

TEST(HttpServerTest, SlowHandlerDoesNotStallOtherConnections) {
  auto server = StartServer();  // 2 io threads by default
  HttpTestClient slow(server->port());
  ASSERT_TRUE(slow.Send(Get("/slow")));
  std::this_thread::sleep_for(50ms);  // let the slow handler occupy one thread
  HttpTestClient fast(server->port());
  const auto start = Clock::now();
  ASSERT_TRUE(fast.Send(Get("/metrics")));
  auto r = fast.Read();
  const auto elapsed = Clock::now() - start;
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_LT(elapsed, 400ms);  // the slow handler takes 600 ms
  auto s = slow.Read();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->body, "slow\n");
}

// Only when no connection is idle: an idle one would be evicted instead (see the flood tests).
TEST(HttpServerTest, ConnectionsBeyondMaxAreClosedAndCounted) {
  HttpServerOptions options;
  options.max_connections = 1;
  auto server = StartServer(options);
  auto first = std::make_unique<HttpTestClient>(server->port());
  ASSERT_TRUE(first->Send(Get("/metrics")));
  ASSERT_TRUE(first->Read());                   // the server has accepted it
  ASSERT_TRUE(first->Send("GET /metrics HT"));  // and now it has a request in flight
  std::this_thread::sleep_for(100ms);           // which the server has started to read
  {
    HttpTestClient extra(server->port());
    ASSERT_TRUE(extra.connected());  // the kernel accepts; the server then closes it
    EXPECT_EQ(extra.WaitForClose(), End::kClosed);
  }
  EXPECT_TRUE(Eventually([&] { return server->stats().rejected_connections == 1; }));
  EXPECT_EQ(server->stats().evictions, 0u);
  ASSERT_TRUE(first->Send("TP/1.1\r\nHost: test\r\n\r\n"));  // the refusal did not touch it
  auto answered = first->Read();
  ASSERT_TRUE(answered);
  EXPECT_EQ(answered->status, 200);
  first.reset();
  ASSERT_TRUE(Eventually([&] { return server->stats().open_connections == 0; }));
  HttpTestClient again(server->port());
  ASSERT_TRUE(again.Send(Get("/metrics")));
  auto r = again.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// --- Connection slots under an idle flood
// ---------------------------------------------------------

// Keeps `count` connections open that hold a slot and then sit idle, either after one answered
// request (a keep-alive client between requests) or without ever sending a byte. A background
// thread replaces every connection the server closes, so the flood lasts until the object is
// destroyed, like an attacker that reconnects forever. It opens at most one connection per
// kOpenInterval: a fresh scrape is evicted like any idle connection once max_connections newer
// ones have arrived before its request (the policy), so an unpaced flood would fail the test
// whenever the scrape's thread lost the CPU between connect() and send(), as it does under TSan
// on a loaded machine. Paced, that takes a stall of max_connections milliseconds.
class IdleFlood {
 public:
  enum class Kind { kOneRequestThenIdle, kSilent };

  IdleFlood(uint16_t port, int count, Kind kind) : port_(port), kind_(kind), clients_(count) {
    thread_ = std::thread([this] { Run(); });
  }
  ~IdleFlood() {
    stop_ = true;
    thread_.join();
  }
  IdleFlood(const IdleFlood&) = delete;
  IdleFlood& operator=(const IdleFlood&) = delete;

  // Full passes over all `count` connections, each (re)opened as needed.
  int passes() const { return passes_.load(); }
  int64_t opened() const { return opened_.load(); }

 private:
  void Run() {
    while (!stop_) {
      for (auto& c : clients_) {
        if (stop_) return;
        if (c && !c->PeerClosed()) continue;
        c = std::make_unique<HttpTestClient>(port_);
        if (!c->connected()) continue;
        ++opened_;
        std::this_thread::sleep_for(kOpenInterval);
        // A rejected or evicted connection ends without an answer: replaced on the next pass.
        if (kind_ == Kind::kOneRequestThenIdle && (!c->Send(Get("/metrics")) || !c->Read())) {
          c.reset();
        }
      }
      ++passes_;
      std::this_thread::sleep_for(20ms);
    }
  }

  static constexpr auto kOpenInterval = 1ms;
  const uint16_t port_;
  const Kind kind_;
  std::vector<std::unique_ptr<HttpTestClient>> clients_;
  std::atomic<bool> stop_{false};
  std::atomic<int> passes_{0};
  std::atomic<int64_t> opened_{0};
  std::thread thread_;
};

// The flood's connections outnumber the slots four to one and idle under the default (long)
// timeouts; a scrape on a fresh connection must still be answered, quickly, every time.
void ExpectScrapesAnsweredDuringFlood(IdleFlood::Kind kind) {
  HttpServerOptions options;
  options.max_connections = 16;  // defaults: idle_timeout 60 s, request_timeout 10 s
  auto server = StartServer(options);
  IdleFlood flood(server->port(), 64, kind);
  ASSERT_TRUE(Eventually([&] { return flood.passes() >= 2; }, 10s)) << "flood did not start";
  ASSERT_TRUE(Eventually([&] { return server->stats().open_connections >= 16; }));
  constexpr int kScrapes = 10;
  std::chrono::microseconds slowest{0};
  for (int i = 0; i < kScrapes; ++i) {
    const auto start = Clock::now();
    HttpTestClient c(server->port());
    ASSERT_TRUE(c.connected()) << "scrape " << i;
    ASSERT_TRUE(c.Send(Get("/metrics"))) << "scrape " << i;
    auto r = c.Read();
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
    ASSERT_TRUE(r) << "scrape " << i << " was not answered (after " << elapsed.count()
                   << " us); stats: open=" << server->stats().open_connections
                   << " rejected=" << server->stats().rejected_connections
                   << " evictions=" << server->stats().evictions;
    EXPECT_EQ(r->status, 200) << "scrape " << i;
    EXPECT_EQ(r->body, kMetricsBody) << "scrape " << i;
    EXPECT_LT(elapsed, 2s) << "scrape " << i;
    slowest = std::max(slowest, elapsed);
    std::this_thread::sleep_for(50ms);  // the flood refills the slots in between
  }
  // An evicted session holds no slot but lives for a few more microseconds: allow it to go.
  EXPECT_TRUE(Eventually([&] { return server->stats().open_connections <= 16; }));
  const HttpServerStats s = server->stats();
  EXPECT_GE(s.evictions, uint64_t{kScrapes});
  ::testing::Test::RecordProperty("slowest_scrape_us", static_cast<int>(slowest.count()));
  std::cout << "slowest of " << kScrapes << " scrapes under the flood: " << slowest.count()
            << " us; flood opened " << flood.opened() << " connections, " << s.evictions
            << " evicted, " << s.rejected_connections << " rejected\n";
}

TEST(HttpServerTest, IdleKeepAliveFloodCannotLockOutAScrape) {
  ExpectScrapesAnsweredDuringFlood(IdleFlood::Kind::kOneRequestThenIdle);
}

TEST(HttpServerTest, SilentConnectionFloodCannotLockOutAScrape) {
  ExpectScrapesAnsweredDuringFlood(IdleFlood::Kind::kSilent);
}

TEST(HttpServerTest, AtTheCapTheOldestIdleConnectionIsEvictedFirst) {
  HttpServerOptions options;
  options.max_connections = 3;
  auto server = StartServer(options);
  HttpTestClient a(server->port());  // idle after a request: the oldest idle one
  ASSERT_TRUE(a.Send(Get("/metrics")));
  ASSERT_TRUE(a.Read());
  std::this_thread::sleep_for(20ms);
  HttpTestClient b(server->port());  // never sends
  ASSERT_TRUE(Eventually([&] { return server->stats().open_connections == 2; }));
  std::this_thread::sleep_for(20ms);
  HttpTestClient c(server->port());  // idle after a request
  ASSERT_TRUE(c.Send(Get("/metrics")));
  ASSERT_TRUE(c.Read());

  HttpTestClient d(server->port());
  ASSERT_TRUE(d.Send(Get("/metrics")));
  auto rd = d.Read();
  ASSERT_TRUE(rd);
  EXPECT_EQ(rd->status, 200);
  EXPECT_EQ(a.WaitForClose(), End::kClosed);
  EXPECT_FALSE(b.PeerClosed());
  EXPECT_FALSE(c.PeerClosed());
  EXPECT_EQ(server->stats().evictions, 1u);

  // c's new request makes it the newest idle one, so b (idle since accept) goes next.
  ASSERT_TRUE(c.Send(Get("/metrics")));
  ASSERT_TRUE(c.Read());
  HttpTestClient e(server->port());
  ASSERT_TRUE(e.Send(Get("/metrics")));
  auto re = e.Read();
  ASSERT_TRUE(re);
  EXPECT_EQ(re->status, 200);
  EXPECT_EQ(b.WaitForClose(), End::kClosed);
  EXPECT_FALSE(c.PeerClosed());
  EXPECT_FALSE(d.PeerClosed());
  const HttpServerStats s = server->stats();
  EXPECT_EQ(s.evictions, 2u);
  EXPECT_EQ(s.rejected_connections, 0u);
  EXPECT_EQ(s.idle_closes, 0u);
  EXPECT_EQ(s.timeouts, 0u);
}

// A connection whose request is still arriving, or whose response is still being written, is
// not idle: at the cap with only such connections, the new one is refused and they finish.
TEST(HttpServerTest, BusyConnectionsAreNeverEvicted) {
  HttpServerOptions options;
  options.max_connections = 2;
  auto server = StartServer(options);
  HttpTestClient writing(server->port());
  ASSERT_TRUE(writing.Send(Get("/big")));  // never read: the write stalls on a full socket
  HttpTestClient reading(server->port());
  ASSERT_TRUE(reading.Send("GET /metrics HTTP/1.1\r\nHost: te"));
  std::this_thread::sleep_for(200ms);  // both are now busy in the server
  {
    HttpTestClient extra(server->port());
    ASSERT_TRUE(extra.connected());
    EXPECT_EQ(extra.WaitForClose(), End::kClosed);
  }
  EXPECT_TRUE(Eventually([&] { return server->stats().rejected_connections == 1; }));
  EXPECT_EQ(server->stats().evictions, 0u);
  ASSERT_TRUE(reading.Send("st\r\n\r\n"));
  auto r = reading.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(writing.PeerClosed());
}

TEST(HttpServerTest, StartOnPortInUseThrowsNamingThePort) {
  auto first = StartServer();
  HttpServerOptions options;
  options.listen = {{"127.0.0.1", first->port()}};
  HttpServer second(options, TestRoutes());
  try {
    second.Start();
    FAIL() << "Start() on a busy port did not throw";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("127.0.0.1:" + std::to_string(first->port())), std::string::npos) << what;
    EXPECT_NE(what.find("in use"), std::string::npos) << what;
  }
  second.Stop();  // harmless after a failed Start
}

// Several listen addresses serve the same routes; one that cannot bind fails Start, naming it.
TEST(HttpServerTest, EveryListenAddressServes) {
  std::map<std::string, HttpHandler> routes;
  routes["/x"] = [](const HttpRequestInfo&) {
    HttpResponse r;
    r.body = "x\n";
    return r;
  };
  HttpServerOptions options;
  options.listen = {{"127.0.0.1", 0}, {"localhost", 0}, {"127.0.0.1", 0}};
  HttpServer server(options, routes);
  server.Start();
  EXPECT_FALSE(server.tls());
  for (std::size_t i = 0; i < 3; ++i) {
    ASSERT_NE(server.port(i), 0) << i;
    HttpTestClient c(server.port(i));
    ASSERT_TRUE(c.Send(Get("/x")));
    const auto r = c.Read();
    ASSERT_TRUE(r) << "address " << i;
    EXPECT_EQ(r->status, 200) << "address " << i;
  }
  EXPECT_EQ(server.port(3), 0);

  HttpServerOptions clash;
  clash.listen = {{"127.0.0.1", 0}, {"127.0.0.1", server.port(1)}};
  HttpServer second(clash, routes);
  try {
    second.Start();
    FAIL() << "started on a port already in use";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(server.port(1))),
              std::string::npos)
        << e.what();
  }
}

TEST(HttpServerTest, StartOnForeignAddressThrows) {
  HttpServerOptions options;
  options.listen = {{"192.0.2.1", 0}};  // TEST-NET-1: never a local address
  HttpServer server(options, TestRoutes());
  try {
    server.Start();
    FAIL() << "Start() on a non-local address did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("192.0.2.1:0"), std::string::npos) << e.what();
  }
}

TEST(HttpServerTest, StartResolvesLocalhost) {
  HttpServerOptions options;
  options.listen = {{"localhost", 0}};
  HttpServer server(options, TestRoutes());
  server.Start();
  HttpTestClient c(server.port());  // 127.0.0.1: IPv4 is preferred for names
  ASSERT_TRUE(c.Send(Get("/metrics")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(HttpServerTest, StartTwiceIsALogicError) {
  auto server = StartServer();
  EXPECT_THROW(server->Start(), std::logic_error);
}

TEST(HttpServerTest, StopIsIdempotentAndClosesConnections) {
  auto server = StartServer();
  HttpTestClient c(server->port());
  ASSERT_TRUE(c.Send(Get("/metrics")));
  ASSERT_TRUE(c.Read());
  HttpTestClient half(server->port());
  ASSERT_TRUE(half.Send("GET /met"));
  const auto start = Clock::now();
  std::thread other([&] { server->Stop(); });  // Stop from two threads at once
  server->Stop();
  other.join();
  EXPECT_LT(Clock::now() - start, 2s);
  EXPECT_EQ(c.WaitForClose(), End::kClosed);
  EXPECT_EQ(half.WaitForClose(), End::kClosed);
  EXPECT_EQ(server->stats().open_connections, 0u);
  server->Stop();
  HttpTestClient late(server->port());
  EXPECT_FALSE(late.connected());  // the listener is gone
}

// Stop on a server that never started returns, twice, and leaves nothing open. A broken Stop
// fails this test by crashing or hanging (then ctest's timeout fails it), not by an assertion.
TEST(HttpServerTest, StopWithoutStartIsFine) {
  HttpServer server({}, TestRoutes());
  server.Stop();
  server.Stop();
  const HttpServerStats stats = server.stats();
  EXPECT_EQ(stats.open_connections, 0u);
  EXPECT_EQ(stats.requests, 0u);
}

TEST(HttpServerTest, TwoServersInOneProcessAreIndependent) {
  auto a = StartServer();
  std::map<std::string, HttpHandler> routes;
  routes["/other"] = [](const HttpRequestInfo&) {
    HttpResponse r;
    r.body = "other\n";
    return r;
  };
  HttpServerOptions options;
  options.listen = {{"127.0.0.1", 0}};
  HttpServer b(options, routes);
  b.Start();
  ASSERT_NE(a->port(), b.port());
  HttpTestClient ca(a->port());
  HttpTestClient cb(b.port());
  ASSERT_TRUE(ca.Send(Get("/other")));
  ASSERT_TRUE(cb.Send(Get("/other")));
  auto ra = ca.Read();
  auto rb = cb.Read();
  ASSERT_TRUE(ra && rb);
  EXPECT_EQ(ra->status, 404);
  EXPECT_EQ(rb->status, 200);
  EXPECT_EQ(rb->body, "other\n");
  EXPECT_EQ(a->stats().not_found, 1u);
  EXPECT_EQ(b.stats().not_found, 0u);
}

}  // namespace
}  // namespace shmetrics::gateway
