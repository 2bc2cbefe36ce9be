// HttpServer implementation: one Listener (acceptor, io threads, connection registry, counters)
// and one Session per TCP connection. Everything a session does runs on its own strand, so a
// session needs no locks of its own; the Listener's acceptor runs on another strand. The one lock
// the two share, sessions_mu_, guards the registry of sessions and the list of idle ones: a
// session enters that list when it starts waiting for a request's first byte and leaves it when
// the wait ends, and the acceptor takes the list's oldest entry when it needs a slot. Both sides
// decide under the lock, so a session is either evicted while idle or not at all. Stop() closes
// the acceptor and every session through their strands and then joins the io threads, which
// return once no operation is left pending. Modelled on Beast's advanced_server example.
#include "http_server.h"

#include <sys/ioctl.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <cmath>
#include <exception>
#include <list>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "basic_auth.h"
#include "log.h"
#include "transfer_coding.h"
#include "web_config.h"

namespace shmetrics::gateway {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

constexpr char kServerName[] = "shmetrics-gateway";
constexpr char kPlainText[] = "text/plain; charset=utf-8";
// Request text echoed into error bodies is cut here: the body is for a human, not a mirror.
constexpr std::size_t kMaxEchoed = 200;
// accept() failing (EMFILE, ENFILE, ENOBUFS) would fail again at once: pause instead of spinning.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};
// Before closing, read what the client still sends (bounded), so that closing with unread data
// does not turn into a RST that destroys our response before the client has read it.
constexpr std::chrono::milliseconds kMaxLinger{1000};
constexpr std::size_t kMaxLingerBytes = 64 * 1024;
constexpr std::size_t kReadChunk = 4096;
// Room in the read buffer beyond one maximal request, for pipelined requests behind it.
constexpr std::size_t kPipelineSlack = 16 * 1024;
// File descriptors the process needs beside its connections (region, listener, epoll, logs...).
constexpr rlim_t kSpareFds = 32;

struct Counters {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bad_requests{0};
  std::atomic<uint64_t> not_found{0};
  std::atomic<uint64_t> method_not_allowed{0};
  std::atomic<uint64_t> timeouts{0};
  std::atomic<uint64_t> rejected_connections{0};
  std::atomic<uint64_t> open_connections{0};
  std::atomic<uint64_t> handler_errors{0};
  std::atomic<uint64_t> idle_closes{0};
  std::atomic<uint64_t> accept_errors{0};
  std::atomic<uint64_t> internal_errors{0};
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> auth_failures{0};
  std::atomic<uint64_t> auth_throttled{0};
  std::atomic<uint64_t> tls_handshake_errors{0};
  std::atomic<uint64_t> web_config_errors{0};
};

// Returns the value after the increment. Counters are statistics: relaxed is enough.
uint64_t Bump(std::atomic<uint64_t>& c) { return c.fetch_add(1, std::memory_order_relaxed) + 1; }

std::string Truncated(std::string_view s) {
  if (s.size() <= kMaxEchoed) return std::string(s);
  return std::string(s.substr(0, kMaxEchoed)) + "...";
}

std::string HostPort(std::string_view host, uint16_t port) {
  const bool v6 = host.find(':') != std::string_view::npos;
  return (v6 ? "[" + std::string(host) + "]" : std::string(host)) + ":" + std::to_string(port);
}

std::string EndpointText(const tcp::endpoint& ep) {
  return HostPort(ep.address().to_string(), ep.port());
}

double ParseScrapeTimeout(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  double v = 0;
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || ptr != end || !std::isfinite(v) || v <= 0) return 0;
  return v;
}

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Handler headers go on the wire verbatim: refuse anything that could split the response, and
// leave framing and the fields this server owns to the server.
bool IsAcceptableExtraHeader(std::string_view name, std::string_view value) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), IsTokenChar)) return false;
  if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) return false;
  for (std::string_view owned :
       {"Content-Length", "Transfer-Encoding", "Content-Type", "Connection", "Server"}) {
    if (beast::iequals(name, owned)) return false;
  }
  return true;
}

