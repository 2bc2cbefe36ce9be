// What a region is created with and what attaching to one may throw: the part of region.h the
// client's public header needs, without the Region class itself.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace shmetrics::shm {

// Thrown by attach/create: names the region and says what is wrong, with errno text where the
// operating system said no. `reason()` classifies it for callers that count failures (the gateway
// re-attaching a replaced region).
class RegionError : public std::runtime_error {
 public:
  enum class Reason {
    kOther,
    kNotFound,    // no object of that name
    kAccess,      // the operating system refused to open or remove it (EACCES, EPERM)
    kNotRegular,  // a FIFO, directory, device or symbolic link in the region's place
    kUntrusted,   // owner or mode let another user write it (see the attach rule in region.h)
    kNotReady,    // not sized or not initialised (yet): a creator is busy, or died doing it
    kInvalid,     // sized and initialised, but not a region this build can read
  };
  explicit RegionError(const std::string& what, Reason reason = Reason::kOther)
      : std::runtime_error(what), reason_(reason) {}
  Reason reason() const { return reason_; }

 private:
  Reason reason_;
};

// "not_found", "access", "not_regular", "untrusted", "not_ready", "invalid", "other": label values.
const char* ReasonName(RegionError::Reason reason);

struct RegionOptions {
  // The region never grows; it is reserved in full (posix_fallocate) at creation so that a full
  // /dev/shm fails here, loudly, instead of as SIGBUS in a worker later. 32 MiB fits Docker's
  // default 64 MiB /dev/shm.
  uint64_t size_bytes = 32ull << 20;
  uint32_t max_families = 1024;
  uint32_t max_series = 65536;
  uint32_t max_slots = 256;       // concurrent writer threads over all worker processes
  uint32_t max_cells = 1u << 20;  // cell index space (a counter series takes 1, histograms n+2)
  uint32_t string_bytes = 4u << 20;
  // The file mode of a region we create, set with fchmod (exact, whatever the umask). At most
  // 0777 and never world-writable: see ModeProblem.
  mode_t mode = 0600;  // 0660 lets a group (app servers + gateway) share the region
  // The trusted group, by name (empty: none). Attach accepts a region another user owns only if
  // its group is this one and it is not world-writable; a region we create is given this group
  // (fchown: the creating user must be a member), so with mode 0660 the group shares it.
  std::string group;
  // How long attaching waits for a concurrent creator to size and initialise the region. Zero:
  // fail at once with Reason::kNotReady (the gateway re-attaching retries on its next reap
  // instead of stalling scrapes).
  std::chrono::milliseconds creator_wait{5000};
};

}  // namespace shmetrics::shm
