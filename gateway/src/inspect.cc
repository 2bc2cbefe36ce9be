#include "inspect.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <type_traits>
#include <utility>

#include "merger.h"
#include "region_access.h"
#include "registry_cache.h"
#include "shmetrics/shm/region.h"
#include "snapshot.h"

namespace shmetrics::gateway {
namespace {

using shm::SlotState;

constexpr const char* kShmDir = "/dev/shm/";

// The gateway's liveness probe without its side effect: F_OFD_GETLK reports whether the lock
// could be taken, and takes nothing.
LockProbe ProbeLock(int fd, int64_t offset, std::string* error) {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = offset;
  fl.l_len = 1;
  fl.l_pid = 0;  // required for OFD locks
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) {
    if (error != nullptr) *error = std::strerror(errno);
    return LockProbe::kError;
  }
  return fl.l_type == F_UNLCK ? LockProbe::kFree : LockProbe::kHeld;
}

const char* GaugeModeName(shm::GaugeMode mode) {
  switch (mode) {
    case shm::GaugeMode::kAll:
      return "all";
    case shm::GaugeMode::kLiveAll:
      return "liveall";
    case shm::GaugeMode::kSum:
      return "sum";
    case shm::GaugeMode::kLiveSum:
      return "livesum";
    case shm::GaugeMode::kMax:
      return "max";
    case shm::GaugeMode::kLiveMax:
      return "livemax";
    case shm::GaugeMode::kMin:
      return "min";
    case shm::GaugeMode::kLiveMin:
      return "livemin";
    case shm::GaugeMode::kMostRecent:
      return "mostrecent";
    case shm::GaugeMode::kLiveMostRecent:
      return "livemostrecent";
  }
  return "unknown";
}

const char* LockName(LockProbe p) {
  switch (p) {
    case LockProbe::kFree:
      return "free";
    case LockProbe::kHeld:
      return "held";
    case LockProbe::kError:
      break;
  }
  return "error";
}

std::string Number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  if (v == std::floor(v) && std::fabs(v) < 0x1p53) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.17g", v);
  }
  return buf;
}