HttpResponse PlainResponse(unsigned status, std::string text) {
  HttpResponse r;
  r.status = status;
  r.content_type = kPlainText;
  r.body = std::move(text);
  r.body += '\n';
  return r;
}

class Session;

class Listener {
 public:
  Listener(HttpServerOptions options, std::map<std::string, HttpHandler> routes);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  void Start();
  void Stop();
  uint16_t port() const { return bound_port_.load(std::memory_order_acquire); }
  HttpServerStats Stats() const;

  // For sessions, from their strands.
  const HttpServerOptions& options() const { return options_; }
  Counters& counters() { return counters_; }
  const HttpHandler* FindRoute(std::string_view path) const;
  const std::string& route_list() const { return route_list_; }
  void Unregister(uint64_t id);
  // A session is an eviction candidate from EnterIdle (it starts waiting for the first byte of a
  // request) to LeaveIdle (the wait is over). Both return false when the listener has evicted the
  // session: it must then close without looking at what it read.
  bool EnterIdle(uint64_t id);
  bool LeaveIdle(uint64_t id);
  WebConfigSource* web_config() { return web_config_.get(); }
  BasicAuth& auth() { return auth_; }

 private:
  std::vector<tcp::endpoint> Resolve(std::string_view host) const;
  bool TryListen(const tcp::endpoint& ep, std::string& error);
  void DoAccept();
  void OnAccept(beast::error_code ec, tcp::socket socket);
  // Under sessions_mu_: registers a session for `socket` if there is a slot, evicting the oldest
  // idle session to make one if needed (returned in *evicted, to be closed after the unlock).
  std::shared_ptr<Session> AdmitLocked(tcp::socket& socket, std::shared_ptr<Session>* evicted);
  void RunIoThread();

  const HttpServerOptions options_;
  const std::map<std::string, HttpHandler, std::less<>> routes_;
  const std::string route_list_;  // "/metrics, /healthz": the hint in 404 bodies
  Counters counters_;
  std::atomic<uint16_t> bound_port_{0};

  // Declared before ioc_ so that they outlive it: sessions unregister in their destructors.
  // Everything below up to ioc_ is guarded by sessions_mu_.
  struct Entry {
    std::weak_ptr<Session> session;
    std::optional<std::list<uint64_t>::iterator> idle;  // its node in idle_ while idle
  };
  std::mutex sessions_mu_;
  bool stopping_ = false;
  uint64_t next_session_id_ = 0;
  // Every session that holds a slot: the cap is its size. An evicted session leaves at once; it
  // closes within microseconds on its strand.
  std::unordered_map<uint64_t, Entry> sessions_;
  std::list<uint64_t> idle_;  // ids of idle sessions, the one idle the longest first

  net::io_context ioc_;
  net::strand<net::io_context::executor_type> accept_strand_;
  tcp::acceptor acceptor_;
  net::steady_timer accept_retry_;
  std::vector<std::thread> threads_;
  std::unique_ptr<WebConfigSource> web_config_;  // null without --web.config.file
  // After ioc_: destroyed first, so that no password check outlives the sessions it answers.
  BasicAuth auth_;

  std::mutex lifecycle_mu_;  // serialises Start and Stop
  bool started_ = false;
  bool stopped_ = false;
};

