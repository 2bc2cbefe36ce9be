// Strict parsing of the web config with yaml-cpp, which knows no schema: every mapping is walked
// by hand against the keys it may hold, so that a typo is an error and not a silently ignored
// setting (the toolkit gets the same from yaml.UnmarshalStrict).
#include "web_config.h"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "tls_context.h"

namespace shmetrics::gateway {
namespace {

// Go's tls.CipherSuites(): the suites the toolkit accepts by name. The TLS 1.3 ones are accepted
// and change nothing (TLS 1.3 suites are not configurable).
constexpr std::array<std::string_view, 13> kCipherNames = {
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
};

// The only headers the toolkit lets a config add, with their allowed values (empty: any value).
const std::map<std::string, std::vector<std::string>, std::less<>>& AllowedHeaders() {
  static const std::map<std::string, std::vector<std::string>, std::less<>> headers = {
      {"Strict-Transport-Security", {}},
      {"X-Content-Type-Options", {"nosniff"}},
      {"X-Frame-Options", {"deny", "sameorigin"}},
      {"X-XSS-Protection", {}},
      {"Content-Security-Policy", {}},
  };
  return headers;
}

class Parser {
 public:
  Parser(std::string name, std::string directory)
      : name_(std::move(name)), directory_(std::move(directory)) {}

  WebConfig Parse(std::string_view text) {
    WebConfig c;
    c.path = name_;
    c.directory = directory_;
    YAML::Node root;
    try {
      root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
      Fail(e.mark, "", "invalid YAML: " + e.msg);
    }
    if (!root.IsDefined() || root.IsNull()) return c;  // an empty file: plain HTTP, no auth
    ForEachKey(root, "", [&](const std::string& key, const YAML::Node& v, const YAML::Mark& m) {
      if (key == "tls_server_config") {
        ParseTls(v, c.tls);
      } else if (key == "http_server_config") {
        ParseHttp(v, c);
      } else if (key == "basic_auth_users") {
        ParseUsers(v, c);
      } else if (key == "rate_limit") {
        ParseRateLimit(v, c);
      } else {
        Unknown(m, "", key);
      }
    });
    const TlsServerConfig& t = c.tls;
    if (t.enabled) {
      if (t.cert_file.empty() && t.cert.empty())
        Fail({}, "tls_server_config", "missing one of cert or cert_file");
      if (t.key_file.empty() && t.key.empty())
        Fail({}, "tls_server_config", "missing one of key or key_file");
      if ((!t.client_ca_file.empty() || !t.client_ca.empty()) &&
          t.client_auth == ClientAuth::kNoClientCert) {
        Fail({}, "tls_server_config.client_auth_type",
             "client CA's have been configured without a Client Auth Policy (set client_auth_type, "
             "e.g. RequireAndVerifyClientCert)");
      }
      if (t.min_version > t.max_version)
        Fail({}, "tls_server_config", "min_version is above max_version: no version can be used");
    }
    return c;
  }

 private:
  using KeyFn = std::function<void(const std::string&, const YAML::Node&, const YAML::Mark&)>;

  [[noreturn]] void Fail(const YAML::Mark& mark, const std::string& key,
                         const std::string& why) const {
    std::string where = name_;
    if (mark.line >= 0) where += ":" + std::to_string(mark.line + 1);
    throw WebConfigError("web config " + where + ": " + (key.empty() ? "" : key + ": ") + why);
  }

  [[noreturn]] void Unknown(const YAML::Mark& mark, const std::string& parent,
                            const std::string& key) const {
    Fail(mark, parent.empty() ? key : parent + "." + key,
         "unknown key" + (parent.empty() ? std::string() : " in " + parent));
  }

  // Calls fn for every key of a mapping (a null node is an empty mapping), refusing repeats.
  void ForEachKey(const YAML::Node& node, const std::string& where, const KeyFn& fn) const {
    if (node.IsNull()) return;
    if (!node.IsMap()) Fail(node.Mark(), where, "expected a mapping of keys");
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar()) Fail(it->first.Mark(), where, "a key must be a plain string");
      const std::string key = it->first.Scalar();
      const std::string full = where.empty() ? key : where + "." + key;
      if (!seen.insert(key).second) Fail(it->first.Mark(), full, "key given twice");
      fn(key, it->second, it->first.Mark());
    }
  }

