// HttpServer implementation: one Listener (acceptors, io threads, connection registry, counters)
// and one Session per TCP connection, over plain TCP or TLS (Session<PlainStream> or
// Session<TlsStream>: the same code, the TLS one starting with a handshake). Everything a session
// does runs on its own strand, so a session needs no locks of its own; the Listener's acceptor runs
// on another strand. The one lock the two share, sessions_mu_, guards the registry of sessions and
// the list of idle ones: a session enters that list when it starts waiting for a request's first
// byte and leaves it when the wait ends, and the acceptor takes the list's oldest entry when it
// needs a slot. Both sides decide under the lock, so a session is either evicted while idle or not
// at all. Stop() closes the acceptor and every session through their strands and then joins the io
// threads, which return once no operation is left pending. Modelled on Beast's advanced_server
// example.
#include "http_server.h"

#include <sys/ioctl.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <charconv>
#include <cmath>
#include <exception>
#include <list>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <unordered_map>

#include "basic_auth.h"
#include "log.h"
#include "tls_context.h"
#include "transfer_coding.h"
#include "web_config.h"

namespace shmetrics::gateway {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

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
  std::atomic<uint64_t> rate_limited{0};
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

// The web config's rate_limit, as the Go rate.Limiter(rate.Every(interval), burst) the toolkit
// uses: a bucket of `burst` tokens, refilled by one every `interval`; each request takes one.
class RateLimiter {
 public:
  RateLimiter(std::chrono::nanoseconds interval, uint64_t burst)
      : interval_(interval), burst_(static_cast<double>(burst)), tokens_(burst_) {}

  bool Allow() {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(now - last_) / interval_);
    last_ = now;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  const std::chrono::nanoseconds interval_;
  const double burst_;
  std::mutex mu_;
  double tokens_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// What the listener needs of a session, whatever its stream.
class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void Run() = 0;
  virtual void Close() = 0;  // from any thread
  // Whether request bytes wait unread in the socket: an "idle" session that has them is a request
  // about to start, not an idle one.
  virtual bool HasUnreadBytes() = 0;
};

class Listener {
 public:
  Listener(HttpServerOptions options, std::map<std::string, HttpHandler> routes);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  void Start();
  void Stop();
  uint16_t port(std::size_t i) const;
  bool tls() const { return tls_contexts_ != nullptr; }
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
  RateLimiter* rate_limiter() { return rate_limiter_.get(); }
  BasicAuth& auth() { return auth_; }

 private:
  // One listening socket, on its own strand.
  struct Acceptor {
    explicit Acceptor(net::io_context& ioc)
        : strand(net::make_strand(ioc)), acceptor(strand), retry(strand) {}
    net::strand<net::io_context::executor_type> strand;
    tcp::acceptor acceptor;
    net::steady_timer retry;
    std::atomic<uint16_t> port{0};
  };

  std::vector<tcp::endpoint> Resolve(const ListenAddress& address) const;
  static bool TryListen(tcp::acceptor& acceptor, const tcp::endpoint& ep, std::string& error);
  void Listen(const ListenAddress& address, Acceptor& a);
  void DoAccept(Acceptor& a);
  void OnAccept(Acceptor& a, beast::error_code ec, tcp::socket socket);
  // The TLS context for a new connection; null (counted and logged) when none can be built now.
  std::shared_ptr<net::ssl::context> TlsContextForNewConnection();
  // Under sessions_mu_: registers a session for `socket` if there is a slot, evicting the oldest
  // idle session to make one if needed (returned in *evicted, to be closed after the unlock).
  std::shared_ptr<SessionBase> AdmitLocked(tcp::socket& socket,
                                           std::shared_ptr<net::ssl::context> tls_context,
                                           std::shared_ptr<SessionBase>* evicted);
  void RunIoThread();

  const HttpServerOptions options_;
  const std::map<std::string, HttpHandler, std::less<>> routes_;
  const std::string route_list_;  // "/metrics, /healthz": the hint in 404 bodies
  Counters counters_;

  // Declared before ioc_ so that they outlive it: sessions unregister in their destructors.
  // Everything below up to ioc_ is guarded by sessions_mu_.
  struct Entry {
    std::weak_ptr<SessionBase> session;
    std::optional<std::list<uint64_t>::iterator> idle;  // its node in idle_ while idle
  };
  std::mutex sessions_mu_;
  bool stopping_ = false;
  uint64_t next_session_id_ = 0;
  // Every session that holds a slot: the cap is its size. An evicted session leaves at once; it
  // closes within microseconds on its strand.
  std::unordered_map<uint64_t, Entry> sessions_;
  std::list<uint64_t> idle_;  // ids of idle sessions, the one idle the longest first