// One connection. Reads one request at a time (pipelined requests wait in buffer_), answers it,
// then reads the next; every step runs on the connection's strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, Listener& listener, uint64_t id);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  // Whether request bytes wait unread in the socket: an "idle" session that has them is a request
  // about to start, not an idle one (FIONREAD on the descriptor; any error reads as none).
  bool HasUnreadBytes() {
    int n = 0;
    return ::ioctl(native_fd_, FIONREAD, &n) == 0 && n > 0;
  }

  void Run();
  void Close();  // from any thread

 private:
  enum class After { kKeepAlive, kClose };
  enum class Wait { kFirstRequest, kNextRequest };

  void Begin();
  void ReadRequest();
  void AwaitNextRequest();
  void AwaitFirstByte(Wait wait);
  void OnIdleRead(Wait wait, beast::error_code ec, std::size_t n);
  void OnHeader(beast::error_code ec, std::size_t n);
  void OnRead(beast::error_code ec, std::size_t n);
  void HandleRequest();
  // After authentication: routes the request and answers it.
  void Route();
  void Deny(unsigned status, std::string text);
  HttpResponse CallHandler(const HttpHandler& handler, const HttpRequestInfo& info);
  void SendError(unsigned status, std::string text);
  void Send(HttpResponse out, unsigned version, bool keep_alive, bool head);
  void OnWrite(After after, beast::error_code ec, std::size_t n);
  void Linger();
  void DrainSome();
  void OnDrain(beast::error_code ec, std::size_t n);
  void CloseNow();

  Listener& listener_;
  const HttpServerOptions& options_;
  const uint64_t id_;
  beast::tcp_stream stream_;
  int native_fd_ = -1;  // stream_'s descriptor, for HasUnreadBytes from the listener
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  std::size_t linger_left_ = 0;
  bool closed_ = false;
  // The web config's headers, added to every answer to the current request (401s included).
  std::vector<std::pair<std::string, std::string>> config_headers_;
};

Session::Session(tcp::socket&& socket, Listener& listener, uint64_t id)
    : listener_(listener),
      options_(listener.options()),
      id_(id),
      stream_(std::move(socket)),
      buffer_(std::size_t{options_.header_limit} + options_.body_limit + kPipelineSlack) {
  native_fd_ = stream_.socket().native_handle();
  Bump(listener_.counters().open_connections);
}

Session::~Session() {
  listener_.counters().open_connections.fetch_sub(1, std::memory_order_relaxed);
  listener_.Unregister(id_);
}

void Session::Run() {
  net::dispatch(stream_.get_executor(),
                beast::bind_front_handler(&Session::Begin, shared_from_this()));
}

void Session::Close() {
  net::post(stream_.get_executor(), [self = shared_from_this()] { self->CloseNow(); });
}

void Session::CloseNow() {
  closed_ = true;
  stream_.close();  // cancels whatever is pending: its handler sees operation_aborted
}

void Session::Begin() {
  if (closed_) return;
  // A new connection's first request is timed from accept: a client that connects and never
  // sends is the cheapest way to hold a connection slot.
  stream_.expires_after(options_.request_timeout);
  AwaitFirstByte(Wait::kFirstRequest);
}

// The header first, on its own, so that its framing is checked before any body byte is read.
void Session::ReadRequest() {
  parser_.emplace();
  parser_->header_limit(options_.header_limit);
  parser_->body_limit(options_.body_limit);
  http::async_read_header(stream_, buffer_, *parser_,
                          beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
}

// Between keep-alive requests the idle limit applies; the request deadline starts with the next
// request's first byte, which is why this waits for bytes before handing over to the parser.
void Session::AwaitNextRequest() {
  if (closed_) return;
  if (buffer_.size() > 0) {  // pipelined: the next request has already started
    stream_.expires_after(options_.request_timeout);
    return ReadRequest();
  }
  stream_.expires_after(options_.idle_timeout);
  AwaitFirstByte(Wait::kNextRequest);
}

// Waiting for a request's first byte is what makes a session idle, and evictable, whether it
// has served requests before or not.
void Session::AwaitFirstByte(Wait wait) {
  if (!listener_.EnterIdle(id_)) return CloseNow();
  stream_.async_read_some(
      buffer_.prepare(kReadChunk),
      beast::bind_front_handler(&Session::OnIdleRead, shared_from_this(), wait));
}

void Session::OnIdleRead(Wait wait, beast::error_code ec, std::size_t n) {
  // Evicted: the listener gave this slot away while the session was idle (counted there). Any
  // bytes that arrived meanwhile are dropped unread, as by any server closing an idle connection.
  if (!listener_.LeaveIdle(id_)) return CloseNow();
  if (ec) {
    if (ec == beast::error::timeout) {
      Bump(wait == Wait::kFirstRequest ? listener_.counters().timeouts
                                       : listener_.counters().idle_closes);
    }
    return CloseNow();  // eof: the client is done; anything else: nobody left to answer
  }
  buffer_.commit(n);
  if (wait == Wait::kNextRequest) stream_.expires_after(options_.request_timeout);
  ReadRequest();
}

void Session::OnHeader(beast::error_code ec, std::size_t n) {
  if (ec) return OnRead(ec, n);
  const auto& req = parser_->get();
  std::vector<std::string_view> codings;
  for (auto [it, end] = req.equal_range(http::field::transfer_encoding); it != end; ++it) {
    codings.emplace_back(it->value().data(), it->value().size());
  }
  if (!codings.empty()) {
    TransferCodingCheck check = CheckTransferEncoding(codings, req.version());
    if (check.verdict == TransferCodingVerdict::kUnsupported) {
      return SendError(501, std::move(check.reason));
    }
    if (check.verdict == TransferCodingVerdict::kMalformed) {
      return SendError(400, "bad request: " + check.reason);
    }
  }
  if (parser_->is_done()) return HandleRequest();
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&Session::OnRead, shared_from_this()));
}

