// The web config parser and loader against a table of good and bad configs, in the spirit of
// exporter-toolkit's testdata (written here in our own words): every key of the schema, every
// error a config can have, and where an error points (file, line, key). The loader's cases use a
// certificate and key made by the openssl command in a temporary directory.
#include "web_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "basic_auth.h"
#include "tls_context.h"

namespace shmetrics::gateway {
namespace {

namespace fs = std::filesystem;

// alice:alice123 at cost 10, bob:bob at cost 4 (made with libcrypt's crypt_gensalt_rn).
constexpr char kAlice[] = "$2y$10$bJvZ/eNOiEx0rY5S3GRnAuaCbMZGvoaE0MIsACl9Y6f9Jv4hihAjG";
constexpr char kBob[] = "$2y$04$s01z20ckOz0Gt7YkhmQms.Uj7oK00xlhSTU.sN9F5MhI9e53L0YBi";

struct Case {
  const char* name;
  std::string yaml;
  std::string error;  // a substring of what(); empty: the config is good
};

std::string Tls(const std::string& extra) {
  return "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n" + extra;
}

std::vector<Case> ParseCases() {
  return {
      {"empty file: plain HTTP", "", ""},
      {"only a comment", "# nothing\n", ""},
      {"all sections empty", "tls_server_config:\nhttp_server_config:\nbasic_auth_users:\n", ""},
      {"junk instead of a mapping", "just some words\n", "expected a mapping of keys"},
      {"broken YAML", "tls_server_config: [\n", "invalid YAML"},
      {"unknown top-level key", "tls_server_config:\n  cert_file: a\n  key_file: b\nfoo: 1\n",
       ":4: foo: unknown key"},
      {"unknown TLS key", Tls("  cert_flie: x\n"),
       ":4: tls_server_config.cert_flie: unknown key in tls_server_config"},
      {"unknown http key", "http_server_config:\n  http3: true\n",
       "http_server_config.http3: unknown key"},
      {"unknown rate_limit key", "rate_limit:\n  every: 1s\n", "rate_limit.every: unknown key"},
      {"key given twice", Tls("  key_file: other.key\n"),
       "tls_server_config.key_file: key given twice"},
      {"cert without key", "tls_server_config:\n  cert_file: server.crt\n",
       "missing one of key or key_file"},
      {"key without cert", "tls_server_config:\n  key_file: server.key\n",
       "missing one of cert or cert_file"},
      {"empty cert path", "tls_server_config:\n  cert_file: \"\"\n  key_file: server.key\n",
       "missing one of cert or cert_file"},
      {"auth type alone turns TLS on", "tls_server_config:\n  client_auth_type: NoClientCert\n",
       "missing one of cert or cert_file"},
      {"inline cert and key", "tls_server_config:\n  cert: PEM\n  key: PEM\n", ""},
      {"every client auth type", Tls("  client_auth_type: RequestClientCert\n"), ""},
      {"require any", Tls("  client_auth_type: RequireAnyClientCert\n"), ""},
      {"require (old name)", Tls("  client_auth_type: RequireClientCert\n"), ""},
      {"verify if given", Tls("  client_auth_type: VerifyClientCertIfGiven\n"), ""},
      {"require and verify with CA",
       Tls("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"), ""},
      {"bad client auth type", Tls("  client_auth_type: RequireSomething\n"),
       "invalid ClientAuth 'RequireSomething'"},
      {"CA without policy", Tls("  client_ca_file: ca.crt\n"),
       "client CA's have been configured without a Client Auth Policy"},
      {"inline CA without policy", Tls("  client_ca: PEM\n"), "without a Client Auth Policy"},
      {"allowed SANs",
       Tls("  client_auth_type: RequireAndVerifyClientCert\n"
           "  client_allowed_sans: [client.example, 127.0.0.1]\n"),
       ""},
      {"SANs not a list", Tls("  client_allowed_sans: {a: b}\n"), "expected a list of strings"},
      {"versions", Tls("  min_version: TLS13\n  max_version: TLS13\n"), ""},
      {"old versions", Tls("  min_version: TLS10\n  max_version: TLS11\n"), ""},
      {"bad version", Tls("  min_version: TLS14\n"), "unknown TLS version 'TLS14'"},
      {"lower-case version", Tls("  max_version: tls12\n"), "unknown TLS version 'tls12'"},
      {"min above max", Tls("  min_version: TLS13\n  max_version: TLS12\n"),
       "min_version is above max_version"},
      {"some ciphers",
       Tls("  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
           "  - TLS_AES_128_GCM_SHA256\n"),
       ""},
      {"invented cipher", Tls("  cipher_suites: [TLS_RSA_WITH_ROT13_SHA1]\n"),
       "unknown cipher 'TLS_RSA_WITH_ROT13_SHA1'"},
      {"OpenSSL name is not an IANA name", Tls("  cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256]\n"),
       "unknown cipher"},
      {"prefer server ciphers off", Tls("  prefer_server_cipher_suites: false\n"), ""},
      {"prefer server ciphers not a bool", Tls("  prefer_server_cipher_suites: maybe\n"),
       "expected true or false"},
      {"all curves", Tls("  curve_preferences: [CurveP256, CurveP384, CurveP521, X25519]\n"), ""},
      {"invented curve", Tls("  curve_preferences: [CurveP128]\n"), "unknown curve 'CurveP128'"},
      {"http2 off", "http_server_config:\n  http2: false\n", ""},
      {"allowed headers",
       "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
       "    X-Content-Type-Options: nosniff\n    Strict-Transport-Security: max-age=31536000\n"
       "    X-XSS-Protection: '1; mode=block'\n    Content-Security-Policy: \"default-src "
       "'self'\"\n",
       ""},
      {"header that cannot be set", "http_server_config:\n  headers:\n    Server: nginx\n",
       "HTTP header \"Server\" can not be configured"},
      {"header name is case-sensitive",
       "http_server_config:\n  headers:\n    x-frame-options: deny\n", "can not be configured"},
      {"bad frame options value", "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
       "invalid value for X-Frame-Options"},
      {"bad content type options value",
       "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
       "invalid value for X-Content-Type-Options"},
      {"header value with a line break",
       "http_server_config:\n  headers:\n    Content-Security-Policy: \"a\\r\\nSet-Cookie: x\"\n",
       "holds CR, LF or NUL"},
      {"users", std::string("basic_auth_users:\n  alice: ") + kAlice + "\n  bob: " + kBob + "\n",
       ""},
      {"password in clear", "basic_auth_users:\n  john: doe\n",
       ":2: basic_auth_users.john: not a bcrypt hash"},
      {"sha512 crypt is not bcrypt",
       "basic_auth_users:\n  john: "
       "$6$salt$"
       "IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6WouIL9AjRbLCelDCy.g.\n",
       "not a bcrypt hash"},
      {"bcrypt cost out of range",
       "basic_auth_users:\n  john: $2y$03$s01z20ckOz0Gt7YkhmQms.Uj7oK00xlhSTU.sN9F5MhI9e53L0YBi\n",
       "not a bcrypt hash"},
      {"truncated bcrypt", "basic_auth_users:\n  john: $2y$10$bJvZ/eNOiEx0rY5S3GRnAu\n",
       "not a bcrypt hash"},
      {"users not a mapping", "basic_auth_users: [alice]\n", "expected a mapping of keys"},
      {"rate limit", "rate_limit:\n  interval: 1m30s\n  burst: 10\n", ""},
      {"rate limit bad duration", "rate_limit:\n  interval: 1 second\n", "invalid duration"},
      {"rate limit negative", "rate_limit:\n  interval: -1s\n", "invalid duration"},
      {"rate limit bad burst", "rate_limit:\n  burst: -3\n", "expected a whole number"},
  };
}

TEST(WebConfigTest, TableOfGoodAndBadConfigs) {
  for (const Case& c : ParseCases()) {
    SCOPED_TRACE(c.name);
    if (c.error.empty()) {
      EXPECT_NO_THROW(ParseWebConfig(c.yaml, "web.yml", "/etc/x")) << c.yaml;
      continue;
    }
    try {
      ParseWebConfig(c.yaml, "web.yml", "/etc/x");
      ADD_FAILURE() << "accepted:\n" << c.yaml;
    } catch (const WebConfigError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(c.error), std::string::npos) << what;
      EXPECT_EQ(what.rfind("web config web.yml", 0), 0u) << what;
    }
  }
}

TEST(WebConfigTest, ValuesAndDefaults) {
  const WebConfig none = ParseWebConfig("", "w.yml", "/d");
  EXPECT_FALSE(none.tls.enabled);
  EXPECT_TRUE(none.basic_auth_users.empty());
  EXPECT_TRUE(none.http2);
  EXPECT_EQ(none.tls.min_version, TlsVersion::kTls12);
  EXPECT_EQ(none.tls.max_version, TlsVersion::kTls13);
  EXPECT_TRUE(none.tls.prefer_server_cipher_suites);

  const WebConfig c =
      ParseWebConfig(Tls("  client_auth_type: RequireClientCert\n  client_ca_file: /abs/ca.pem\n"
                         "  curve_preferences: [X25519, CurveP384]\n") +
                         "rate_limit:\n  interval: 250ms\n  burst: 3\n",
                     "w.yml", "/etc/shmetrics");
  EXPECT_TRUE(c.tls.enabled);
  EXPECT_EQ(c.tls.cert_file, "/etc/shmetrics/server.crt");  // relative to the file
  EXPECT_EQ(c.tls.key_file, "/etc/shmetrics/server.key");
  EXPECT_EQ(c.tls.client_ca_file, "/abs/ca.pem");  // absolute stays
  EXPECT_EQ(c.tls.client_auth, ClientAuth::kRequireAnyClientCert);
  EXPECT_EQ(c.tls.curve_preferences, (std::vector<Curve>{Curve::kX25519, Curve::kP384}));
  EXPECT_EQ(c.rate_limit_interval, std::chrono::milliseconds(250));
  EXPECT_EQ(c.rate_limit_burst, 3u);
}

TEST(WebConfigTest, GoDurations) {
  using std::chrono::nanoseconds;
  EXPECT_EQ(ParseGoDuration("0"), nanoseconds(0));
  EXPECT_EQ(ParseGoDuration("1s"), nanoseconds(1000000000));
  EXPECT_EQ(ParseGoDuration("1m30s"), nanoseconds(90000000000));
  EXPECT_EQ(ParseGoDuration("1.5h"), nanoseconds(5400000000000));
  EXPECT_EQ(ParseGoDuration("300ms"), nanoseconds(300000000));
  EXPECT_EQ(ParseGoDuration("10us"), nanoseconds(10000));
  EXPECT_EQ(ParseGoDuration("-2s"), nanoseconds(-2000000000));
  for (const char* bad : {"", "1", "s", "1d", "1 s", "1..2s", "1sm"}) {
    EXPECT_FALSE(ParseGoDuration(bad)) << bad;
  }
}

// A temporary directory with a self-signed certificate and its key, and a second key.
class WebConfigFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/web_config_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string cmd =
        "cd " + dir_ +
        " && timeout 60 openssl req -x509 -newkey rsa:2048 -nodes -keyout server.key "
        "-out server.crt -days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 "
        ">/dev/null 2>&1 && timeout 60 openssl genpkey -algorithm RSA -out other.key "
        ">/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string Expect(const std::string& path, const std::string& fragment) {
    try {
      LoadWebConfig(path);
      ADD_FAILURE() << path << " accepted";
      return "";
    } catch (const WebConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
      return e.what();
    }
  }
  std::string dir_;
};