  // Set by Start, before any io thread runs; read-only afterwards. Declared before ioc_ so that
  // the sessions (destroyed with ioc_) never outlive them.
  std::unique_ptr<WebConfigSource> web_config_;     // null without --web.config.file
  std::unique_ptr<TlsContextSource> tls_contexts_;  // null: plain HTTP
  std::unique_ptr<RateLimiter> rate_limiter_;       // null: no rate_limit

  net::io_context ioc_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;  // one per options_.listen entry
  std::vector<std::thread> threads_;
  // After ioc_: destroyed first, so that no password check outlives the sessions it answers.
  BasicAuth auth_;

  std::mutex lifecycle_mu_;  // serialises Start and Stop
  bool started_ = false;
  bool stopped_ = false;
};

// One connection. Reads one request at a time (pipelined requests wait in buffer_), answers it,
// then reads the next; every step runs on the connection's strand. A TLS session first tells a
// TLS client from a plain HTTP one (answered 400, as Go's servers do), then handshakes.
template <class Stream>
class Session final : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  // `tls_context` is null for a plain session and required for a TLS one.
  Session(tcp::socket&& socket, std::shared_ptr<net::ssl::context> tls_context, Listener& listener,
          uint64_t id);
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void Run() override;
  void Close() override;
  bool HasUnreadBytes() override {  // FIONREAD on the descriptor; any error reads as none
    int n = 0;
    return ::ioctl(native_fd_, FIONREAD, &n) == 0 && n > 0;
  }

 private:
  enum class After { kKeepAlive, kClose };
  enum class Wait { kFirstRequest, kNextRequest };

  static Stream MakeStream(tcp::socket&& socket, net::ssl::context* tls_context);
  beast::tcp_stream& Tcp() { return beast::get_lowest_layer(stream_); }
  void Begin();
  void AwaitClientHello();
  void OnDetect(beast::error_code ec, bool is_tls);
  void OnHandshake(beast::error_code ec, std::size_t used);
  void HandshakeFailed(const std::string& why);
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
  void LingerTcp();
  void DrainSome();
  void OnDrain(beast::error_code ec, std::size_t n);
  void CloseNow();

  Listener& listener_;
  const HttpServerOptions& options_;
  const uint64_t id_;
  const std::shared_ptr<net::ssl::context> tls_context_;  // outlives stream_'s SSL object
  Stream stream_;
  int native_fd_ = -1;  // the socket's descriptor, for HasUnreadBytes from the listener
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  std::size_t linger_left_ = 0;
  bool closed_ = false;
  // The web config's headers, added to every answer to the current request (401s included).
  std::vector<std::pair<std::string, std::string>> config_headers_;
};

template <class Stream>
Session<Stream>::Session(tcp::socket&& socket, std::shared_ptr<net::ssl::context> tls_context,
                         Listener& listener, uint64_t id)
    : listener_(listener),
      options_(listener.options()),
      id_(id),
      tls_context_(std::move(tls_context)),
      stream_(MakeStream(std::move(socket), tls_context_.get())),
      buffer_(std::size_t{options_.header_limit} + options_.body_limit + kPipelineSlack) {
  native_fd_ = Tcp().socket().native_handle();
  Bump(listener_.counters().open_connections);
}

template <class Stream>
Stream Session<Stream>::MakeStream(tcp::socket&& socket, net::ssl::context* tls_context) {
  if constexpr (kTls) {
    return Stream(std::move(socket), *tls_context);
  } else {
    return Stream(std::move(socket));
  }
}

template <class Stream>
Session<Stream>::~Session() {
  listener_.counters().open_connections.fetch_sub(1, std::memory_order_relaxed);
  listener_.Unregister(id_);
}

template <class Stream>
void Session<Stream>::Run() {
  net::dispatch(stream_.get_executor(),
                beast::bind_front_handler(&Session<Stream>::Begin, this->shared_from_this()));
}

template <class Stream>
void Session<Stream>::Close() {
  net::post(stream_.get_executor(), [self = this->shared_from_this()] { self->CloseNow(); });
}