void Session::OnRead(beast::error_code ec, std::size_t) {
  if (!ec) return HandleRequest();
  if (ec == beast::error::timeout) {
    Bump(listener_.counters().timeouts);
    return CloseNow();  // tcp_stream has closed the socket already
  }
  if (closed_ || ec == net::error::operation_aborted) return;
  // The client left: cleanly between requests (end_of_stream) or mid-request (partial_message).
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return CloseNow();
  if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
    return SendError(431, "request header fields too large: the limit is " +
                              std::to_string(options_.header_limit) + " bytes");
  }
  if (ec == http::error::body_limit) {
    return SendError(413, "payload too large: the limit is " + std::to_string(options_.body_limit) +
                              " bytes; GET and HEAD take no body");
  }
  if (ec.category() == http::make_error_code(http::error::bad_method).category()) {
    return SendError(400, "bad request: " + ec.message());
  }
  CloseNow();  // a socket error (reset, ...): no one to answer
}

// Basic auth covers every path, as in the toolkit: an unauthenticated request learns nothing,
// not even which paths exist. The password check may take a bcrypt run, which happens on
// BasicAuth's workers; the session resumes on its strand.
void Session::HandleRequest() {
  Counters& counters = listener_.counters();
  Bump(counters.requests);
  config_headers_.clear();
  WebConfigSource* source = listener_.web_config();
  if (source == nullptr) return Route();
  const WebConfigSource::Snapshot snap = source->Current();
  if (!snap.config) {
    const uint64_t n = Bump(counters.web_config_errors);
    if (LogThisOccurrence(n)) {
      LogWarn("http: web config is invalid now, answering 500 (" + std::to_string(n) +
              " so far): " + snap.error);
    }
    return Deny(500, "internal server error: the web config file is invalid");
  }
  config_headers_ = snap.config->headers;
  const auto& users = snap.config->basic_auth_users;
  if (users.empty()) return Route();
  const auto credentials = BasicAuth::ParseHeader(parser_->get()[http::field::authorization]);
  if (!credentials) return Deny(401, "Unauthorized");
  BasicAuth::Check check{credentials->first, credentials->second, nullptr};
  if (auto it = users.find(check.user); it != users.end()) check.hash = &it->second;
  if (const std::optional<bool> cached = listener_.auth().Cached(check)) {
    return *cached ? Route() : Deny(401, "Unauthorized");
  }
  auto resume = [self = shared_from_this()](bool allowed) {
    net::post(self->stream_.get_executor(), [self, allowed] {
      if (self->closed_) return;
      allowed ? self->Route() : self->Deny(401, "Unauthorized");
    });
  };
  if (!listener_.auth().Submit(check, std::move(resume))) {
    Bump(counters.auth_throttled);
    return Deny(429, "too many requests: password checks are all busy, retry shortly");
  }
}