TEST_F(WebConfigFilesTest, RelativePathsResolveAgainstTheFilesDirectory) {
  const std::string path = Write("web.yml", Tls(""));
  const std::string cwd = fs::current_path();
  fs::current_path("/");  // the working directory must not matter
  WebConfig c;
  EXPECT_NO_THROW(c = LoadWebConfig(path));
  fs::current_path(cwd);
  EXPECT_EQ(c.tls.cert_file, dir_ + "/server.crt");
  EXPECT_TRUE(c.tls.enabled);
}

TEST_F(WebConfigFilesTest, MissingOrWrongFilesFailAtLoad) {
  Expect(dir_ + "/absent.yml", "absent.yml: cannot read: No such file or directory");
  Expect(dir_, "is a directory");
  Expect(Write("a.yml", "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n"),
         "cannot read " + dir_ + "/nope.crt");
  Expect(Write("b.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: nope.key\n"),
         "cannot read " + dir_ + "/nope.key");
  Expect(Write("c.yml", "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n"),
         "no PEM certificate found");
  Expect(Write("d.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n"),
         "does not match the certificate");
  Expect(Write("e.yml", Tls("  client_auth_type: RequireAndVerifyClientCert\n"
                            "  client_ca_file: server.key\n")),
         "client_ca_file " + dir_ + "/server.key: no PEM certificate found");
  Expect(Write("f.yml", "tls_server_config:\n  cert: not a pem\n  key: not a pem\n"),
         "cert: no PEM certificate found");
}

