// TLS server contexts (OpenSSL 3) built from a web config's tls_server_config: certificate chain
// and key, client certificate policy (the toolkit's five client_auth_type values, a CA, allowed
// SANs), protocol versions, TLS 1.2 cipher suites by IANA name, curves, and ALPN offering
// http/1.1 only (the server has no HTTP/2). Every file is read when the context is built, so a
// context built for each new connection sees renewed certificates.
#pragma once

#include <openssl/ssl.h>

#include <memory>

#include "web_config.h"

namespace shmetrics::gateway {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// Throws std::runtime_error naming the key or file and OpenSSL's reason (a missing file, a key
// that does not match the certificate, a CA file with no certificate).
SslCtxPtr BuildTlsContext(const TlsServerConfig& config);

}  // namespace shmetrics::gateway