void Session::Deny(unsigned status, std::string text) {
  HttpResponse out = PlainResponse(status, std::move(text));
  if (status == 401) {
    Bump(listener_.counters().auth_failures);
    out.headers.emplace_back("WWW-Authenticate", "Basic");
  }
  if (status == 429) out.headers.emplace_back("Retry-After", "1");
  const auto& req = parser_->get();
  Send(std::move(out), req.version(), req.keep_alive(), req.method() == http::verb::head);
}

void Session::Route() {
  Counters& counters = listener_.counters();
  const auto& req = parser_->get();
  const std::string_view target = req.target();
  const std::size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
  const bool head = req.method() == http::verb::head;
  const bool allowed = head || req.method() == http::verb::get;

  HttpResponse out;
  if (const HttpHandler* handler = listener_.FindRoute(path); handler == nullptr) {
    Bump(counters.not_found);
    out = PlainResponse(404, "not found: " + Truncated(path) + "; try " + listener_.route_list());
  } else if (!allowed) {
    Bump(counters.method_not_allowed);
    out = PlainResponse(405, "method not allowed: " + Truncated(req.method_string()) + " " +
                                 Truncated(path) + "; use GET or HEAD");
    out.headers.emplace_back("Allow", "GET, HEAD");
  } else {
    HttpRequestInfo info;
    info.method = req.method_string();
    info.path = path;
    info.query = query;
    info.accept = req[http::field::accept];
    info.accept_encoding = req[http::field::accept_encoding];
    info.scrape_timeout_seconds = ParseScrapeTimeout(req["X-Prometheus-Scrape-Timeout-Seconds"]);
    out = CallHandler(*handler, info);
  }
  Send(std::move(out), req.version(), req.keep_alive(), head);
}

HttpResponse Session::CallHandler(const HttpHandler& handler, const HttpRequestInfo& info) {
  std::string error;
  try {
    HttpResponse out = handler(info);
    if (out.status >= 100 && out.status <= 999) return out;
    error = "handler returned invalid status " + std::to_string(out.status);
  } catch (const std::exception& e) {
    error = Truncated(e.what());
  } catch (...) {
    error = "unknown exception";
  }
  const uint64_t n = Bump(listener_.counters().handler_errors);
  if (LogThisOccurrence(n)) {
    LogWarn("http: handler for " + Truncated(info.path) + " failed, answered 500 (" +
            std::to_string(n) + " so far): " + error);
  }
  return PlainResponse(500, "internal server error: " + error);
}

// Parse errors end the connection: after a malformed request the stream cannot be trusted to be
// at a message boundary.
void Session::SendError(unsigned status, std::string text) {
  Bump(listener_.counters().bad_requests);
  Send(PlainResponse(status, std::move(text)), 11, /*keep_alive=*/false, /*head=*/false);
}

void Session::Send(HttpResponse out, unsigned version, bool keep_alive, bool head) {
  res_ = {};
  res_.version(version);
  res_.result(out.status);
  res_.set(http::field::server, kServerName);
  res_.set(http::field::content_type, out.content_type);
  for (const auto& [name, value] : out.headers) {
    if (IsAcceptableExtraHeader(name, value)) res_.insert(name, value);
  }
  for (const auto& [name, value] : config_headers_) res_.set(name, value);
  res_.content_length(out.body.size());  // for HEAD too: the length GET would have sent
  if (!head) res_.body() = std::move(out.body);
  res_.keep_alive(keep_alive);
  // Bounds a client that sends requests but never reads the answers.
  stream_.expires_after(options_.request_timeout);
  http::async_write(stream_, res_,
                    beast::bind_front_handler(&Session::OnWrite, shared_from_this(),
                                              keep_alive ? After::kKeepAlive : After::kClose));
}

void Session::OnWrite(After after, beast::error_code ec, std::size_t) {
  if (ec) {
    if (ec == beast::error::timeout) Bump(listener_.counters().timeouts);
    return CloseNow();
  }
  res_ = {};  // a large scrape body should not stay allocated while the connection idles
  if (after == After::kKeepAlive) return AwaitNextRequest();
  Linger();
}

