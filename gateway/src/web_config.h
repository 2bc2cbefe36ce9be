// WebConfig: the --web.config.file that Prometheus exporters share (prometheus/exporter-toolkit's
// schema): TLS, extra response headers, basic auth users with bcrypt hashes, a global rate limit.
// Parsing is strict: an unknown or repeated key at any level, a value of the wrong type or outside
// its enumeration is an error naming the file, the line and the key. Relative paths are resolved
// against the file's directory. Files the config points to (cert, key, CA) are read only when a
// TLS context is built (tls_context.h); LoadWebConfig does that too, so that a bad file fails at
// startup rather than at the first handshake.
//
// WebConfigSource re-reads the file when it changes, for the per-request (auth, headers) and
// per-connection (TLS) re-read semantics of the toolkit.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shmetrics::gateway {

// Thrown for a config that cannot be read or is invalid; what() names the file, and the line and
// key when there is one.
class WebConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ClientAuth {
  kNoClientCert,
  kRequestClientCert,           // ask, accept anything or nothing
  kRequireAnyClientCert,        // demand one, do not verify it ("RequireClientCert" too)
  kVerifyClientCertIfGiven,     // verify one if sent
  kRequireAndVerifyClientCert,  // demand and verify: the only mode that authenticates clients
};

enum class TlsVersion { kTls10, kTls11, kTls12, kTls13 };

enum class Curve { kP256, kP384, kP521, kX25519 };

struct TlsServerConfig {
  // Either the *_file (resolved to an absolute path) or the inline PEM text is set, never both
  // needed; the file wins when both are given, as in the toolkit.
  std::string cert_file;
  std::string cert;
  std::string key_file;
  std::string key;
  std::string client_ca_file;
  std::string client_ca;
  ClientAuth client_auth = ClientAuth::kNoClientCert;
  std::vector<std::string> client_allowed_sans;  // exact match on any SAN of the leaf
  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;
  // IANA names (Go's tls.CipherSuites()). TLS 1.3 names are accepted and have no effect: TLS 1.3
  // suites are not configurable, in Go as here.
  std::vector<std::string> cipher_suites;
  bool prefer_server_cipher_suites = true;
  std::vector<Curve> curve_preferences;
  // Whether any TLS key is set: the server then speaks TLS only.
  bool enabled = false;
};

struct WebConfig {
  std::string path;       // the file, as given
  std::string directory;  // where relative paths were resolved
  TlsServerConfig tls;
  bool http2 = true;  // accepted for compatibility: the server speaks HTTP/1.1 only
  std::vector<std::pair<std::string, std::string>> headers;  // added to every response
  std::map<std::string, std::string> basic_auth_users;       // user -> bcrypt hash
  // Token bucket for the whole server, answered 429 before auth; interval 0 = off.
  std::chrono::nanoseconds rate_limit_interval{0};
  uint64_t rate_limit_burst = 0;
};

// Parses YAML text. `name` is what errors call the file; `directory` anchors relative paths.
// Throws WebConfigError. Reads no other file.
WebConfig ParseWebConfig(std::string_view yaml, const std::string& name,
                         const std::string& directory);

// Reads and parses the file, then, if it configures TLS, builds a TLS context from it (reading the
// certificate, key and CA) to prove that handshakes can work. Throws WebConfigError.
WebConfig LoadWebConfig(const std::string& path);

// Go's time.ParseDuration syntax ("1s", "1m30s", "250ms", "0"); nullopt if malformed.
std::optional<std::chrono::nanoseconds> ParseGoDuration(std::string_view text);

// What identifies a version of a file cheaply: a changed stamp means "read it again".
struct FileStamp {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};
FileStamp StampOf(const std::string& path);

// The current version of one web config file, re-parsed when its stamp changes. Thread-safe.
class WebConfigSource {
 public:
  explicit WebConfigSource(std::string path);

  struct Snapshot {
    std::shared_ptr<const WebConfig> config;  // null when the file is now unreadable or invalid
    std::string error;                        // why, when config is null
    bool changed = false;  // this call read a new version (for logging transitions once)
  };
  Snapshot Current();
  const std::string& path() const { return path_; }

 private:
  const std::string path_;
  std::mutex mu_;
  std::optional<FileStamp> stamp_;
  std::shared_ptr<const WebConfig> config_;
  std::string error_;
};

}  // namespace shmetrics::gateway