template <class Stream>
void Session<Stream>::CloseNow() {
  closed_ = true;
  Tcp().close();  // cancels whatever is pending: its handler sees operation_aborted
}

template <class Stream>
void Session<Stream>::Begin() {
  if (closed_) return;
  // A new connection's first request is timed from accept: a client that connects and never
  // sends is the cheapest way to hold a connection slot.
  Tcp().expires_after(options_.request_timeout);
  if constexpr (kTls) {
    AwaitClientHello();
  } else {
    AwaitFirstByte(Wait::kFirstRequest);
  }
}

// Waiting for the ClientHello is waiting for a first byte: the session is idle, and evictable.
template <class Stream>
void Session<Stream>::AwaitClientHello() {
  if (!listener_.EnterIdle(id_)) return CloseNow();
  beast::async_detect_ssl(
      Tcp(), buffer_,
      beast::bind_front_handler(&Session<Stream>::OnDetect, this->shared_from_this()));
}

template <class Stream>
void Session<Stream>::OnDetect(beast::error_code ec, bool is_tls) {
  if (!listener_.LeaveIdle(id_)) return CloseNow();
  if (ec) {
    // A connection closed or timed out before its first byte is a port probe, not a failed
    // handshake; counted as the plain server counts it.
    if (ec == beast::error::timeout) Bump(listener_.counters().timeouts);
    return CloseNow();
  }
  if constexpr (kTls) {
    if (!is_tls) {
      // Go's answer, so that curl http://... against the TLS port says what is wrong.
      HandshakeFailed("the client sent plain HTTP (answered 400)");
      static constexpr std::string_view kPlainToTls =
          "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
      return net::async_write(
          Tcp(), net::buffer(kPlainToTls),
          [self = this->shared_from_this()](beast::error_code write_ec, std::size_t) {
            if (write_ec) return self->CloseNow();
            self->LingerTcp();
          });
    }
    // The bytes detect_ssl read are the start of the ClientHello: hand them to the handshake.
    stream_.async_handshake(
        net::ssl::stream_base::server, buffer_.data(),
        beast::bind_front_handler(&Session<Stream>::OnHandshake, this->shared_from_this()));
  }
}

template <class Stream>
void Session<Stream>::OnHandshake(beast::error_code ec, std::size_t used) {
  if (closed_ || ec == net::error::operation_aborted) return;
  if (ec) {
    HandshakeFailed(ec == beast::error::timeout ? "timed out" : ec.message());
    return CloseNow();
  }
  buffer_.consume(used);
  AwaitFirstByte(Wait::kFirstRequest);  // still timed from accept
}

template <class Stream>
void Session<Stream>::HandshakeFailed(const std::string& why) {
  const uint64_t n = Bump(listener_.counters().tls_handshake_errors);
  if (LogThisOccurrence(n)) {
    beast::error_code ec;
    const tcp::endpoint peer = Tcp().socket().remote_endpoint(ec);
    LogWarn("http: TLS handshake with " + (ec ? std::string("a client") : EndpointText(peer)) +
            " failed (" + std::to_string(n) + " so far): " + Truncated(why));
  }
}

// The header first, on its own, so that its framing is checked before any body byte is read.
template <class Stream>
void Session<Stream>::ReadRequest() {
  parser_.emplace();
  parser_->header_limit(options_.header_limit);
  parser_->body_limit(options_.body_limit);
  http::async_read_header(
      stream_, buffer_, *parser_,
      beast::bind_front_handler(&Session<Stream>::OnHeader, this->shared_from_this()));
}

// Between keep-alive requests the idle limit applies; the request deadline starts with the next
// request's first byte, which is why this waits for bytes before handing over to the parser.
template <class Stream>
void Session<Stream>::AwaitNextRequest() {
  if (closed_) return;
  if (buffer_.size() > 0) {  // pipelined: the next request has already started
    Tcp().expires_after(options_.request_timeout);
    return ReadRequest();
  }
  Tcp().expires_after(options_.idle_timeout);
  AwaitFirstByte(Wait::kNextRequest);
}

// Waiting for a request's first byte is what makes a session idle, and evictable, whether it
// has served requests before or not.
template <class Stream>
void Session<Stream>::AwaitFirstByte(Wait wait) {
  if (!listener_.EnterIdle(id_)) return CloseNow();
  stream_.async_read_some(
      buffer_.prepare(kReadChunk),
      beast::bind_front_handler(&Session<Stream>::OnIdleRead, this->shared_from_this(), wait));
}

