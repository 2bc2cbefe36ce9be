// BasicAuth: HTTP basic credentials checked against a web config's bcrypt hashes with the
// system's libcrypt (no bcrypt code of our own). bcrypt is slow on purpose (~60 ms at cost 10),
// so it never runs on an io thread: checks go to a few worker threads behind a bounded queue, and
// verdicts are cached, so a scraper that sends the same good credentials pays for bcrypt once.
// A flood of wrong passwords therefore occupies at most `workers` cores and `max_queued` slots;
// beyond that a check is refused at once (the server answers 429) instead of waiting.
//
// The cache key is a SHA-256 of the hex-encoded user, hash and password joined by ':', so no two
// different triples can share a key (CVE-2022-46146 was a key built by plain concatenation) and
// no password is kept in memory in clear. An unknown user is checked against a fixed hash, so the
// time taken does not tell which users exist.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace shmetrics::gateway {

struct BasicAuthOptions {
  unsigned workers = 1;         // bcrypt checks running at once, at most
  std::size_t max_queued = 16;  // checks waiting for a worker; more are refused
  std::size_t cache_size = 100;
};

struct BasicAuthStats {
  uint64_t bcrypt_calls = 0;      // crypt_r runs
  uint64_t peak_concurrency = 0;  // most crypt_r runs seen at once (never above workers)
  uint64_t cache_hits = 0;
  uint64_t refused = 0;  // queue full: answered 429 without checking
};

class BasicAuth {
 public:
  explicit BasicAuth(BasicAuthOptions options = {});
  ~BasicAuth();  // Shutdown()
  BasicAuth(const BasicAuth&) = delete;
  BasicAuth& operator=(const BasicAuth&) = delete;

  // "Basic dXNlcjpwYXNz" -> {"user", "pass"}; nullopt if not basic or not decodable.
  static std::optional<std::pair<std::string, std::string>> ParseHeader(std::string_view value);

  // One check: the user's hash from the config, or nullptr for an unknown user.
  struct Check {
    std::string user;
    std::string password;
    const std::string* hash = nullptr;
  };
  // The cached verdict, or nullopt when bcrypt must run.
  std::optional<bool> Cached(const Check& check);
  // Runs bcrypt on a worker and calls done(allowed) there. False (done not called, nor kept)
  // when max_queued checks already wait.
  bool Submit(const Check& check, std::function<void(bool)> done);
  // Verifies on the calling thread (tests, and the workers).
  bool VerifyNow(const Check& check);

  // Drops the waiting checks (their callbacks are destroyed uncalled) and joins the workers.
  void Shutdown();
  BasicAuthStats stats() const;

  // libcrypt's verdict on one password against one bcrypt hash.
  static bool PasswordMatches(const std::string& hash, const std::string& password);

 private:
  struct Job {
    Check check;
    std::string hash;  // owned copy: the config may be reloaded meanwhile
    bool known = false;
    std::function<void(bool)> done;
  };
  static std::string KeyOf(const std::string& user, const std::string& hash,
                           const std::string& password);
  void Remember(const std::string& key, bool allowed);
  void WorkerLoop();

  const BasicAuthOptions options_;
  std::mutex cache_mu_;
  std::map<std::string, bool> cache_;
  std::minstd_rand rng_{std::random_device{}()};

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;

  std::atomic<uint64_t> bcrypt_calls_{0};
  std::atomic<uint64_t> running_{0};
  std::atomic<uint64_t> peak_{0};
  std::atomic<uint64_t> cache_hits_{0};
  std::atomic<uint64_t> refused_{0};
};

}  // namespace shmetrics::gateway
