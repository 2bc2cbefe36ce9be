#include "sigbus_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace shmetrics::gateway {
namespace {

// One registered mapping. `begin` is published last (release) and cleared first, so the handler
// never sees a half-written entry; 0 marks a free entry.
struct Entry {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<bool> faulted{false};
};
static_assert(std::atomic<uintptr_t>::is_always_lock_free && std::atomic<bool>::is_always_lock_free,
              "the handler may only touch lock-free atomics");

Entry g_entries[kMaxGuardedMappings];
std::mutex g_mu;  // registration and installation, never taken by the handler
bool g_installed = false;
struct sigaction g_previous {};
uintptr_t g_page_bytes = 4096;  // sysconf is not async-signal-safe: read once at install

void Handler(int sig, siginfo_t* info, void*) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  // Only a fault (si_code > 0) says where it happened; kill() and friends never match.
  if (info->si_code > 0) {
    for (Entry& e : g_entries) {
      const uintptr_t begin = e.begin.load(std::memory_order_acquire);
      const uintptr_t end = e.end.load(std::memory_order_relaxed);
      if (begin == 0 || addr < begin || addr >= end) continue;
      const uintptr_t page = addr & ~(g_page_bytes - 1);
      void* p = ::mmap(reinterpret_cast<void*>(page), end - page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      if (p == MAP_FAILED) break;  // cannot repair: die as if unguarded
      e.faulted.store(true, std::memory_order_release);
      return;  // the faulting access re-executes on the zero page
    }
  }
  // Not ours: the previous disposition, then the same signal again. A fault re-raises by
  // re-executing the access; a sent signal is raised here (blocked until we return).
  // (The kernel forces the default action on a fault that is ignored.)
  ::sigaction(SIGBUS, &g_previous, nullptr);
  if (info->si_code <= 0) ::raise(sig);
}

void InstallLocked() {
  if (g_installed) return;
  const long page = ::sysconf(_SC_PAGESIZE);
  if (page > 0) g_page_bytes = static_cast<uintptr_t>(page);
  struct sigaction sa {};
  sa.sa_sigaction = Handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGBUS, &sa, &g_previous) != 0) {
    throw std::runtime_error(std::string("cannot install the SIGBUS handler: ") +
                             std::strerror(errno));
  }
  g_installed = true;
}

}  // namespace

GuardedMapping::GuardedMapping(const void* base, size_t bytes) {
  std::lock_guard lock(g_mu);
  InstallLocked();
  for (int i = 0; i < kMaxGuardedMappings; ++i) {
    Entry& e = g_entries[i];
    if (e.begin.load(std::memory_order_relaxed) != 0) continue;
    const auto begin = reinterpret_cast<uintptr_t>(base);
    e.end.store(begin + bytes, std::memory_order_relaxed);
    e.faulted.store(false, std::memory_order_relaxed);
    e.begin.store(begin, std::memory_order_release);
    slot_ = i;
    return;
  }
  throw std::runtime_error("SIGBUS guard: all " + std::to_string(kMaxGuardedMappings) +
                           " registrations are in use");
}

GuardedMapping::~GuardedMapping() { Reset(); }

GuardedMapping::GuardedMapping(GuardedMapping&& other) noexcept
    : slot_(std::exchange(other.slot_, -1)) {}

GuardedMapping& GuardedMapping::operator=(GuardedMapping&& other) noexcept {
  if (this != &other) {
    Reset();
    slot_ = std::exchange(other.slot_, -1);
  }
  return *this;
}

bool GuardedMapping::faulted() const {
  return slot_ >= 0 && g_entries[slot_].faulted.load(std::memory_order_acquire);
}

void GuardedMapping::Reset() {
  if (slot_ < 0) return;
  std::lock_guard lock(g_mu);
  g_entries[slot_].begin.store(0, std::memory_order_release);
  slot_ = -1;
}

}  // namespace shmetrics::gateway