  std::string String(const YAML::Node& v, const std::string& key) const {
    if (v.IsNull()) return "";
    if (!v.IsScalar()) Fail(v.Mark(), key, "expected a string");
    return v.Scalar();
  }

  bool Bool(const YAML::Node& v, const std::string& key) const {
    if (v.IsScalar()) {
      const std::string& s = v.Scalar();
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
    }
    Fail(v.Mark(), key, "expected true or false");
  }

  std::vector<std::string> Strings(const YAML::Node& v, const std::string& key) const {
    std::vector<std::string> out;
    if (v.IsNull()) return out;
    if (!v.IsSequence()) Fail(v.Mark(), key, "expected a list of strings");
    for (const YAML::Node& item : v) out.push_back(String(item, key));
    return out;
  }

  std::string Path(const YAML::Node& v, const std::string& key) const {
    std::string p = String(v, key);
    if (p.empty() || p.front() == '/') return p;
    return (std::filesystem::path(directory_) / p).lexically_normal().string();
  }

  void ParseTls(const YAML::Node& node, TlsServerConfig& t) const {
    const std::string parent = "tls_server_config";
    ForEachKey(node, parent, [&](const std::string& key, const YAML::Node& v, const YAML::Mark& m) {
      const std::string full = parent + "." + key;
      if (key == "cert_file") {
        t.cert_file = Path(v, full);
      } else if (key == "cert") {
        t.cert = String(v, full);
      } else if (key == "key_file") {
        t.key_file = Path(v, full);
      } else if (key == "key") {
        t.key = String(v, full);
      } else if (key == "client_ca_file") {
        t.client_ca_file = Path(v, full);
      } else if (key == "client_ca") {
        t.client_ca = String(v, full);
      } else if (key == "client_auth_type") {
        const std::string s = String(v, full);
        static const std::map<std::string, ClientAuth, std::less<>> kTypes = {
            {"", ClientAuth::kNoClientCert},
            {"NoClientCert", ClientAuth::kNoClientCert},
            {"RequestClientCert", ClientAuth::kRequestClientCert},
            {"RequireAnyClientCert", ClientAuth::kRequireAnyClientCert},
            {"RequireClientCert", ClientAuth::kRequireAnyClientCert},
            {"VerifyClientCertIfGiven", ClientAuth::kVerifyClientCertIfGiven},
            {"RequireAndVerifyClientCert", ClientAuth::kRequireAndVerifyClientCert},
        };
        auto it = kTypes.find(s);
        if (it == kTypes.end()) {
          Fail(v.Mark(), full,
               "invalid ClientAuth '" + s +
                   "' (use NoClientCert, RequestClientCert, RequireAnyClientCert, "
                   "VerifyClientCertIfGiven or RequireAndVerifyClientCert)");
        }
        t.client_auth = it->second;
        if (s.empty()) return;  // an empty value does not by itself turn TLS on
      } else if (key == "client_allowed_sans") {
        t.client_allowed_sans = Strings(v, full);
        return;
      } else if (key == "min_version" || key == "max_version") {
        (key == "min_version" ? t.min_version : t.max_version) = Version(v, full);
        return;
      } else if (key == "cipher_suites") {
        for (const std::string& name : Strings(v, full)) {
          if (std::find(kCipherNames.begin(), kCipherNames.end(), name) == kCipherNames.end()) {
            Fail(v.Mark(), full,
                 "unknown cipher '" + name +
                     "' (IANA names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)");
          }
          t.cipher_suites.push_back(name);
        }
        return;
      } else if (key == "prefer_server_cipher_suites") {
        t.prefer_server_cipher_suites = Bool(v, full);
        return;
      } else if (key == "curve_preferences") {
        static const std::map<std::string, Curve, std::less<>> kCurves = {
            {"CurveP256", Curve::kP256},
            {"CurveP384", Curve::kP384},
            {"CurveP521", Curve::kP521},
            {"X25519", Curve::kX25519},
        };
        for (const std::string& name : Strings(v, full)) {
          auto it = kCurves.find(name);
          if (it == kCurves.end()) {
            Fail(v.Mark(), full,
                 "unknown curve '" + name + "' (use CurveP256, CurveP384, CurveP521 or X25519)");
          }
          t.curve_preferences.push_back(it->second);
        }
        return;
      } else {
        Unknown(m, parent, key);
      }
      // The toolkit's IsEnabled: a certificate, key, CA or auth type means TLS.
      if (!String(v, full).empty()) t.enabled = true;
    });
  }