void Session::Linger() {
  if (closed_) return;
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec) return CloseNow();
  buffer_.consume(buffer_.size());
  linger_left_ = kMaxLingerBytes;
  stream_.expires_after(std::min<std::chrono::milliseconds>(kMaxLinger, options_.request_timeout));
  DrainSome();
}

void Session::DrainSome() {
  stream_.async_read_some(buffer_.prepare(kReadChunk),
                          beast::bind_front_handler(&Session::OnDrain, shared_from_this()));
}

void Session::OnDrain(beast::error_code ec, std::size_t n) {
  // eof means the client has read our FIN and closed: the normal end. A timeout here is not the
  // client's fault (it may just keep the socket open) and is not counted.
  if (ec || n >= linger_left_) return CloseNow();
  linger_left_ -= n;
  DrainSome();
}

Listener::Listener(HttpServerOptions options, std::map<std::string, HttpHandler> routes)
    : options_(std::move(options)),
      routes_(std::make_move_iterator(routes.begin()), std::make_move_iterator(routes.end())),
      route_list_([this] {
        std::string list;
        for (const auto& [path, handler] : routes_) list += (list.empty() ? "" : ", ") + path;
        return list.empty() ? std::string("(no routes)") : list;
      }()),
      ioc_(std::max(1, options_.threads)),
      accept_strand_(net::make_strand(ioc_)),
      acceptor_(accept_strand_),
      accept_retry_(accept_strand_) {}

const HttpHandler* Listener::FindRoute(std::string_view path) const {
  auto it = routes_.find(path);
  return it == routes_.end() ? nullptr : &it->second;
}

