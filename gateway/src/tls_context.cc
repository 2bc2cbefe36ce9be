// Maps the toolkit's Go crypto/tls settings onto OpenSSL. Client certificate modes: Go's
// "request"/"require any" accept any certificate, so the verify callback overrides OpenSSL's
// verdict there; the "verify" modes keep it. Allowed SANs are checked on the leaf in the same
// callback, once the chain is otherwise acceptable.
#include "tls_context.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace shmetrics::gateway {
namespace {

// What the verify callback needs, attached to the SSL_CTX.
struct ClientPolicy {
  bool verify_chain = false;
  std::vector<std::string> allowed_sans;
};

void FreePolicy(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<ClientPolicy*>(ptr);
}

int PolicyIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, FreePolicy);
  return index;
}

std::string OpensslReason() {
  std::string reason;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    reason += (reason.empty() ? "" : "; ") + std::string(buf);
  }
  return reason.empty() ? "unknown OpenSSL error" : reason;
}

[[noreturn]] void Fail(const std::string& what) {
  throw std::runtime_error(what + ": " + OpensslReason());
}

std::string ReadFile(const std::string& key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error(key + ": cannot read " + path + ": " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The PEM text of a setting: the file when one is named, else the inline text.
std::string PemOf(const std::string& file_key, const std::string& file, const std::string& text) {
  return file.empty() ? text : ReadFile(file_key, file);
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

std::vector<X509Ptr> ReadCertificates(const std::string& key, const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> certs;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(x);
  ERR_clear_error();  // the end of the text reads as an error
  if (certs.empty()) throw std::runtime_error(key + ": no PEM certificate found");
  return certs;
}

bool SanAllowed(X509* leaf, const std::vector<std::string>& allowed) {
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return false;
  bool found = false;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && !found; ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    std::string value;
    if (n->type == GEN_DNS || n->type == GEN_EMAIL || n->type == GEN_URI) {
      const ASN1_IA5STRING* s = n->d.ia5;
      value.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), ASN1_STRING_length(s));
    } else if (n->type == GEN_IPADD && n->d.iPAddress != nullptr) {
      // As text, the way Go's net.IP.String() writes it ("127.0.0.1", "::1").
      const ASN1_OCTET_STRING* ip = n->d.iPAddress;
      const int len = ASN1_STRING_length(ip);
      char buf[INET6_ADDRSTRLEN] = {};
      if ((len == 4 || len == 16) &&
          ::inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), buf, sizeof buf)) {
        value = buf;
      }
    }
    for (const std::string& a : allowed) found = found || a == value;
  }
  GENERAL_NAMES_free(names);
  return found;
}

int VerifyClient(int preverify_ok, X509_STORE_CTX* store) {
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const auto* policy =
      static_cast<const ClientPolicy*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), PolicyIndex()));
  if (policy == nullptr) return preverify_ok;
  if (!policy->verify_chain) {
    preverify_ok = 1;
    X509_STORE_CTX_set_error(store, X509_V_OK);
  }
  if (preverify_ok && X509_STORE_CTX_get_error_depth(store) == 0 && !policy->allowed_sans.empty() &&
      !SanAllowed(X509_STORE_CTX_get_current_cert(store), policy->allowed_sans)) {
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  return preverify_ok;
}

int SelectHttp11(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                 unsigned inlen, void*) {
  static const unsigned char kOurs[] = "\x08http/1.1";
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kOurs, sizeof kOurs - 1, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // the client offers only h2 (or nothing we know): no ALPN
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

int ProtocolOf(TlsVersion v) {
  switch (v) {
    case TlsVersion::kTls10:
      return TLS1_VERSION;
    case TlsVersion::kTls11:
      return TLS1_1_VERSION;
    case TlsVersion::kTls12:
      return TLS1_2_VERSION;
    case TlsVersion::kTls13:
      return TLS1_3_VERSION;
  }
  return TLS1_2_VERSION;
}

const char* GroupOf(Curve c) {
  switch (c) {
    case Curve::kP256:
      return "P-256";
    case Curve::kP384:
      return "P-384";
    case Curve::kP521:
      return "P-521";
    case Curve::kX25519:
      return "X25519";
  }
  return "P-256";
}

// IANA names -> an OpenSSL cipher list, in the configured order; TLS 1.3 names are skipped.
std::string CipherList(SSL_CTX* ctx, const std::vector<std::string>& iana) {
  if (SSL_CTX_set_cipher_list(ctx, "ALL:COMPLEMENTOFALL") != 1) Fail("cipher_suites");
  STACK_OF(SSL_CIPHER)* all = SSL_CTX_get_ciphers(ctx);
  std::string list;
  for (const std::string& name : iana) {
    for (int i = 0; i < sk_SSL_CIPHER_num(all); ++i) {
      const SSL_CIPHER* c = sk_SSL_CIPHER_value(all, i);
      // TLS 1.3 names have no "_WITH_" and no OpenSSL 1.2-style name to list.
      if (name.find("_WITH_") != std::string::npos && name == SSL_CIPHER_standard_name(c)) {
        if (!list.empty()) list += ':';
        list += SSL_CIPHER_get_name(c);
        break;
      }
    }
  }
  return list;
}

}  // namespace