template <class Stream>
void Session<Stream>::OnIdleRead(Wait wait, beast::error_code ec, std::size_t n) {
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
  if (wait == Wait::kNextRequest) Tcp().expires_after(options_.request_timeout);
  ReadRequest();
}

template <class Stream>
void Session<Stream>::OnHeader(beast::error_code ec, std::size_t n) {
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
                   beast::bind_front_handler(&Session<Stream>::OnRead, this->shared_from_this()));
}

template <class Stream>
void Session<Stream>::OnRead(beast::error_code ec, std::size_t) {
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

// The rate limit and basic auth cover every path, as in the toolkit (the limit is checked first):
// an unauthenticated request learns nothing, not even which paths exist. The password check may
// take a bcrypt run, which happens on BasicAuth's workers; the session resumes on its strand.
template <class Stream>
void Session<Stream>::HandleRequest() {
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
  if (RateLimiter* limiter = listener_.rate_limiter(); limiter != nullptr && !limiter->Allow()) {
    Bump(counters.rate_limited);
    return Deny(429, "Too Many Requests");
  }
  const auto& users = snap.config->basic_auth_users;
  if (users.empty()) return Route();
  const auto credentials = BasicAuth::ParseHeader(parser_->get()[http::field::authorization]);
  if (!credentials) return Deny(401, "Unauthorized");
  BasicAuth::Check check{credentials->first, credentials->second, nullptr};
  if (auto it = users.find(check.user); it != users.end()) check.hash = &it->second;
  if (const std::optional<bool> cached = listener_.auth().Cached(check)) {
    return *cached ? Route() : Deny(401, "Unauthorized");
  }
  auto resume = [self = this->shared_from_this()](bool allowed) {
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

template <class Stream>
void Session<Stream>::Deny(unsigned status, std::string text) {
  HttpResponse out = PlainResponse(status, std::move(text));
  if (status == 401) {
    Bump(listener_.counters().auth_failures);
    out.headers.emplace_back("WWW-Authenticate", "Basic");
  }
  if (status == 429) out.headers.emplace_back("Retry-After", "1");
  const auto& req = parser_->get();
  Send(std::move(out), req.version(), req.keep_alive(), req.method() == http::verb::head);
}

template <class Stream>
void Session<Stream>::Route() {
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

template <class Stream>
HttpResponse Session<Stream>::CallHandler(const HttpHandler& handler, const HttpRequestInfo& info) {
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
template <class Stream>
void Session<Stream>::SendError(unsigned status, std::string text) {
  Bump(listener_.counters().bad_requests);
  Send(PlainResponse(status, std::move(text)), 11, /*keep_alive=*/false, /*head=*/false);
}

template <class Stream>
void Session<Stream>::Send(HttpResponse out, unsigned version, bool keep_alive, bool head) {
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
  Tcp().expires_after(options_.request_timeout);
  http::async_write(stream_, res_,
                    beast::bind_front_handler(&Session<Stream>::OnWrite, this->shared_from_this(),
                                              keep_alive ? After::kKeepAlive : After::kClose));
}

template <class Stream>
void Session<Stream>::OnWrite(After after, beast::error_code ec, std::size_t) {
  if (ec) {
    if (ec == beast::error::timeout) Bump(listener_.counters().timeouts);
    return CloseNow();
  }
  res_ = {};  // a large scrape body should not stay allocated while the connection idles
  if (after == After::kKeepAlive) return AwaitNextRequest();
  Linger();
}

// TLS first says close_notify and waits (bounded) for the client's; either way the connection
// then closes. Plain TCP half-closes and drains.
template <class Stream>
void Session<Stream>::Linger() {
  if (closed_) return;
  if constexpr (kTls) {
    Tcp().expires_after(std::min<std::chrono::milliseconds>(kMaxLinger, options_.request_timeout));
    stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {
      if (!self->closed_) self->CloseNow();
    });
  } else {
    LingerTcp();
  }
}

template <class Stream>
void Session<Stream>::LingerTcp() {
  if (closed_) return;
  beast::error_code ec;
  Tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec) return CloseNow();
  buffer_.consume(buffer_.size());
  linger_left_ = kMaxLingerBytes;
  Tcp().expires_after(std::min<std::chrono::milliseconds>(kMaxLinger, options_.request_timeout));
  DrainSome();
}

template <class Stream>
void Session<Stream>::DrainSome() {
  Tcp().async_read_some(
      buffer_.prepare(kReadChunk),
      beast::bind_front_handler(&Session<Stream>::OnDrain, this->shared_from_this()));
}

template <class Stream>
void Session<Stream>::OnDrain(beast::error_code ec, std::size_t n) {
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
      ioc_(std::max(1, options_.threads)) {}

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
  s.rate_limited = get(counters_.rate_limited);
  s.tls_handshake_errors = get(counters_.tls_handshake_errors);
  s.web_config_errors = get(counters_.web_config_errors);
  return s;
}

uint16_t Listener::port(std::size_t i) const {
  return i < acceptors_.size() ? acceptors_[i]->port.load(std::memory_order_acquire) : 0;
}

std::vector<tcp::endpoint> Listener::Resolve(const ListenAddress& address) const {
  std::string_view host = address.host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  // Every interface: one dual-stack IPv6 socket (TryListen clears v6_only), or IPv4 where the
  // host has no IPv6.
  if (host.empty())
    return {tcp::endpoint(tcp::v6(), address.port), tcp::endpoint(tcp::v4(), address.port)};
  const std::string where = HostPort(host, address.port);
  beast::error_code ec;
  // Numeric addresses never touch the resolver, so they cannot block on DNS.
  const net::ip::address numeric = net::ip::make_address(std::string(host), ec);
  if (!ec) return {tcp::endpoint(numeric, address.port)};

  net::io_context resolver_ioc;
  tcp::resolver resolver(resolver_ioc);
  const auto results =
      resolver.resolve(host, std::to_string(address.port), tcp::resolver::numeric_service, ec);
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

bool Listener::TryListen(tcp::acceptor& acceptor, const tcp::endpoint& ep, std::string& error) {
  beast::error_code ec;
  const char* step = "open";
  acceptor.open(ep.protocol(), ec);
  if (!ec) {
    step = "setsockopt(SO_REUSEADDR)";
    // Lets a restarted gateway bind while old connections sit in TIME_WAIT; on Linux it does not
    // let two listeners share a port.
    acceptor.set_option(net::socket_base::reuse_address(true), ec);
  }
  if (!ec && ep.address().is_v6() && ep.address().is_unspecified()) {
    step = "setsockopt(IPV6_V6ONLY)";
    acceptor.set_option(net::ip::v6_only(false), ec);
  }
  if (!ec) {
    step = "bind";
    acceptor.bind(ep, ec);
  }
  if (!ec) {
    step = "listen";
    acceptor.listen(net::socket_base::max_listen_connections, ec);
  }
  if (!ec) return true;
  beast::error_code ignored;
  acceptor.close(ignored);
  if (error.empty()) error = std::string(step) + " " + EndpointText(ep) + ": " + ec.message();
  return false;
}

void Listener::Listen(const ListenAddress& address, Acceptor& a) {
  std::string error;
  for (const tcp::endpoint& ep : Resolve(address)) {
    if (TryListen(a.acceptor, ep, error)) break;
  }
  if (!a.acceptor.is_open()) {
    throw std::runtime_error("http server: cannot listen on " +
                             HostPort(address.host, address.port) + ": " + error);
  }
  beast::error_code ec;
  a.port.store(a.acceptor.local_endpoint(ec).port(), std::memory_order_release);
}

void Listener::Start() {
  std::lock_guard lock(lifecycle_mu_);
  if (started_ || stopped_) {
    throw std::logic_error(
        "HttpServer::Start: already started or stopped (a server is single-use)");
  }
  if (options_.listen.empty()) throw std::invalid_argument("http server: no listen address");
  if (!options_.web_config_file.empty()) {
    const WebConfig config = LoadWebConfig(options_.web_config_file);  // throws, naming the key
    web_config_ = std::make_unique<WebConfigSource>(options_.web_config_file);
    if (config.tls.enabled) {
      tls_contexts_ = std::make_unique<TlsContextSource>(*web_config_);
      if (const auto first = tls_contexts_->Current(); !first.context) {
        throw std::runtime_error(first.error);  // changed between the two reads
      }
    }
    if (config.rate_limit_interval.count() > 0) {
      rate_limiter_ =
          std::make_unique<RateLimiter>(config.rate_limit_interval, config.rate_limit_burst);
    }
  }
  for (const ListenAddress& address : options_.listen) {
    acceptors_.push_back(std::make_unique<Acceptor>(ioc_));
    Listen(address, *acceptors_.back());
  }
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
  // Before the threads start, so that run() has work and does not return at once.
  for (const auto& a : acceptors_) DoAccept(*a);
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

void Listener::DoAccept(Acceptor& a) {
  a.acceptor.async_accept(net::make_strand(ioc_),
                          beast::bind_front_handler(&Listener::OnAccept, this, std::ref(a)));
}

std::shared_ptr<net::ssl::context> Listener::TlsContextForNewConnection() {
  TlsContextSource::Result r = tls_contexts_->Current();
  if (r.changed) {
    if (r.context) {
      LogInfo("http: TLS settings read from " + web_config_->path() + " for new connections");
    } else {
      LogWarn("http: TLS connections fail until the web config is fixed: " + r.error);
    }
  }
  if (!r.context) {
    const uint64_t n = Bump(counters_.tls_handshake_errors);
    if (!r.changed && LogThisOccurrence(n)) {
      LogWarn("http: refused a TLS connection (" + std::to_string(n) + " so far): " + r.error);
    }
  }
  return std::move(r.context);
}

void Listener::OnAccept(Acceptor& a, beast::error_code ec, tcp::socket socket) {
  if (!a.acceptor.is_open()) return;  // Stop() closed it
  if (ec) {
    const uint64_t n = Bump(counters_.accept_errors);
    if (LogThisOccurrence(n)) {
      LogWarn("http: accept failed, retrying (" + std::to_string(n) + " so far): " + ec.message());
    }
    a.retry.expires_after(kAcceptRetryDelay);
    a.retry.async_wait([this, &a](beast::error_code wait_ec) {
      if (!wait_ec && a.acceptor.is_open()) DoAccept(a);
    });
    return;
  }
  std::shared_ptr<net::ssl::context> tls_context;
  if (tls_contexts_) tls_context = TlsContextForNewConnection();
  std::shared_ptr<SessionBase> session;
  std::shared_ptr<SessionBase> evicted;
  bool stopping;
  {
    std::lock_guard lock(sessions_mu_);
    stopping = stopping_;
    if (!stopping && (!tls_contexts_ || tls_context)) {
      session = AdmitLocked(socket, std::move(tls_context), &evicted);
    }
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
  } else if (!stopping && (!tls_contexts_ || tls_context)) {
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
  DoAccept(a);
}

std::shared_ptr<SessionBase> Listener::AdmitLocked(tcp::socket& socket,
                                                   std::shared_ptr<net::ssl::context> tls_context,
                                                   std::shared_ptr<SessionBase>* evicted) {
  for (auto idle = idle_.begin();
       sessions_.size() >= options_.max_connections && idle != idle_.end();) {
    auto it = sessions_.find(*idle);
    if (it == sessions_.end()) {  // cannot happen: an idle id is registered
      idle = idle_.erase(idle);
      continue;
    }
    std::shared_ptr<SessionBase> candidate = it->second.session.lock();
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
  std::shared_ptr<SessionBase> session;
  if (tls_context) {
    session =
        std::make_shared<Session<TlsStream>>(std::move(socket), std::move(tls_context), *this, id);
  } else {
    session = std::make_shared<Session<PlainStream>>(std::move(socket), nullptr, *this, id);
  }
  sessions_.emplace(id, Entry{session, std::nullopt});
  return session;
}

void Listener::Stop() {
  std::lock_guard lock(lifecycle_mu_);
  if (stopped_) return;
  stopped_ = true;
  if (!started_) return;
  std::vector<std::shared_ptr<SessionBase>> live;
  {
    // A session accepted after this point sees stopping_ and is never started.
    std::lock_guard sessions_lock(sessions_mu_);
    stopping_ = true;
    for (const auto& [id, entry] : sessions_) {
      if (auto s = entry.session.lock()) live.push_back(std::move(s));
    }
  }
  for (const auto& a : acceptors_) {
    net::post(a->strand, [&a = *a] {
      beast::error_code ignored;
      a.acceptor.close(ignored);
      a.retry.cancel();
    });
  }
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

uint16_t HttpServer::port(std::size_t i) const { return impl_->listener.port(i); }

bool HttpServer::tls() const { return impl_->listener.tls(); }

void HttpServer::Stop() { impl_->listener.Stop(); }

HttpServerStats HttpServer::stats() const { return impl_->listener.Stats(); }

}  // namespace shmetrics::gateway