  TlsVersion Version(const YAML::Node& v, const std::string& key) const {
    const std::string s = String(v, key);
    if (s == "TLS10") return TlsVersion::kTls10;
    if (s == "TLS11") return TlsVersion::kTls11;
    if (s == "TLS12") return TlsVersion::kTls12;
    if (s == "TLS13") return TlsVersion::kTls13;
    Fail(v.Mark(), key, "unknown TLS version '" + s + "' (use TLS10, TLS11, TLS12 or TLS13)");
  }

  void ParseHttp(const YAML::Node& node, WebConfig& c) const {
    const std::string parent = "http_server_config";
    ForEachKey(node, parent, [&](const std::string& key, const YAML::Node& v, const YAML::Mark& m) {
      const std::string full = parent + "." + key;
      if (key == "http2") {
        c.http2 = Bool(v, full);
      } else if (key == "headers") {
        ForEachKey(v, full, [&](const std::string& name, const YAML::Node& hv, const YAML::Mark&) {
          const std::string hkey = full + "." + name;
          const std::string value = String(hv, hkey);
          auto it = AllowedHeaders().find(name);
          if (it == AllowedHeaders().end()) {
            Fail(hv.Mark(), hkey,
                 "HTTP header \"" + name +
                     "\" can not be configured (allowed: Content-Security-Policy, "
                     "Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, "
                     "X-XSS-Protection)");
          }
          if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
            Fail(hv.Mark(), hkey, "invalid value for " + name + ": holds CR, LF or NUL");
          const auto& allowed = it->second;
          if (!allowed.empty() &&
              std::find(allowed.begin(), allowed.end(), value) == allowed.end()) {
            std::string list;
            for (const auto& a : allowed) list += (list.empty() ? "\"" : ", \"") + a + "\"";
            Fail(hv.Mark(), hkey,
                 "invalid value for " + name + ": expected one of " + list + ", got \"" + value +
                     "\"");
          }
          c.headers.emplace_back(name, value);
        });
      } else {
        Unknown(m, parent, key);
      }
    });
  }

  void ParseUsers(const YAML::Node& node, WebConfig& c) const {
    const std::string parent = "basic_auth_users";
    ForEachKey(node, parent, [&](const std::string& user, const YAML::Node& v, const YAML::Mark&) {
      const std::string full = parent + "." + user;
      const std::string hash = String(v, full);
      if (!LooksLikeBcrypt(hash)) {
        Fail(v.Mark(), full,
             "not a bcrypt hash: expected $2a$, $2b$ or $2y$, a cost from 04 to 31 and 53 more "
             "characters, 60 in all (make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')");
      }
      c.basic_auth_users[user] = hash;
    });
  }

  static bool LooksLikeBcrypt(std::string_view h) {
    if (h.size() != 60 || h[0] != '$' || h[1] != '2' || h[3] != '$' || h[6] != '$') return false;
    if (h[2] != 'a' && h[2] != 'b' && h[2] != 'y') return false;
    if (!std::isdigit(static_cast<unsigned char>(h[4])) ||
        !std::isdigit(static_cast<unsigned char>(h[5])))
      return false;
    const int cost = (h[4] - '0') * 10 + (h[5] - '0');
    if (cost < 4 || cost > 31) return false;
    return std::all_of(h.begin() + 7, h.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '/';
    });
  }

  void ParseRateLimit(const YAML::Node& node, WebConfig& c) const {
    const std::string parent = "rate_limit";
    ForEachKey(node, parent, [&](const std::string& key, const YAML::Node& v, const YAML::Mark& m) {
      const std::string full = parent + "." + key;
      if (key == "interval") {
        const std::string s = String(v, full);
        auto d = ParseGoDuration(s);
        if (!d || d->count() < 0)
          Fail(v.Mark(), full, "invalid duration '" + s + "' (e.g. 1s, 250ms, 1m30s)");
        c.rate_limit_interval = *d;
      } else if (key == "burst") {
        const std::string s = String(v, full);
        uint64_t n = 0;
        bool ok = !s.empty() && s.size() <= 9;
        for (char ch : s) {
          ok = ok && std::isdigit(static_cast<unsigned char>(ch));
          n = n * 10 + static_cast<uint64_t>(ch - '0');
        }
        if (!ok)
          Fail(v.Mark(), full, "expected a whole number from 0 to 999999999, got '" + s + "'");
        c.rate_limit_burst = n;
      } else {
        Unknown(m, parent, key);
      }
    });
  }

  const std::string name_;
  const std::string directory_;
};