SslCtxPtr BuildTlsContext(const TlsServerConfig& config) {
  ERR_clear_error();
  SslCtxPtr owner(SSL_CTX_new(TLS_server_method()));
  SSL_CTX* ctx = owner.get();
  if (ctx == nullptr) Fail("SSL_CTX_new");

  uint64_t options = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
  if (config.prefer_server_cipher_suites) options |= SSL_OP_CIPHER_SERVER_PREFERENCE;
  SSL_CTX_set_options(ctx, options);
  if (SSL_CTX_set_min_proto_version(ctx, ProtocolOf(config.min_version)) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, ProtocolOf(config.max_version)) != 1) {
    Fail("min_version/max_version");
  }
  // OpenSSL 3 refuses TLS 1.0 and 1.1 above security level 0; a config that asks for them means it.
  if (config.min_version < TlsVersion::kTls12) SSL_CTX_set_security_level(ctx, 0);

  const std::vector<X509Ptr> chain =
      ReadCertificates(config.cert_file.empty() ? "cert" : "cert_file " + config.cert_file,
                       PemOf("cert_file", config.cert_file, config.cert));
  if (SSL_CTX_use_certificate(ctx, chain[0].get()) != 1) Fail("cert_file: cannot use certificate");
  for (std::size_t i = 1; i < chain.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, chain[i].get()) != 1) Fail("cert_file: chain certificate");
  }
  const std::string key_pem = PemOf("key_file", config.key_file, config.key);
  {
    std::unique_ptr<BIO, BioFree> bio(
        BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
    const std::string what = config.key_file.empty() ? "key" : "key_file " + config.key_file;
    if (key == nullptr) Fail(what + ": no PEM private key");
    const int used = SSL_CTX_use_PrivateKey(ctx, key);
    EVP_PKEY_free(key);
    if (used != 1) Fail(what + ": does not match the certificate, or cannot be used");
    if (SSL_CTX_check_private_key(ctx) != 1) Fail(what + ": does not match the certificate");
  }

  auto policy = std::make_unique<ClientPolicy>();
  policy->allowed_sans = config.client_allowed_sans;
  int mode = SSL_VERIFY_NONE;
  switch (config.client_auth) {
    case ClientAuth::kNoClientCert:
      break;
    case ClientAuth::kRequestClientCert:
      mode = SSL_VERIFY_PEER;
      break;
    case ClientAuth::kRequireAnyClientCert:
      mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
      break;
    case ClientAuth::kVerifyClientCertIfGiven:
      mode = SSL_VERIFY_PEER;
      policy->verify_chain = true;
      break;
    case ClientAuth::kRequireAndVerifyClientCert:
      mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
      policy->verify_chain = true;
      break;
  }
  if (!config.client_ca_file.empty() || !config.client_ca.empty()) {
    const std::string what =
        config.client_ca_file.empty() ? "client_ca" : "client_ca_file " + config.client_ca_file;
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    for (const X509Ptr& ca :
         ReadCertificates(what, PemOf("client_ca_file", config.client_ca_file, config.client_ca))) {
      if (X509_STORE_add_cert(store, ca.get()) != 1) Fail(what);
      if (SSL_CTX_add_client_CA(ctx, ca.get()) != 1) Fail(what);
    }
  } else if (policy->verify_chain) {
    SSL_CTX_set_default_verify_paths(ctx);  // Go verifies against the system roots then
  }
  if (SSL_CTX_set_ex_data(ctx, PolicyIndex(), policy.get()) != 1) Fail("SSL_CTX_set_ex_data");
  policy.release();  // owned by ctx now (FreePolicy)
  SSL_CTX_set_verify(ctx, mode, mode == SSL_VERIFY_NONE ? nullptr : VerifyClient);

  if (!config.cipher_suites.empty()) {
    const std::string list = CipherList(ctx, config.cipher_suites);
    if (!list.empty() && SSL_CTX_set_cipher_list(ctx, list.c_str()) != 1) Fail("cipher_suites");
    if (list.empty()) SSL_CTX_set_cipher_list(ctx, OSSL_default_cipher_list());
  }
  if (!config.curve_preferences.empty()) {
    std::string groups;
    for (Curve c : config.curve_preferences)
      groups.append(groups.empty() ? "" : ":").append(GroupOf(c));
    if (SSL_CTX_set1_groups_list(ctx, groups.c_str()) != 1) Fail("curve_preferences");
  }
  SSL_CTX_set_alpn_select_cb(ctx, SelectHttp11, nullptr);
  return owner;
}

TlsContextSource::Result TlsContextSource::Current() {
  const WebConfigSource::Snapshot snap = config_.Current();
  Stamps now;
  now.config = snap.config;
  if (snap.config) {
    const TlsServerConfig& tls = snap.config->tls;
    now.cert = tls.cert_file.empty() ? FileStamp{} : StampOf(tls.cert_file);
    now.key = tls.key_file.empty() ? FileStamp{} : StampOf(tls.key_file);
    now.ca = tls.client_ca_file.empty() ? FileStamp{} : StampOf(tls.client_ca_file);
  }
  std::lock_guard lock(mu_);
  if (built_for_ && *built_for_ == now) return {context_, error_, false};
  built_for_ = now;
  context_.reset();
  error_.clear();
  if (!snap.config) {
    error_ = snap.error;
  } else if (!snap.config->tls.enabled) {
    error_ = "web config " + config_.path() +
             ": tls_server_config is gone, but the server started with TLS (restart it to serve "
             "plain HTTP)";
  } else {
    try {
      context_ =
          std::make_shared<boost::asio::ssl::context>(BuildTlsContext(snap.config->tls).release());
    } catch (const std::exception& e) {
      error_ = "web config " + config_.path() + ": tls_server_config: " + e.what();
    }
  }
  return {context_, error_, true};
}

}  // namespace shmetrics::gateway