void Listener::Unregister(uint64_t id) {
  std::lock_guard lock(sessions_mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;  // evicted
  if (it->second.idle) idle_.erase(*it->second.idle);
  sessions_.erase(it);
}

bool Listener::EnterIdle(uint64_t id) {
  std::lock_guard lock(sessions_mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return false;
  if (!it->second.idle) it->second.idle = idle_.insert(idle_.end(), id);
  return true;
}

bool Listener::LeaveIdle(uint64_t id) {
  std::lock_guard lock(sessions_mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return false;
  if (it->second.idle) {
    idle_.erase(*it->second.idle);
    it->second.idle.reset();
  }
  return true;
}

HttpServerStats Listener::Stats() const {
  auto get = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  HttpServerStats s;
  s.requests = get(counters_.requests);
  s.bad_requests = get(counters_.bad_requests);
  s.not_found = get(counters_.not_found);
  s.method_not_allowed = get(counters_.method_not_allowed);
  s.timeouts = get(counters_.timeouts);
  s.rejected_connections = get(counters_.rejected_connections);
  s.open_connections = get(counters_.open_connections);
  s.handler_errors = get(counters_.handler_errors);
  s.idle_closes = get(counters_.idle_closes);
  s.accept_errors = get(counters_.accept_errors);
  s.internal_errors = get(counters_.internal_errors);
  s.evictions = get(counters_.evictions);
  s.auth_failures = get(counters_.auth_failures);
  s.auth_throttled = get(counters_.auth_throttled);
  s.tls_handshake_errors = get(counters_.tls_handshake_errors);
  s.web_config_errors = get(counters_.web_config_errors);
  return s;
}

std::vector<tcp::endpoint> Listener::Resolve(std::string_view host) const {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string where = HostPort(host, options_.port);
  if (host.empty())
    throw std::runtime_error("http server: cannot listen on " + where + ": empty host");
  beast::error_code ec;
  // Numeric addresses never touch the resolver, so they cannot block on DNS.
  const net::ip::address address = net::ip::make_address(std::string(host), ec);
  if (!ec) return {tcp::endpoint(address, options_.port)};

  net::io_context resolver_ioc;
  tcp::resolver resolver(resolver_ioc);
  const auto results =
      resolver.resolve(host, std::to_string(options_.port), tcp::resolver::numeric_service, ec);
  if (ec) {
    throw std::runtime_error("http server: cannot listen on " + where +
                             ": cannot resolve host: " + ec.message());
  }
  std::vector<tcp::endpoint> endpoints;
  for (const auto& entry : results) {
    if (std::find(endpoints.begin(), endpoints.end(), entry.endpoint()) == endpoints.end()) {
      endpoints.push_back(entry.endpoint());
    }
  }
  std::stable_partition(endpoints.begin(), endpoints.end(),
                        [](const tcp::endpoint& ep) { return ep.address().is_v4(); });
  if (endpoints.empty()) {
    throw std::runtime_error("http server: cannot listen on " + where + ": host has no address");
  }
  return endpoints;
}

bool Listener::TryListen(const tcp::endpoint& ep, std::string& error) {
  beast::error_code ec;
  const char* step = "open";
  acceptor_.open(ep.protocol(), ec);
  if (!ec) {
    step = "setsockopt(SO_REUSEADDR)";
    // Lets a restarted gateway bind while old connections sit in TIME_WAIT; on Linux it does not
    // let two listeners share a port.
    acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    step = "bind";
    acceptor_.bind(ep, ec);
  }
  if (!ec) {
    step = "listen";
    acceptor_.listen(net::socket_base::max_listen_connections, ec);
  }
  if (!ec) return true;
  beast::error_code ignored;
  acceptor_.close(ignored);
  if (error.empty()) error = std::string(step) + " " + EndpointText(ep) + ": " + ec.message();
  return false;
}

void Listener::Start() {
  std::lock_guard lock(lifecycle_mu_);
  if (started_ || stopped_) {
    throw std::logic_error(
        "HttpServer::Start: already started or stopped (a server is single-use)");
  }
  if (!options_.web_config_file.empty()) {
    const WebConfig config = LoadWebConfig(options_.web_config_file);  // throws, naming the key
    if (config.tls.enabled) {
      throw std::runtime_error("web config " + options_.web_config_file +
                               ": tls_server_config: TLS serving is not wired into the HTTP "
                               "server yet (basic auth and headers are); remove the section");
    }
    web_config_ = std::make_unique<WebConfigSource>(options_.web_config_file);
  }
  std::string error;
  for (const tcp::endpoint& ep : Resolve(options_.host)) {
    if (TryListen(ep, error)) break;
  }
  if (!acceptor_.is_open()) {
    throw std::runtime_error("http server: cannot listen on " +
                             HostPort(options_.host, options_.port) + ": " + error);
  }
  beast::error_code ec;
  bound_port_.store(acceptor_.local_endpoint(ec).port(), std::memory_order_release);
  // Idle connections are evicted at max_connections; if accept() runs out of descriptors first,
  // nothing is evicted and the flood wins.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY &&
      rlim_t{options_.max_connections} + kSpareFds > files.rlim_cur) {
    LogWarn("http: max_connections " + std::to_string(options_.max_connections) +
            " is too close to the open-file limit " + std::to_string(files.rlim_cur) +
            " (ulimit -n): accept() will fail before the cap, where idle connections are evicted; "
            "raise the limit or lower --max-connections");
  }
  started_ = true;
  DoAccept();  // before the threads start, so that run() has work and does not return at once
  const int n = std::max(1, options_.threads);
  threads_.reserve(n);
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { RunIoThread(); });
}

void Listener::RunIoThread() {
  for (;;) {
    try {
      ioc_.run();
      return;
    } catch (const std::exception& e) {
      // Only a bug gets here; the connection whose handler threw is dropped, the rest continue.
      const uint64_t n = Bump(counters_.internal_errors);
      if (LogThisOccurrence(n)) {
        LogWarn("http: io thread caught an exception, connection dropped: " +
                std::string(e.what()));
      }
    }
  }
}

void Listener::DoAccept() {
  acceptor_.async_accept(net::make_strand(ioc_),
                         beast::bind_front_handler(&Listener::OnAccept, this));
}

void Listener::OnAccept(beast::error_code ec, tcp::socket socket) {
  if (!acceptor_.is_open()) return;  // Stop() closed it
  if (ec) {
    const uint64_t n = Bump(counters_.accept_errors);
    if (LogThisOccurrence(n)) {
      LogWarn("http: accept failed, retrying (" + std::to_string(n) + " so far): " + ec.message());
    }
    accept_retry_.expires_after(kAcceptRetryDelay);
    accept_retry_.async_wait([this](beast::error_code wait_ec) {
      if (!wait_ec && acceptor_.is_open()) DoAccept();
    });
    return;
  }
  std::shared_ptr<Session> session;
  std::shared_ptr<Session> evicted;
  bool stopping;
  {
    std::lock_guard lock(sessions_mu_);
    stopping = stopping_;
    if (!stopping) session = AdmitLocked(socket, &evicted);
  }
  // Outside the lock: a session's last reference may go here, and its destructor takes the lock.
  if (evicted) {
    const uint64_t n = Bump(counters_.evictions);
    if (LogThisOccurrence(n)) {
      LogWarn("http: " + std::to_string(options_.max_connections) +
              " connections open (max_connections): closed the one idle the longest to admit a "
              "new one (" +
              std::to_string(n) + " so far)");
    }
    evicted->Close();
    evicted.reset();
  }
  if (session) {
    session->Run();
  } else if (!stopping) {
    const uint64_t n = Bump(counters_.rejected_connections);
    if (LogThisOccurrence(n)) {
      LogWarn("http: " + std::to_string(options_.max_connections) +
              " connections open (max_connections) and none idle: refused a new one (" +
              std::to_string(n) + " so far)");
    }
  }
  if (!session) {
    beast::error_code ignored;
    socket.close(ignored);
  }
  DoAccept();
}

std::shared_ptr<Session> Listener::AdmitLocked(tcp::socket& socket,
                                               std::shared_ptr<Session>* evicted) {
  for (auto idle = idle_.begin();
       sessions_.size() >= options_.max_connections && idle != idle_.end();) {
    auto it = sessions_.find(*idle);
    if (it == sessions_.end()) {  // cannot happen: an idle id is registered
      idle = idle_.erase(idle);
      continue;
    }
    std::shared_ptr<Session> candidate = it->second.session.lock();
    if (candidate && candidate->HasUnreadBytes()) {  // a scrape whose request already arrived
      ++idle;
      continue;
    }
    idle = idle_.erase(idle);
    it->second.idle.reset();
    sessions_.erase(it);
    *evicted = std::move(candidate);  // empty: it is being destroyed, its slot is free too
    if (*evicted) break;
  }
  if (sessions_.size() >= options_.max_connections) return nullptr;
  const uint64_t id = next_session_id_++;
  auto session = std::make_shared<Session>(std::move(socket), *this, id);
  sessions_.emplace(id, Entry{session, std::nullopt});
  return session;
}

void Listener::Stop() {
  std::lock_guard lock(lifecycle_mu_);
  if (stopped_) return;
  stopped_ = true;
  if (!started_) return;
  std::vector<std::shared_ptr<Session>> live;
  {
    // A session accepted after this point sees stopping_ and is never started.
    std::lock_guard sessions_lock(sessions_mu_);
    stopping_ = true;
    for (const auto& [id, entry] : sessions_) {
      if (auto s = entry.session.lock()) live.push_back(std::move(s));
    }
  }
  net::post(accept_strand_, [this] {
    beast::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_.cancel();
  });
  for (const auto& s : live) s->Close();
  live.clear();
  auth_.Shutdown();  // waiting checks dropped; a running one posts its answer to a live strand
  // run() returns once the closes above have drained every pending operation.
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

}  // namespace

struct HttpServer::Impl {
  Impl(HttpServerOptions options, std::map<std::string, HttpHandler> routes)
      : listener(std::move(options), std::move(routes)) {}
  Listener listener;
};

HttpServer::HttpServer(HttpServerOptions options, std::map<std::string, HttpHandler> routes)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(routes))) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Start() { impl_->listener.Start(); }

uint16_t HttpServer::port() const { return impl_->listener.port(); }

void HttpServer::Stop() { impl_->listener.Stop(); }

HttpServerStats HttpServer::stats() const { return impl_->listener.Stats(); }

}  // namespace shmetrics::gateway
