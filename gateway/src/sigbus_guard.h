// SigbusGuard: a truncated region mapping reads as zeros instead of killing the gateway.
//
// Anyone who may write the region's object can shrink it (ftruncate) under our mapping; the next
// access to a page past the new end raises SIGBUS. The gateway checks the object's size before
// every reap and scrape (shm::Region::IntegrityProblem), so this only has to cover the race
// between that check and the accesses after it: the handler maps anonymous zero pages over the
// rest of the registered mapping (MAP_FIXED, from the faulting page on: every later page is past
// the end too), marks the registration faulted and returns, so the access re-executes and reads
// zeros. The caller then discards whatever it read in that pass (gateway.cc).
//
// Any other SIGBUS (outside every registered mapping, or sent with kill) gets the previous
// disposition back and is re-raised: a real bug still dumps core.
//
// Thread-safety: GuardedMapping may be created and destroyed from any thread. The handler is
// async-signal-safe (atomics, mmap, sigaction). A registration must be destroyed before its
// mapping is unmapped, and not while another thread is touching that mapping (the gateway does
// both under its mutex). At most kMaxGuardedMappings registrations at once.
#pragma once

#include <cstddef>

namespace shmetrics::gateway {

// One per gateway in a process; tests and the benchmark keep dozens alive at once.
inline constexpr int kMaxGuardedMappings = 256;

class GuardedMapping {
 public:
  GuardedMapping() = default;  // guards nothing
  // Installs the SIGBUS handler on first use. Throws std::runtime_error when all
  // kMaxGuardedMappings registrations are in use or sigaction fails.
  GuardedMapping(const void* base, size_t bytes);
  ~GuardedMapping();
  GuardedMapping(GuardedMapping&& other) noexcept;
  GuardedMapping& operator=(GuardedMapping&& other) noexcept;
  GuardedMapping(const GuardedMapping&) = delete;
  GuardedMapping& operator=(const GuardedMapping&) = delete;

  // Whether a fault inside the mapping was turned into zero pages since registration: its
  // contents are no longer the object's, and the object has shrunk.
  bool faulted() const;

 private:
  void Reset();
  int slot_ = -1;
};

}  // namespace shmetrics::gateway
