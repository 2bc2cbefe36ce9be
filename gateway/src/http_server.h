// HttpServer: the gateway's small HTTP/1.1 server (Boost.Beast, async). It owns the listening
// socket, the io threads and every client connection, and turns each request into a call of the
// handler registered for its exact path. It exists to answer Prometheus scrapes next to production
// app servers, so every connection is bounded: the whole request must arrive within
// request_timeout, an idle keep-alive connection is dropped after idle_timeout, headers and bodies
// have size limits, and at most max_connections are open at once. At that cap a new connection
// first evicts the connection idle the longest (a keep-alive one between requests, or one that has
// not sent its first byte): idle clients cannot lock a scrape out, however many they open. Only
// when every connection is busy (a request arriving, being handled or answered) is the new one
// refused. Beast stays behind this header: callers see only plain structs.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shmetrics::gateway {

// One parsed request as the handler sees it. The views point into the connection's buffers and
// are valid only for the duration of the handler call.
struct HttpRequestInfo {
  std::string_view method;            // "GET", "HEAD"
  std::string_view path;              // target without query, e.g. "/metrics"
  std::string_view query;             // after '?', without it ("" if none)
  std::string_view accept;            // Accept header ("" if absent)
  std::string_view accept_encoding;   // Accept-Encoding header ("" if absent)
  double scrape_timeout_seconds = 0;  // X-Prometheus-Scrape-Timeout-Seconds, 0 if absent/invalid
};

struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Extra headers (e.g. Content-Encoding, Vary). Framing and the fields the server owns
  // (Content-Length, Transfer-Encoding, Content-Type, Connection, Server) are dropped here, as is
  // any header whose name is not a token or whose value holds CR, LF or NUL.
  std::vector<std::pair<std::string, std::string>> headers;
};

// Runs on an io thread, possibly on several threads at once for different connections, so it must
// be thread-safe. It may throw: the client then gets a 500 and handler_errors moves.
using HttpHandler = std::function<HttpResponse(const HttpRequestInfo&)>;

struct ListenAddress {
  // A numeric address or a name ("localhost"); "[::1]" accepted; empty: every interface (IPv6
  // and IPv4 on one dual-stack socket where the host has IPv6, else IPv4 only).
  std::string host = "127.0.0.1";
  uint16_t port = 9716;  // 0 = ephemeral (tests)
};

struct HttpServerOptions {
  // Every address is served the same routes; at least one. Start fails unless each one binds.
  std::vector<ListenAddress> listen = {ListenAddress{}};
  int threads = 2;  // io_context threads; a slow handler blocks only its own thread
  // The whole request (headers+body) must arrive within this; a new connection's first request is
  // timed from accept, later ones from their first byte. Writing a response is bounded by it too.
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};  // keep-alive idle limit between requests
  uint32_t header_limit = 8192;                   // larger: 431, then close
  uint32_t body_limit = 1024;                     // GET/HEAD carry no body; anything larger is 413
  // At the cap, a new connection evicts the oldest idle one; with none idle it is accepted and
  // closed at once. Both counted.
  uint32_t max_connections = 256;
  // exporter-toolkit's --web.config.file (web_config.h); empty: plain HTTP, no auth. Start()
  // validates it. As in the toolkit, TLS or plain and the rate limit are fixed then; basic auth
  // and headers are re-read on every request (changed file: new rules at once; a file that
  // became invalid: 500 and a warning), and the TLS settings, certificate, key and CA for every
  // new connection (invalid: the handshake fails).
  std::string web_config_file;
};

// All monotonic counters except open_connections (a gauge), readable from any thread.
struct HttpServerStats {
  uint64_t requests = 0;      // requests parsed and answered (any status, incl. 404/405/500)
  uint64_t bad_requests = 0;  // malformed, over a limit, bad framing: 400/413/431/501, then closed
  uint64_t not_found = 0;     // 404
  uint64_t method_not_allowed = 0;    // 405
  uint64_t timeouts = 0;              // request not received, or response not taken, in time
  uint64_t rejected_connections = 0;  // closed at accept: max_connections open, none idle
  uint64_t open_connections = 0;      // gauge
  uint64_t handler_errors = 0;        // handler threw or gave a bad status: answered 500
  uint64_t idle_closes = 0;           // keep-alive connections closed after idle_timeout
  uint64_t accept_errors = 0;         // accept() failed (e.g. EMFILE); retried after a pause
  uint64_t internal_errors = 0;  // exception escaped to an io thread (a bug): connection dropped
  uint64_t evictions = 0;        // idle connections closed at max_connections to admit a new one
  uint64_t auth_failures = 0;    // 401: no or malformed credentials, unknown user, bad password
  uint64_t auth_throttled = 0;   // 429: too many password checks already waiting
  uint64_t rate_limited = 0;     // 429: the web config's rate_limit bucket was empty
  // TLS connections closed before a request: the handshake failed or timed out, the client
  // spoke plain HTTP (answered 400), or no TLS context could be built from the files now.
  uint64_t tls_handshake_errors = 0;
  uint64_t web_config_errors = 0;  // requests answered 500: the web config file became invalid
};

// Lifecycle: construct, Start() once, Stop() (or destroy) once done; a stopped server cannot be
// restarted. Start/port may be called from any one thread; Stop and stats from any thread, but
// Stop must not be called from inside a handler (it joins the io threads that run handlers).
class HttpServer {
 public:
  // Routes: exact path -> handler. Only GET and HEAD are allowed on a route (405 with `Allow: GET,
  // HEAD` otherwise); unknown paths 404. HEAD returns the GET headers (with Content-Length) and no
  // body. Transfer-Encoding is checked as soon as the header is in (CheckTransferEncoding):
  // anything but chunked gets 501, a malformed list 400, and the connection is closed unread.
  HttpServer(HttpServerOptions options, std::map<std::string, HttpHandler> routes);
  ~HttpServer();  // stops and joins
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens on every address; throws std::runtime_error with a clear message naming
  // host:port and the errno text when one cannot (address in use, bad address, permission), or
  // naming the key when the web config is invalid. Resolves "localhost" and other names too;
  // when a name has several addresses, IPv4 ones are tried first because scrape configs
  // conventionally say 127.0.0.1. Throws std::logic_error if called twice.
  void Start();
  // The bound port of options.listen[i] (after Start; the real one when its port was 0).
  uint16_t port(std::size_t i = 0) const;
  bool tls() const;  // whether the server speaks TLS (after Start: the web config says so)
  void Stop();       // thread-safe, idempotent: closes acceptor and connections, joins threads
  HttpServerStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shmetrics::gateway
