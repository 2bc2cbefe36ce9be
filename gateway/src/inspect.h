// shmetrics-inspect's model: what an operator needs to know about one region, collected without a
// gateway and without changing a byte of it, then rendered as aligned text or one JSON object.
//
// The region is attached read-only (shm::Region::OpenReadOnly: O_RDONLY, PROT_READ), so any
// store would fault instead of landing. It is read by the gateway's own read-side pieces (the
// registry cache's validation, the merger's sums), so the numbers are the ones a gateway would
// serve. Liveness uses the gateway's probe, made non-destructive: F_OFD_GETLK tests a slot's
// lock without taking it, so no gateway or worker can ever wait on inspect.
//
// Not thread-safe; one call per process is the intended use (a command-line tool).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shmetrics/shm/layout.h"

namespace shmetrics::gateway {

// How full one section of the region is.
struct SectionUse {
  std::string name;  // families, series, strings, cells, pages, slots
  uint64_t used = 0;
  uint64_t capacity = 0;
  double percent() const { return capacity == 0 ? 0 : 100.0 * used / capacity; }
};

struct FamilyRow {
  uint32_t index = 0;  // record index in the region's family table
  std::string name;
  std::string type;        // counter, gauge, histogram, summary
  std::string gauge_mode;  // gauges only (livesum, all, ...): empty otherwise
  std::vector<std::string> labels;
  uint64_t series = 0;      // series the reader accepted
  uint32_t max_series = 0;  // the family's cardinality cap
  double dropped_series_limit = 0;
  double dropped_invalid_value = 0;
};

// The outcome of testing one OFD lock byte without taking it.
enum class LockProbe { kFree, kHeld, kError };

// One writer slot that is not free.
struct SlotRow {
  uint32_t index = 0;
  std::string state;  // active, released, folding, or "unknown (N)"
  // What the slot means now: live (its process holds the lock), dead (state active, lock gone:
  // the owner died; the next gateway folds it), released (its thread ended; awaiting a fold),
  // folding (a gateway holds it), interrupted (a gateway died mid-fold; the next one redoes it),
  // folded (committed, not yet freed), unknown (probe failed: treated as live), corrupt.
  std::string liveness;
  LockProbe lock = LockProbe::kError;
  std::string lock_error;  // errno text when lock is kError
  int32_t pid = 0;         // as the writer saw it: for people, never for liveness
  int32_t tid = 0;
  uint32_t primary_slot = 0;  // == index for a process's primary slot
  uint32_t threads = 0;       // primary slots: non-free slots of this process, itself included
  uint32_t pages = 0;         // pages its directory maps
  uint64_t claimed_unix_ns = 0;
  // The pid as this kernel sees it (kill(pid, 0); /proc/PID). In another pid namespace the
  // number may name another process or none: the lock says what is true.
  std::optional<bool> pid_running;  // nullopt when pid <= 0
  bool proc_entry = false;
};

struct Warning {
  std::string kind;  // section_full, drops, family_cap, dead_slots, corrupt_record, corrupt_slot,
                     // corrupt_block, corrupt_header, layout_version
  std::string message;
  std::optional<uint64_t> offset;  // byte offset in the region of the record concerned
};

struct InspectReport {
  std::string name;
  std::string path;                  // /dev/shm/NAME
  std::optional<std::string> error;  // the region could not be opened or decoded

  // The file, from lstat (present when it exists).
  bool have_file = false;
  uint32_t uid = 0, gid = 0, mode = 0;
  uint64_t file_bytes = 0;

  // The header as found (present when at least its bytes could be read).
  bool have_header = false;
  bool magic_ok = false;
  uint32_t layout_version = 0;
  uint32_t header_bytes = 0;
  uint64_t region_bytes = 0;
  uint64_t generation = 0;
  uint64_t created_unix_ns = 0;
  shm::RegionCapacities capacities;
  shm::RegionOffsets offsets;

  // The rest needs a header that validated.
  bool decoded = false;
  uint64_t fold_epoch = 0;
  uint32_t active_bank = 0;
  LockProbe gateway_lock = LockProbe::kError;   // held: a gateway serves the region
  LockProbe registry_lock = LockProbe::kError;  // held: a writer is registering right now
  std::vector<SectionUse> sections;
  // Dropped updates by reason, the gateway's shmetrics_dropped_updates_total and
  // shmetrics_registration_errors_total, in that order.
  std::vector<std::pair<std::string, double>> drops;
  std::vector<FamilyRow> families;  // by series count, most first
  std::vector<SlotRow> slots;       // every slot that is not free, by index
  uint32_t free_slots = 0;
  uint32_t free_slots_with_pages = 0;  // kept pages wait for the slot's next occupant
  std::vector<Warning> warnings;
};

// Sections at or above this share of their capacity are warned about.
inline constexpr double kNearFullPercent = 90;

// Collects the report; never throws for anything the region holds (an unreadable region is
// InspectReport::error). `group` is the trusted group, as the gateway's --group.
InspectReport Inspect(const std::string& region, const std::string& group = {});

std::string RenderText(const InspectReport& report);
// One JSON object, keys as documented in shmetrics-inspect --help.
std::string RenderJson(const InspectReport& report);

// 0 healthy, 1 warnings, 2 the region could not be opened or decoded.
int ExitCode(const InspectReport& report);

}  // namespace shmetrics::gateway