TEST_F(WebConfigFilesTest, GoodFilesBuildAContext) {
  std::ifstream crt(dir_ + "/server.crt"), key(dir_ + "/server.key");
  std::stringstream c, k;
  c << crt.rdbuf();
  k << key.rdbuf();
  auto indent = [](const std::string& pem) {
    std::string out;
    for (char ch : pem) out += ch == '\n' ? std::string("\n    ") : std::string(1, ch);
    return out;
  };
  EXPECT_NO_THROW(
      LoadWebConfig(Write("inline.yml", "tls_server_config:\n  cert: |\n    " + indent(c.str()) +
                                            "\n  key: |\n    " + indent(k.str()) + "\n")));
  EXPECT_NO_THROW(LoadWebConfig(
      Write("all.yml",
            Tls("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: server.crt\n"
                "  min_version: TLS10\n  max_version: TLS13\n"
                "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256]\n"
                "  curve_preferences: [CurveP521, X25519]\n"))));
}

TEST_F(WebConfigFilesTest, SourceRereadsAChangedFile) {
  const std::string path =
      Write("w.yml", std::string("basic_auth_users:\n  alice: ") + kAlice + "\n");
  WebConfigSource source(path);
  WebConfigSource::Snapshot s = source.Current();
  ASSERT_TRUE(s.config) << s.error;
  EXPECT_TRUE(s.changed);
  EXPECT_EQ(s.config->basic_auth_users.count("alice"), 1u);
  EXPECT_FALSE(source.Current().changed);  // unchanged file: not parsed again

  Write("w.yml", "basic_auth_users:\n  alice: plain\n");
  s = source.Current();
  EXPECT_TRUE(s.changed);
  EXPECT_FALSE(s.config);
  EXPECT_NE(s.error.find("not a bcrypt hash"), std::string::npos) << s.error;

  Write("w.yml", std::string("basic_auth_users:\n  bob: ") + kBob + "\n");
  s = source.Current();
  ASSERT_TRUE(s.config) << s.error;
  EXPECT_EQ(s.config->basic_auth_users.count("bob"), 1u);
  fs::remove(path);
  EXPECT_FALSE(source.Current().config);
}

