// TLS server contexts (OpenSSL 3) built from a web config's tls_server_config: certificate chain
// and key, client certificate policy (the toolkit's five client_auth_type values, a CA, allowed
// SANs), protocol versions, TLS 1.2 cipher suites by IANA name, curves, and ALPN offering
// http/1.1 only (the server has no HTTP/2). Every file is read when the context is built, so a
// context built for each new connection sees renewed certificates.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <mutex>
#include <string>

#include "web_config.h"

namespace shmetrics::gateway {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// Throws std::runtime_error naming the key or file and OpenSSL's reason (a missing file, a key
// that does not match the certificate, a CA file with no certificate).
SslCtxPtr BuildTlsContext(const TlsServerConfig& config);

// The TLS context for the next connection, as the toolkit gives each new connection the TLS
// config read afresh: rebuilt when the web config or the certificate, key or CA file it names
// has changed (their stamps; a connection costs a few stat calls, not a rebuild). Thread-safe.
class TlsContextSource {
 public:
  explicit TlsContextSource(WebConfigSource& config) : config_(config) {}

  struct Result {
    std::shared_ptr<boost::asio::ssl::context> context;  // null: refuse the connection
    std::string error;                                   // why, when context is null
    bool changed = false;  // this call built a new context or found a new error (log it once)
  };
  Result Current();

 private:
  struct Stamps {
    std::shared_ptr<const WebConfig> config;
    FileStamp cert, key, ca;
    bool operator==(const Stamps&) const = default;
  };

  WebConfigSource& config_;
  std::mutex mu_;
  std::optional<Stamps> built_for_;
  std::shared_ptr<boost::asio::ssl::context> context_;
  std::string error_;
};

}  // namespace shmetrics::gateway