std::string DirectoryOf(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(dir, ec);
  return (ec ? dir : absolute).lexically_normal().string();
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw WebConfigError("web config " + path + ": cannot read: " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw WebConfigError("web config " + path + ": read error");
  return text.str();
}

}  // namespace

WebConfig ParseWebConfig(std::string_view yaml, const std::string& name,
                         const std::string& directory) {
  return Parser(name, directory).Parse(yaml);
}

WebConfig LoadWebConfig(const std::string& path) {
  if (path.empty()) throw WebConfigError("web config: empty file name");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw WebConfigError("web config " + path + ": is a directory, not a file");
  WebConfig config = ParseWebConfig(ReadWholeFile(path), path, DirectoryOf(path));
  if (config.tls.enabled) {
    try {
      BuildTlsContext(config.tls);
    } catch (const std::exception& e) {
      throw WebConfigError("web config " + path + ": tls_server_config: " + e.what());
    }
  }
  return config;
}

std::optional<std::chrono::nanoseconds> ParseGoDuration(std::string_view s) {
  if (s == "0") return std::chrono::nanoseconds{0};
  bool negative = false;
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  static const std::vector<std::pair<std::string_view, double>> kUnits = {
      {"ns", 1},   {"us", 1e3}, {"\xC2\xB5s", 1e3}, {"\xCE\xBCs", 1e3},
      {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9},
  };
  double total = 0;
  while (!s.empty()) {
    std::size_t i = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    const std::string number(s.substr(0, i));
    if (number.empty() || number == "." || std::count(number.begin(), number.end(), '.') > 1)
      return std::nullopt;
    s.remove_prefix(i);
    double scale = 0;
    for (const auto& [unit, factor] : kUnits) {
      // "ms" before "m" and "s": the longest unit that matches, then the next digit must follow.
      if (s.substr(0, unit.size()) == unit &&
          (s.size() == unit.size() || std::isdigit(static_cast<unsigned char>(s[unit.size()])) ||
           s[unit.size()] == '.')) {
        scale = factor;
        s.remove_prefix(unit.size());
        break;
      }
    }
    if (scale == 0) return std::nullopt;
    total += std::stod(number) * scale;
  }
  if (total > 9.2e18) return std::nullopt;
  const auto ns = std::chrono::nanoseconds(static_cast<int64_t>(total));
  return negative ? -ns : ns;
}

FileStamp StampOf(const std::string& path) {
  FileStamp f;
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return f;
  f.exists = true;
  f.dev = st.st_dev;
  f.ino = st.st_ino;
  f.size = st.st_size;
  f.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  f.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec;
  return f;
}

WebConfigSource::WebConfigSource(std::string path) : path_(std::move(path)) {}

WebConfigSource::Snapshot WebConfigSource::Current() {
  const FileStamp now = StampOf(path_);
  std::lock_guard lock(mu_);
  Snapshot s;
  if (!stamp_ || *stamp_ != now) {
    stamp_ = now;
    s.changed = true;
    try {
      config_ = std::make_shared<const WebConfig>(
          ParseWebConfig(ReadWholeFile(path_), path_, DirectoryOf(path_)));
      error_.clear();
    } catch (const std::exception& e) {
      config_.reset();
      error_ = e.what();
    }
  }
  s.config = config_;
  s.error = error_;
  return s;
}

}  // namespace shmetrics::gateway