TEST(BasicAuthTest, VerifiesWithLibcryptAndCachesVerdicts) {
  const std::string alice = kAlice;
  BasicAuth auth;
  EXPECT_TRUE(BasicAuth::PasswordMatches(alice, "alice123"));
  EXPECT_FALSE(BasicAuth::PasswordMatches(alice, "alice124"));
  EXPECT_FALSE(BasicAuth::PasswordMatches("*0", ""));
  EXPECT_FALSE(BasicAuth::PasswordMatches("", ""));

  BasicAuth::Check good{"alice", "alice123", &alice};
  EXPECT_FALSE(auth.Cached(good));
  EXPECT_TRUE(auth.VerifyNow(good));
  EXPECT_EQ(auth.Cached(good), true);
  BasicAuth::Check unknown{"mallory", "alice123", nullptr};
  EXPECT_FALSE(auth.VerifyNow(unknown));
  EXPECT_EQ(auth.Cached(unknown), false);
  EXPECT_EQ(auth.stats().bcrypt_calls, 2u);
}

// CVE-2022-46146: with a key made by concatenation, user "ab" + password "c" and user "a" +
// password "bc" could share a cache entry. Here they must not.
TEST(BasicAuthTest, CacheKeysCannotCollideAcrossFieldBoundaries) {
  const std::string hash = kBob;  // "bob"
  BasicAuth auth;
  BasicAuth::Check real{"bo", "b", &hash};
  EXPECT_FALSE(auth.VerifyNow(real));  // wrong password for the configured hash
  BasicAuth::Check shifted{"b", "ob", &hash};
  EXPECT_FALSE(auth.Cached(shifted));
  BasicAuth::Check good{"x", "bob", &hash};
  EXPECT_TRUE(auth.VerifyNow(good));
  BasicAuth::Check shifted_good{"xb", "ob", &hash};
  EXPECT_FALSE(auth.Cached(shifted_good));
  EXPECT_FALSE(auth.VerifyNow(shifted_good));
}