// A share with two decimals, for JSON: "18.75", "0.68", "100".
std::string PercentJson(double p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", p);
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

// "1 writer slot", "2 writer slots".
std::string Count(uint64_t n, const std::string& what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

std::string Percent(double p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", p);
  return buf;
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

std::string Octal(uint32_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", mode & 07777);
  return buf;
}

std::string Bytes(uint64_t n) {
  char buf[48];
  if (n >= (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", n / double(1ull << 30));
  } else if (n >= (1ull << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", n / double(1ull << 20));
  } else if (n >= 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", n / 1024.0);
  } else {
    std::snprintf(buf, sizeof buf, "%" PRIu64 " B", n);
  }
  return buf;
}

// "2026-12-02T08:10:00Z", or "never" for 0.
std::string UtcTime(uint64_t unix_ns) {
  if (unix_ns == 0) return "never";
  const auto t = static_cast<std::time_t>(unix_ns / 1'000'000'000);
  std::tm tm{};
  if (::gmtime_r(&t, &tm) == nullptr) return "invalid";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string UserName(uint32_t uid) {
  const struct passwd* pw = ::getpwuid(uid);
  return pw != nullptr ? pw->pw_name : std::to_string(uid);
}

std::string GroupName(uint32_t gid) {
  const struct group* gr = ::getgrgid(gid);
  return gr != nullptr ? gr->gr_name : std::to_string(gid);
}

// Region bytes are untrusted: what reaches a terminal is printable ASCII only, so no escape
// sequence a hostile writer planted can act on the operator's terminal.
std::string Printable(const std::string& s) {
  std::string out = s;
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

// A JSON string; bytes that are not printable ASCII are escaped as code points of their byte
// value (Latin-1), so the output is valid JSON and ASCII whatever the region held.
std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c > 0x7e) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// Builds one JSON object, members in the order they are added.
class JsonObject {
 public:
  JsonObject& Raw(const char* key, const std::string& json) {
    out_ += first_ ? "" : ",";
    first_ = false;
    out_ += JsonString(key) + ":" + json;
    return *this;
  }
  JsonObject& Str(const char* key, const std::string& s) { return Raw(key, JsonString(s)); }
  JsonObject& Num(const char* key, double v) { return Raw(key, Number(v)); }
  template <typename T>
  requires std::is_integral_v<T> JsonObject& Num(const char* key, T v) {
    return Raw(key, std::to_string(v));
  }
  JsonObject& Bool(const char* key, bool v) { return Raw(key, v ? "true" : "false"); }
  std::string Done() const { return out_ + "}"; }

 private:
  std::string out_ = "{";
  bool first_ = true;
};

std::string JsonArray(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
  return out + "]";
}

// Aligned columns: the first row is the heading; `right` says which columns hold numbers.
std::string Table(const std::vector<std::vector<std::string>>& rows,
                  const std::vector<bool>& right) {
  std::vector<size_t> width(right.size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < width.size(); ++c)
      width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      line += "  ";
      line += right[c] ? pad + row[c] : row[c] + (c + 1 < row.size() ? pad : "");
    }
    out += line + "\n";
  }
  return out;
}

// The header's bytes, read with pread through a descriptor of our own: what can still be said
// about a region whose header does not validate. Fills report.have_header.
void ReadRawHeader(InspectReport& report) {
  const int fd = ::open(report.path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st {};
  shm::RegionHeader h{};
  const bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                  ::pread(fd, &h, sizeof h, 0) == static_cast<ssize_t>(sizeof h);
  ::close(fd);
  if (!ok) return;
  report.have_header = true;
  report.magic_ok = h.magic == shm::kMagic;
  report.layout_version = h.layout_version;
  report.header_bytes = h.header_bytes;
  report.region_bytes = h.region_bytes;
  report.generation = h.generation;
  report.created_unix_ns = h.created_unix_ns;
  report.capacities = h.capacities;
  report.offsets = h.offsets;
}

void Warn(InspectReport& r, std::string kind, std::string message,
          std::optional<uint64_t> offset = std::nullopt) {
  r.warnings.push_back({std::move(kind), std::move(message), offset});
}

// The first recorded skip report about `record` ("family #3", "series #12") not yet used.
std::string TakeReason(std::vector<std::string>& recorded, std::vector<bool>& used,
                       const std::string& record) {
  for (size_t i = 0; i < recorded.size(); ++i) {
    const std::string& m = recorded[i];
    if (used[i] || !m.starts_with(record)) continue;
    const char next = m.size() > record.size() ? m[record.size()] : '\0';
    if (next != ':' && next != ' ') continue;  // "family #1" must not match "family #12"
    used[i] = true;
    return m;
  }
  return record + ": rejected";
}

void CollectSlots(const shm::Region& region, int lock_fd, uint64_t commit, InspectReport& r) {
  const shm::Layout& l = region.layout();
  // Pages first, for every slot including the banks: a directory entry outside the pool is
  // reported here, with its offset.
  auto count_pages = [&](uint32_t slot) {
    uint32_t pages = 0;
    const shm::DirectoryEntry* dir = region.directory(slot);
    for (uint32_t p = 0; p < l.pages_per_slot; ++p) {
      const uint32_t page = dir[p].load(std::memory_order_acquire);
      if (page == shm::kNoPage) continue;
      if (page >= l.page_count) {
        Warn(r, "corrupt_slot",
             "slot " + std::to_string(slot) + ": directory entry " + std::to_string(p) +
                 " points at page " + std::to_string(page) + ", outside the pool of " +
                 std::to_string(l.page_count),
             l.directory_offset + (uint64_t{slot} * l.pages_per_slot + p) * sizeof(uint32_t));
        continue;
      }
      ++pages;
    }
    return pages;
  };
  for (uint32_t i = 0; i < l.max_slots; ++i) {
    const shm::SlotHeader& s = *region.slot(i);
    const uint32_t state = s.state.load(std::memory_order_acquire);
    const uint32_t pages = count_pages(i);
    if (state == static_cast<uint32_t>(SlotState::kFree)) {
      ++r.free_slots;
      r.free_slots_with_pages += pages > 0;
      continue;
    }
    SlotRow row;
    row.index = i;
    row.pages = pages;
    row.pid = s.pid;
    row.tid = s.tid;
    row.primary_slot = s.primary_slot;
    row.claimed_unix_ns = s.claimed_unix_ns;
    row.lock = ProbeLock(lock_fd, shm::kSlotLockBase + i, &row.lock_error);
    if (row.pid > 0) {
      row.pid_running = ::kill(row.pid, 0) == 0 || errno == EPERM;  // EPERM: another user's
      struct stat st {};
      row.proc_entry = ::stat(("/proc/" + std::to_string(row.pid)).c_str(), &st) == 0;
    }
    const bool held = row.lock == LockProbe::kHeld;
    switch (state) {
      case static_cast<uint32_t>(SlotState::kActive):
        row.state = "active";
        row.liveness = held ? "live" : "dead";
        break;
      case static_cast<uint32_t>(SlotState::kReleased):
        row.state = "released";
        row.liveness = "released";
        break;
      case static_cast<uint32_t>(SlotState::kFolding):
        row.state = "folding";
        row.liveness = shm::FoldCommitted(s.fold_epoch, commit) ? "folded"
                       : held                                   ? "folding"
                                                                : "interrupted";
        break;
      default:
        row.state = "unknown (" + std::to_string(state) + ")";
        row.liveness = "corrupt";
        Warn(r, "corrupt_slot",
             "slot " + std::to_string(i) + ": unknown state " + std::to_string(state) +
                 " (a gateway skips it)",
             l.slots_offset + uint64_t{i} * sizeof(shm::SlotHeader));
    }
    if (row.lock == LockProbe::kError && row.liveness == "dead") row.liveness = "unknown";
    if (row.primary_slot >= l.max_slots) {
      Warn(r, "corrupt_slot",
           "slot " + std::to_string(i) + ": primary slot " + std::to_string(row.primary_slot) +
               " is out of range",
           l.slots_offset + uint64_t{i} * sizeof(shm::SlotHeader) +
               offsetof(shm::SlotHeader, primary_slot));
    }
    r.slots.push_back(std::move(row));
  }
  for (SlotRow& row : r.slots) {
    if (row.primary_slot != row.index) continue;
    row.threads = static_cast<uint32_t>(
        std::count_if(r.slots.begin(), r.slots.end(), [&](const SlotRow& other) {
          return other.primary_slot == row.index && other.pid == row.pid &&
                 other.liveness != "corrupt";
        }));
  }
}

void CollectDecoded(shm::Region& region, InspectReport& r) {
  const shm::Layout& l = region.layout();
  const shm::RegionHeader& h = region.header();
  const int lock_fd = region.OpenLockDescriptor();
  struct CloseFd {
    int fd;
    ~CloseFd() { ::close(fd); }
  } close_lock{lock_fd};

  const uint64_t commit = h.fold_commit.load(std::memory_order_acquire);
  r.fold_epoch = shm::FoldEpochOf(commit);
  r.active_bank = shm::ActiveBankOf(commit);
  r.gateway_lock = ProbeLock(lock_fd, shm::kGatewayLockByte, nullptr);
  r.registry_lock = ProbeLock(lock_fd, shm::kRegistryLockByte, nullptr);

  // The gateway's reader, minus the folder: validation and sums exactly as a scrape does them.
  std::vector<std::string> recorded;
  RegionAccess access(region);
  access.RecordSkippedIn(&recorded);
  RegistryCache registry(access);
  registry.RefreshLocked();
  Merger merger(access, registry);
  Snapshot snap;
  merger.MergeLocked({}, snap);

  CollectSlots(region, lock_fd, commit, r);

  const uint32_t family_count = h.family_count.load(std::memory_order_acquire);
  const uint32_t series_count = h.series_count.load(std::memory_order_acquire);
  const uint64_t used_slots = r.slots.size();
  r.sections = {
      {"families", family_count, l.max_families},
      {"series", series_count, l.max_series},
      {"strings", h.strings_used.load(std::memory_order_relaxed), l.string_bytes},
      {"cells", h.cells_used.load(std::memory_order_relaxed), l.max_cells},
      {"pages", h.pages_used.load(std::memory_order_relaxed), l.page_count},
      {"slots", used_slots, l.max_slots},
  };
  for (const SectionUse& s : r.sections) {
    if (s.used > s.capacity) {
      Warn(r, "corrupt_header",
           "header: " + s.name + " used " + std::to_string(s.used) + " exceeds the capacity " +
               std::to_string(s.capacity) + " (only the first " + std::to_string(s.capacity) +
               " are read)");
    } else if (s.percent() >= kNearFullPercent) {
      Warn(r, "section_full",
           s.name + " " + Percent(s.percent()) + " full (" + std::to_string(s.used) + " of " +
               std::to_string(s.capacity) + "): new " + s.name +
               " will be refused soon; recreate the region larger (README \"Sizing the region\")");
    }
  }

  // Families, as the gateway accepts them, with the drop counters it serves.
  double series_limit = 0, invalid_value = 0;
  std::vector<bool> accepted_family(std::min(family_count, l.max_families), false);
  for (const FamilyInfo& f : registry.families()) {
    FamilyRow row;
    row.index = f.view.index;
    row.name = f.view.name;
    row.type = shm::MetricTypeName(f.view.type);
    if (f.view.type == shm::MetricType::kGauge) row.gauge_mode = GaugeModeName(f.view.gauge_mode);
    row.labels = f.view.label_names;
    row.series = f.series.size();
    const shm::FamilyRecord* record = region.family(f.view.index);
    row.max_series = record->max_series;
    const uint32_t cell = f.view.drop_cell;
    if (cell + shm::kFamilyDropCells <= snap.cells.size()) {
      row.dropped_series_limit = snap.cells[cell + shm::kDropSeriesLimit];
      row.dropped_invalid_value = snap.cells[cell + shm::kDropInvalidValue];
    }
    series_limit += row.dropped_series_limit;
    invalid_value += row.dropped_invalid_value;
    if (row.index < accepted_family.size()) accepted_family[row.index] = true;
    if (row.max_series > 0 && 100.0 * row.series / row.max_series >= kNearFullPercent) {
      Warn(r, "family_cap",
           "family " + row.name + " has " + std::to_string(row.series) + " series of its cap " +
               std::to_string(row.max_series) + ": further label sets are dropped");
    }
    r.families.push_back(std::move(row));
  }
  std::sort(r.families.begin(), r.families.end(), [](const FamilyRow& a, const FamilyRow& b) {
    return a.series != b.series ? a.series > b.series : a.name < b.name;
  });

  r.drops = {
      {"series_limit", series_limit},
      {"invalid_value", invalid_value},
      {"exemplar", static_cast<double>(snap.dropped_exemplars)},
      {"region_full", static_cast<double>(snap.dropped_region_full)},
      {"no_slot", static_cast<double>(snap.dropped_no_slot)},
      {"no_page", static_cast<double>(snap.dropped_no_page)},
      {"registration_errors", static_cast<double>(snap.registration_errors)},
  };
  for (const auto& [reason, n] : r.drops) {
    if (n <= 0) continue;
    std::string message =
        Number(n) + (reason == "registration_errors" ? " registrations refused for lack of room"
                                                     : " updates dropped, reason " + reason);
    if (reason == "series_limit" || reason == "invalid_value") {
      std::string who;
      for (const FamilyRow& f : r.families) {
        const double d =
            reason == "series_limit" ? f.dropped_series_limit : f.dropped_invalid_value;
        if (d > 0) who += (who.empty() ? "" : ", ") + f.name + " " + Number(d);
      }
      message += " (" + who + ")";
    }
    Warn(r, "drops", message);
  }

  // Records the reader rejected, each named with its offset. The reader says why in its skip
  // reports ("family #3: ..."); which records were rejected is what it did not accept.
  std::vector<bool> used(recorded.size(), false);
  for (uint32_t i = 0; i < accepted_family.size(); ++i) {
    if (accepted_family[i]) continue;
    Warn(r, "corrupt_record",
         TakeReason(recorded, used, "family #" + std::to_string(i)) + " (record at " +
             Hex(l.families_offset + uint64_t{i} * sizeof(shm::FamilyRecord)) + ")",
         l.families_offset + uint64_t{i} * sizeof(shm::FamilyRecord));
  }
  std::vector<bool> accepted_series(std::min(series_count, l.max_series), false);
  for (const SeriesInfo& s : registry.series()) {
    if (s.view.index < accepted_series.size()) accepted_series[s.view.index] = true;
  }
  for (uint32_t i = 0; i < accepted_series.size(); ++i) {
    if (accepted_series[i]) continue;
    Warn(r, "corrupt_record",
         TakeReason(recorded, used, "series #" + std::to_string(i)) + " (record at " +
             Hex(l.series_offset + uint64_t{i} * sizeof(shm::SeriesRecord)) + ")",
         l.series_offset + uint64_t{i} * sizeof(shm::SeriesRecord));
  }
  // The rest are blocks the merger skipped. Slot reports are left out: CollectSlots checked
  // every slot's directory itself, with offsets.
  for (size_t i = 0; i < recorded.size(); ++i) {
    if (used[i] || recorded[i].starts_with("slot ")) continue;
    Warn(r, "corrupt_block", recorded[i]);
  }

  uint32_t waiting = 0;
  for (const SlotRow& s : r.slots) {
    waiting += s.liveness == "dead" || s.liveness == "released" || s.liveness == "interrupted" ||
               s.liveness == "folded";
  }
  if (waiting > 0 && r.gateway_lock != LockProbe::kHeld) {
    Warn(r, "dead_slots",
         Count(waiting, "writer slot") +
             " wait for a gateway to fold them, and no gateway serves the region: "
             "their counts are included above, but they keep their slots and pages until one "
             "runs");
  }
}

}  // namespace

InspectReport Inspect(const std::string& name, const std::string& group) {
  InspectReport r;
  r.name = name;
  if (std::string problem = shm::RegionNameProblem(name); !problem.empty()) {
    r.error = problem;
    return r;
  }
  r.path = kShmDir + name;
  struct stat st {};
  if (::lstat(r.path.c_str(), &st) == 0) {
    r.have_file = true;
    r.uid = st.st_uid;
    r.gid = st.st_gid;
    r.mode = st.st_mode & 07777;
    r.file_bytes = static_cast<uint64_t>(st.st_size);
  }
  shm::RegionOptions options;
  options.group = group;
  options.creator_wait =
      std::chrono::milliseconds(0);  // a half-made region is reported, not waited for
  std::unique_ptr<shm::Region> region;
  try {
    region = shm::Region::OpenReadOnly(name, options);
  } catch (const shm::RegionError& e) {
    r.error = e.what();
    if (e.reason() == shm::RegionError::Reason::kInvalid ||
        e.reason() == shm::RegionError::Reason::kNotReady) {
      ReadRawHeader(r);
      if (r.have_header && r.magic_ok && r.layout_version != shm::kLayoutVersion) {
        Warn(r, "layout_version",
             "layout version " + std::to_string(r.layout_version) +
                 " is not one this build knows (it reads " + std::to_string(shm::kLayoutVersion) +
                 "): use the shmetrics-inspect of the release that created the region");
      } else if (r.have_header && e.reason() == shm::RegionError::Reason::kInvalid) {
        Warn(r, "corrupt_header", e.what(), 0);
      }
    }
    return r;
  }
  const shm::RegionHeader& h = region->header();
  r.have_header = true;
  r.magic_ok = true;
  r.layout_version = h.layout_version;
  r.header_bytes = h.header_bytes;
  r.region_bytes = region->layout().region_bytes;
  r.generation = region->generation();
  r.created_unix_ns = h.created_unix_ns;
  r.capacities = region->layout();
  r.offsets = region->layout();
  r.decoded = true;
  try {
    CollectDecoded(*region, r);
  } catch (const std::exception& e) {  // a lock descriptor refused, out of memory
    r.decoded = false;
    r.error = "region \"" + name + "\": " + e.what();
  }
  return r;
}

int ExitCode(const InspectReport& r) {
  if (r.error) return 2;
  return r.warnings.empty() ? 0 : 1;
}

std::string RenderText(const InspectReport& r) {
  std::string out;
  out += "region " + Printable(r.name) + (r.path.empty() ? "" : "  " + r.path) + "\n";
  if (r.have_file) {
    out += "  file: " + Bytes(r.file_bytes) + " (" + std::to_string(r.file_bytes) +
           " bytes), owner " + UserName(r.uid) + ", group " + GroupName(r.gid) + ", mode " +
           Octal(r.mode) + "\n";
  }
  if (r.have_header) {
    out += "  header: magic " + std::string(r.magic_ok ? "ok" : "BAD") + ", layout version " +
           std::to_string(r.layout_version) + " (this build reads " +
           std::to_string(shm::kLayoutVersion) + "), " + std::to_string(r.region_bytes) +
           " bytes, created " + UtcTime(r.created_unix_ns) + ", generation " + Hex(r.generation) +
           "\n";
    const shm::RegionCapacities& c = r.capacities;
    out += "  capacities: " + std::to_string(c.max_families) + " families, " +
           std::to_string(c.max_series) + " series, " + std::to_string(c.max_slots) +
           " writer slots, " + std::to_string(c.max_cells) + " cells (" +
           std::to_string(c.pages_per_slot) + " pages per slot), " + std::to_string(c.page_count) +
           " pages of " + std::to_string(shm::kPageBytes) + " bytes, " + Bytes(c.string_bytes) +
           " of strings, " + std::to_string(c.hash_buckets) + " hash buckets\n";
  }
  if (r.error) out += "  error: " + Printable(*r.error) + "\n";
  if (r.decoded) {
    out += "  gateway: " +
           std::string(r.gateway_lock == LockProbe::kHeld   ? "one serves the region"
                       : r.gateway_lock == LockProbe::kFree ? "none serves the region"
                                                            : "unknown (lock probe failed)") +
           "; fold epoch " + std::to_string(r.fold_epoch) + ", accumulator bank " +
           std::to_string(r.active_bank) +
           (r.registry_lock == LockProbe::kHeld ? "; a writer is registering now" : "") + "\n";

    out += "\nsections\n";
    std::vector<std::vector<std::string>> rows{{"section", "used", "capacity", "full"}};
    for (const SectionUse& s : r.sections) {
      rows.push_back(
          {s.name, std::to_string(s.used), std::to_string(s.capacity), Percent(s.percent())});
    }
    out += Table(rows, {false, true, true, true});

    out += "\ndropped updates\n";
    rows = {{"reason", "count"}};
    for (const auto& [reason, n] : r.drops) rows.push_back({reason, Number(n)});
    out += Table(rows, {false, true});

    out += "\nfamilies (" + std::to_string(r.families.size()) + ", most series first)\n";
    if (!r.families.empty()) {
      rows = {{"series", "cap", "type", "mode", "dropped:cap", "dropped:invalid", "name"}};
      for (const FamilyRow& f : r.families) {
        rows.push_back({std::to_string(f.series), std::to_string(f.max_series), f.type,
                        f.gauge_mode.empty() ? "-" : f.gauge_mode, Number(f.dropped_series_limit),
                        Number(f.dropped_invalid_value), Printable(f.name)});
      }
      out += Table(rows, {true, true, false, false, true, true, false});
    }

    out += "\nwriter slots (" + std::to_string(r.slots.size()) + " in use, " +
           std::to_string(r.free_slots) + " free, " + std::to_string(r.free_slots_with_pages) +
           " of them keeping pages)\n";
    if (!r.slots.empty()) {
      rows = {{"slot", "state", "liveness", "lock", "pid", "kernel", "tid", "primary", "threads",
               "pages", "claimed"}};
      for (const SlotRow& s : r.slots) {
        const std::string kernel = !s.pid_running ? "-"
                                   : *s.pid_running
                                       ? (s.proc_entry ? "running" : "running (no /proc entry)")
                                       : "no such process";
        rows.push_back({std::to_string(s.index), Printable(s.state), s.liveness,
                        s.lock == LockProbe::kError ? "error: " + s.lock_error : LockName(s.lock),
                        std::to_string(s.pid), kernel, std::to_string(s.tid),
                        s.primary_slot == s.index ? "self" : std::to_string(s.primary_slot),
                        s.primary_slot == s.index ? std::to_string(s.threads) : "-",
                        std::to_string(s.pages), UtcTime(s.claimed_unix_ns)});
      }
      out += Table(rows, {true, false, false, false, true, false, true, true, true, true, false});
      out +=
          "  liveness is the slot's lock, which the kernel drops when its process dies; the pid\n"
          "  is as the writer saw it (in another pid namespace it names another process or none)\n";
    }
  }
  out += "\nwarnings (" + std::to_string(r.warnings.size()) + ")\n";
  for (const Warning& w : r.warnings) out += "  " + w.kind + ": " + Printable(w.message) + "\n";
  if (r.warnings.empty() && !r.error) out += "  none: healthy\n";
  return out;
}

std::string RenderJson(const InspectReport& r) {
  JsonObject root;
  root.Num("format", 1);
  root.Str("region", r.name);
  root.Str("path", r.path);
  root.Raw("error", r.error ? JsonString(*r.error) : "null");
  root.Num("exit_code", ExitCode(r));
  root.Raw("file", r.have_file ? JsonObject()
                                     .Num("bytes", r.file_bytes)
                                     .Num("uid", r.uid)
                                     .Str("user", UserName(r.uid))
                                     .Num("gid", r.gid)
                                     .Str("group", GroupName(r.gid))
                                     .Str("mode", Octal(r.mode))
                                     .Done()
                               : "null");
  if (r.have_header) {
    const shm::RegionCapacities& c = r.capacities;
    const shm::RegionOffsets& o = r.offsets;
    root.Raw("header", JsonObject()
                           .Bool("magic_ok", r.magic_ok)
                           .Num("layout_version", r.layout_version)
                           .Num("known_layout_version", shm::kLayoutVersion)
                           .Num("header_bytes", r.header_bytes)
                           .Num("region_bytes", r.region_bytes)
                           .Str("generation", Hex(r.generation))
                           .Num("created_unix_ns", r.created_unix_ns)
                           .Str("created", UtcTime(r.created_unix_ns))
                           .Num("page_bytes", shm::kPageBytes)
                           .Done());
    root.Raw("capacities", JsonObject()
                               .Num("max_families", c.max_families)
                               .Num("max_series", c.max_series)
                               .Num("max_slots", c.max_slots)
                               .Num("max_cells", c.max_cells)
                               .Num("pages_per_slot", c.pages_per_slot)
                               .Num("page_count", c.page_count)
                               .Num("hash_buckets", c.hash_buckets)
                               .Num("string_bytes", c.string_bytes)
                               .Done());
    root.Raw("offsets", JsonObject()
                            .Num("families", o.families_offset)
                            .Num("series", o.series_offset)
                            .Num("hash", o.hash_offset)
                            .Num("strings", o.strings_offset)
                            .Num("slots", o.slots_offset)
                            .Num("directory", o.directory_offset)
                            .Num("pages", o.pages_offset)
                            .Done());
  } else {
    root.Raw("header", "null");
  }
  root.Bool("decoded", r.decoded);
  if (r.decoded) {
    root.Raw("gateway", JsonObject()
                            .Bool("serving", r.gateway_lock == LockProbe::kHeld)
                            .Str("lock", LockName(r.gateway_lock))
                            .Bool("registering", r.registry_lock == LockProbe::kHeld)
                            .Num("fold_epoch", r.fold_epoch)
                            .Num("active_bank", r.active_bank)
                            .Done());
    JsonObject sections;
    for (const SectionUse& s : r.sections) {
      sections.Raw(s.name.c_str(), JsonObject()
                                       .Num("used", s.used)
                                       .Num("capacity", s.capacity)
                                       .Raw("percent", PercentJson(s.percent()))
                                       .Done());
    }
    root.Raw("sections", sections.Done());
    JsonObject drops;
    for (const auto& [reason, n] : r.drops) drops.Num(reason.c_str(), n);
    root.Raw("drops", drops.Done());
    std::vector<std::string> families;
    for (const FamilyRow& f : r.families) {
      std::vector<std::string> labels;
      for (const std::string& l : f.labels) labels.push_back(JsonString(l));
      families.push_back(
          JsonObject()
              .Str("name", f.name)
              .Num("index", f.index)
              .Str("type", f.type)
              .Raw("gauge_mode", f.gauge_mode.empty() ? "null" : JsonString(f.gauge_mode))
              .Raw("labels", JsonArray(labels))
              .Num("series", f.series)
              .Num("max_series", f.max_series)
              .Raw("dropped", JsonObject()
                                  .Num("series_limit", f.dropped_series_limit)
                                  .Num("invalid_value", f.dropped_invalid_value)
                                  .Done())
              .Done());
    }
    root.Raw("families", JsonArray(families));
    std::vector<std::string> slots;
    for (const SlotRow& s : r.slots) {
      slots.push_back(
          JsonObject()
              .Num("index", s.index)
              .Str("state", s.state)
              .Str("liveness", s.liveness)
              .Str("lock", LockName(s.lock))
              .Raw("lock_error", s.lock == LockProbe::kError ? JsonString(s.lock_error) : "null")
              .Num("pid", s.pid)
              .Raw("pid_running", s.pid_running ? (*s.pid_running ? "true" : "false") : "null")
              .Bool("proc_entry", s.proc_entry)
              .Num("tid", s.tid)
              .Num("primary_slot", s.primary_slot)
              .Raw("threads", s.primary_slot == s.index ? std::to_string(s.threads) : "null")
              .Num("pages", s.pages)
              .Num("claimed_unix_ns", s.claimed_unix_ns)
              .Done());
    }
    root.Raw("slots", JsonArray(slots));
    root.Num("free_slots", r.free_slots);
    root.Num("free_slots_with_pages", r.free_slots_with_pages);
  }
  std::vector<std::string> warnings;
  for (const Warning& w : r.warnings) {
    warnings.push_back(JsonObject()
                           .Str("kind", w.kind)
                           .Str("message", w.message)
                           .Raw("offset", w.offset ? std::to_string(*w.offset) : "null")
                           .Done());
  }
  root.Raw("warnings", JsonArray(warnings));
  return root.Done() + "\n";
}

}  // namespace shmetrics::gateway
