#include "basic_auth.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace shmetrics::gateway {
namespace {

// bcrypt (cost 10) of a password nobody has: what an unknown user is compared against.
const std::string kUnknownUserHash = "$2y$10$x4q55b3N6pD2EC8SZEz94OMZeOGaMk5WnxfqCwLnsJ.M82fgc4DDC";

std::string Hex(std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with padding, as Go's r.BasicAuth() accepts it.
std::optional<std::string> DecodeBase64(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  for (std::size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = in[i + j];
      if (c == '=' && i + 4 == in.size() && j >= 2) {
        v[j] = 0;
        ++pad;
      } else if (pad > 0 || (v[j] = Base64Value(c)) < 0) {
        return std::nullopt;
      }
    }
    const uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out += static_cast<char>(n >> 16);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

}  // namespace

BasicAuth::BasicAuth(BasicAuthOptions options) : options_(options) {
  const unsigned n = std::max(1u, options_.workers);
  for (unsigned i = 0; i < n; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

BasicAuth::~BasicAuth() { Shutdown(); }

void BasicAuth::Shutdown() {
  std::deque<Job> dropped;
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  queue_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  dropped.clear();  // outside the lock: a callback's destructor may do anything
}

std::optional<std::pair<std::string, std::string>> BasicAuth::ParseHeader(std::string_view v) {
  constexpr std::string_view kPrefix = "basic ";
  if (v.size() < kPrefix.size()) return std::nullopt;
  for (std::size_t i = 0; i < kPrefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(v[i])) != kPrefix[i]) return std::nullopt;
  }
  const std::optional<std::string> decoded = DecodeBase64(v.substr(kPrefix.size()));
  if (!decoded) return std::nullopt;
  const std::size_t colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  return std::make_pair(decoded->substr(0, colon), decoded->substr(colon + 1));
}

std::string BasicAuth::KeyOf(const std::string& user, const std::string& hash,
                             const std::string& password) {
  const std::string joined = Hex(user) + ":" + Hex(hash) + ":" + Hex(password);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(joined.data(), joined.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    return joined;  // no SHA-256 (cannot happen with OpenSSL 3): the joined text is unambiguous too
  }
  return std::string(reinterpret_cast<const char*>(digest), len);
}

std::optional<bool> BasicAuth::Cached(const Check& check) {
  const std::string key =
      KeyOf(check.user, check.hash ? *check.hash : kUnknownUserHash, check.password);
  std::lock_guard lock(cache_mu_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return std::nullopt;
  cache_hits_.fetch_add(1, std::memory_order_relaxed);
  return it->second;
}

void BasicAuth::Remember(const std::string& key, bool allowed) {
  std::lock_guard lock(cache_mu_);
  // Full: drop a tenth at random, so that eviction is rare and no entry is favoured.
  if (cache_.size() >= options_.cache_size && !cache_.empty()) {
    const std::size_t drop = std::max<std::size_t>(1, cache_.size() / 10);
    for (std::size_t i = 0; i < drop && !cache_.empty(); ++i) {
      auto it = cache_.begin();
      std::advance(it, std::uniform_int_distribution<std::size_t>(0, cache_.size() - 1)(rng_));
      cache_.erase(it);
    }
  }
  if (options_.cache_size > 0) cache_[key] = allowed;
}

bool BasicAuth::PasswordMatches(const std::string& hash, const std::string& password) {
  // 32 KiB: too big for an io or worker thread's stack to carry casually, and crypt_r keeps no
  // state across calls, so one per call.
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const char* out = ::crypt_r(password.c_str(), hash.c_str(), data.get());
  // libcrypt signals failure with NULL or a string starting with '*'.
  if (out == nullptr || out[0] == '*') return false;
  const std::size_t n = std::strlen(out);
  return n == hash.size() && CRYPTO_memcmp(out, hash.data(), n) == 0;
}

bool BasicAuth::VerifyNow(const Check& check) {
  const bool known = check.hash != nullptr;
  const std::string& hash = known ? *check.hash : kUnknownUserHash;
  const uint64_t now = running_.fetch_add(1, std::memory_order_relaxed) + 1;
  uint64_t peak = peak_.load(std::memory_order_relaxed);
  while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
  bcrypt_calls_.fetch_add(1, std::memory_order_relaxed);
  const bool matches = PasswordMatches(hash, check.password);
  running_.fetch_sub(1, std::memory_order_relaxed);
  const bool allowed = known && matches;
  Remember(KeyOf(check.user, hash, check.password), allowed);
  return allowed;
}

bool BasicAuth::Submit(const Check& check, std::function<void(bool)> done) {
  Job job;
  job.check.user = check.user;
  job.check.password = check.password;
  job.known = check.hash != nullptr;
  if (job.known) job.hash = *check.hash;
  job.done = std::move(done);
  {
    std::lock_guard lock(queue_mu_);
    if (stopping_ || queue_.size() >= options_.max_queued) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    queue_.push_back(std::move(job));
  }
  queue_cv_.notify_one();
  return true;
}

void BasicAuth::WorkerLoop() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(queue_mu_);
      queue_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Check check = job.check;
    check.hash = job.known ? &job.hash : nullptr;
    // Another worker may have checked the same credentials while this job waited.
    const std::optional<bool> cached = Cached(check);
    job.done(cached ? *cached : VerifyNow(check));
  }
}

BasicAuthStats BasicAuth::stats() const {
  BasicAuthStats s;
  s.bcrypt_calls = bcrypt_calls_.load(std::memory_order_relaxed);
  s.peak_concurrency = peak_.load(std::memory_order_relaxed);
  s.cache_hits = cache_hits_.load(std::memory_order_relaxed);
  s.refused = refused_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace shmetrics::gateway