TEST(BasicAuthTest, ParsesTheAuthorizationHeader) {
  EXPECT_EQ(BasicAuth::ParseHeader("Basic YWxpY2U6YWxpY2UxMjM="),
            std::make_pair(std::string("alice"), std::string("alice123")));
  EXPECT_EQ(BasicAuth::ParseHeader("basic YTpiOmM="),  // a:b:c: the password may hold ':'
            std::make_pair(std::string("a"), std::string("b:c")));
  EXPECT_FALSE(BasicAuth::ParseHeader("Bearer abc"));
  EXPECT_FALSE(BasicAuth::ParseHeader("Basic !!!!"));
  EXPECT_FALSE(BasicAuth::ParseHeader("Basic YWxpY2U="));  // no colon
}

TEST(BasicAuthTest, RefusesChecksBeyondTheQueueAndRunsAtMostTheWorkers) {
  const std::string hash = kAlice;  // cost 10: each check takes tens of milliseconds
  BasicAuth auth({.workers = 1, .max_queued = 3, .cache_size = 100});
  std::atomic<int> done{0};
  int accepted = 0;
  for (int i = 0; i < 10; ++i) {
    BasicAuth::Check c{"alice", "wrong" + std::to_string(i), &hash};
    if (auth.Submit(c, [&](bool ok) {
          EXPECT_FALSE(ok);
          done.fetch_add(1);
        }))
      ++accepted;
  }
  EXPECT_GE(accepted, 3);
  EXPECT_LE(accepted, 4);  // 3 waiting, plus the one a worker may already have taken
  for (int i = 0; i < 500 && done.load() < accepted; ++i) ::usleep(10000);
  EXPECT_EQ(done.load(), accepted);
  EXPECT_EQ(auth.stats().peak_concurrency, 1u);
  EXPECT_EQ(auth.stats().refused, static_cast<uint64_t>(10 - accepted));
}

}  // namespace
}  // namespace shmetrics::gateway
