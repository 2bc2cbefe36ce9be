// Region: the POSIX shared-memory object behind a region, with plain shm_open / fstat /
// ftruncate / posix_fallocate / mmap so that every open flag and check is ours (see region.h for
// the attach rule).
//
// Invariants:
//  - A created object gets its group (fchown) and exact mode (fchmod) before it is sized: an
//    attacher that sees a size sees the final owner and mode.
//  - An existing object is never mapped before it is known to be a trusted regular file with a
//    valid header, and that header is read with pread, not through the mapping.
#include "shmetrics/shm/region.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "shmetrics/shm/clock.h"

namespace shmetrics::shm {

std::string RegionNameProblem(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 200;
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-' || c == '.');
  }
  if (ok) return {};
  return "invalid region name \"" + name +
         "\": use 1-200 characters from [A-Za-z0-9._-] (it becomes /dev/shm/" + name + ")";
}

namespace {

constexpr uint64_t kMaxRegionBytes = 1ull << 40;
// Where glibc keeps POSIX shared-memory objects on Linux (a fixed path since glibc 2.34).
constexpr const char* kShmDir = "/dev/shm/";

uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

uint32_t NextPowerOfTwo(uint64_t v) {
  uint64_t p = 1;
  while (p < v) p <<= 1;
  return static_cast<uint32_t>(p);
}

std::string Errno(int err) { return std::strerror(err); }

void CheckName(const std::string& name) {
  if (std::string problem = RegionNameProblem(name); !problem.empty()) throw RegionError(problem);
}

using Reason = RegionError::Reason;

std::string Octal(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode));
  return buf;
}

const char* FileTypeName(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

// Buffer size for the *_r lookups: the system's hint, grown on ERANGE.
size_t LookupBufferSize(int which) {
  const long hint = ::sysconf(which);
  return hint > 0 ? static_cast<size_t>(hint) : 1024;
}

// "uid 65534 (nobody)", or "uid 65534" when the user database has no name for it.
std::string DescribeUid(uid_t uid) {
  std::string out = "uid " + std::to_string(uid);
  std::vector<char> buf(LookupBufferSize(_SC_GETPW_R_SIZE_MAX));
  struct passwd pw {
  }, *found = nullptr;
  int rc;
  while ((rc = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (1u << 20)) {
    buf.resize(buf.size() * 2);
  }
  if (rc == 0 && found != nullptr) out += std::string(" (") + found->pw_name + ")";
  return out;
}

std::string DescribeGid(gid_t gid) {
  std::string out = "gid " + std::to_string(gid);
  std::vector<char> buf(LookupBufferSize(_SC_GETGR_R_SIZE_MAX));
  struct group gr {
  }, *found = nullptr;
  int rc;
  while ((rc = ::getgrgid_r(gid, &gr, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (1u << 20)) {
    buf.resize(buf.size() * 2);
  }
  if (rc == 0 && found != nullptr) out += std::string(" (") + found->gr_name + ")";
  return out;
}

std::string Who(const std::string& name) { return "region \"" + name + "\": "; }

// Owns a descriptor until released: every early throw closes it.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

// The attach rule (region.h): throws Reason::kUntrusted, saying whose it is and what to do.
void CheckTrusted(const struct stat& st, const std::string& name,
                  const std::optional<gid_t>& trusted_gid, const std::string& group) {
  const uid_t self = ::geteuid();
  const bool world_writable = (st.st_mode & S_IWOTH) != 0;
  const bool ours = st.st_uid == self;
  const bool trusted_group = trusted_gid && st.st_gid == *trusted_gid;
  if (!world_writable && (ours || trusted_group)) return;
  std::string why;
  if (world_writable) why = "its mode " + Octal(st.st_mode & 07777) + " lets every user write it";
  if (!ours && !trusted_group) {
    if (!why.empty()) why += ", and ";
    why += "another user owns it and ";
    why += trusted_gid ? "its group is not the trusted group " + group : "no group is trusted";
  }
  throw RegionError(
      Who(name) + "refusing " + kShmDir + name + ": it is owned by " + DescribeUid(st.st_uid) +
          ", group " + DescribeGid(st.st_gid) + ", mode " + Octal(st.st_mode & 07777) +
          "; this process runs as " + DescribeUid(self) + ": " + why +
          ". Another local user may have created it to read or forge these metrics. Remove it "
          "(as its owner or root: shmetrics-gateway --region " +
          name +
          " --reset) and restart; to share a region between users on purpose, create it with "
          "a group and mode 0660 and trust that group (shmetrics-gateway --group NAME, "
          "RegionOptions::group).",
      Reason::kUntrusted);
}

}  // namespace

const char* ReasonName(RegionError::Reason reason) {
  switch (reason) {
    case Reason::kNotFound:
      return "not_found";
    case Reason::kAccess:
      return "access";
    case Reason::kNotRegular:
      return "not_regular";
    case Reason::kUntrusted:
      return "untrusted";
    case Reason::kNotReady:
      return "not_ready";
    case Reason::kInvalid:
      return "invalid";
    case Reason::kOther:
      break;
  }
  return "other";
}

std::string ModeProblem(mode_t mode) {
  if ((mode & ~mode_t{0777}) != 0) {
    return "mode " + Octal(mode) +
           " has bits above 0777 (setuid, setgid or sticky, or not a mode at all); a region's "
           "mode is read/write bits only, e.g. 0600 or 0660";
  }
  if ((mode & S_IWOTH) != 0) {
    return "mode " + Octal(mode) +
           " lets every user write the region (o+w): any local user could forge or corrupt the "
           "metrics; use 0600, or 0660 with a trusted group";
  }
  return {};
}

gid_t ResolveGroup(const std::string& name) {
  std::vector<char> buf(LookupBufferSize(_SC_GETGR_R_SIZE_MAX));
  struct group gr {
  }, *found = nullptr;
  int rc;
  while ((rc = ::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (1u << 20)) {
    buf.resize(buf.size() * 2);
  }
  if (rc != 0) {
    throw RegionError("cannot look up group \"" + name + "\": " + Errno(rc));
  }
  if (found == nullptr) {
    throw RegionError("unknown group \"" + name +
                      "\" (the trusted region group): no such group in the group database");
  }
  return found->gr_gid;
}

namespace {

// The layout for the size and chosen capacities in `o` (RegionCapacities says which are chosen);
// its derived fields are ignored and computed here, so creator and attacher share one derivation.
Layout DeriveLayout(const Layout& o) {
  auto fail = [&](const std::string& what) { throw RegionError("region options: " + what); };
  if (o.max_families < 1 || o.max_families > (1u << 20)) fail("max_families must be 1..1048576");
  if (o.max_series < 1 || o.max_series > (1u << 26)) fail("max_series must be 1..67108864");
  if (o.max_slots < 1 || o.max_slots > 65536) fail("max_slots must be 1..65536");
  if (o.max_cells < 2 * kCellsPerPage || o.max_cells % kCellsPerPage != 0 ||
      o.max_cells > (1u << 30)) {
    fail("max_cells must be a multiple of " + std::to_string(kCellsPerPage) + " in [" +
         std::to_string(2 * kCellsPerPage) + ", 2^30]");
  }
  if (o.string_bytes < 4096 || o.string_bytes > (1u << 30))
    fail("string_bytes must be 4 KiB..1 GiB");
  if (o.region_bytes > kMaxRegionBytes) fail("size_bytes is larger than 1 TiB");

  Layout l = o;
  l.pages_per_slot = o.max_cells / kCellsPerPage;
  l.hash_buckets = NextPowerOfTwo(2ull * o.max_series);

  uint64_t off = AlignUp(sizeof(RegionHeader), 64);
  l.families_offset = off;
  off = AlignUp(off + uint64_t{o.max_families} * sizeof(FamilyRecord), 64);
  l.series_offset = off;
  off = AlignUp(off + uint64_t{o.max_series} * sizeof(SeriesRecord), 64);
  l.hash_offset = off;
  off = AlignUp(off + uint64_t{l.hash_buckets} * sizeof(uint32_t), 64);
  l.strings_offset = off;
  off = AlignUp(off + o.string_bytes, 64);
  l.slots_offset = off;
  off = AlignUp(off + uint64_t{l.total_slots()} * sizeof(SlotHeader), 64);
  l.directory_offset = off;
  off += uint64_t{l.total_slots()} * l.pages_per_slot * sizeof(DirectoryEntry);
  l.pages_offset = AlignUp(off, kPageBytes);

  // Page 0 is never used; each accumulator bank and each slot needs at least one page to be
  // useful. Below that the region cannot hold anything.
  const uint64_t min_pages = 1 + 2 + 4;
  const uint64_t need = l.pages_offset + min_pages * kPageBytes;
  if (o.region_bytes < need) {
    fail("size_bytes " + std::to_string(o.region_bytes) +
         " is too small for these capacities: need " + "at least " + std::to_string(need) +
         " bytes (raise size_bytes or lower max_series, " + "max_slots, max_cells, string_bytes)");
  }
  const uint64_t pages = (o.region_bytes - l.pages_offset) / kPageBytes;
  l.page_count = static_cast<uint32_t>(std::min<uint64_t>(pages, 0xffffffffu));
  return l;
}

}  // namespace

Layout ComputeLayout(const RegionOptions& o) {
  Layout chosen;
  chosen.region_bytes = o.size_bytes;
  chosen.max_families = o.max_families;
  chosen.max_series = o.max_series;
  chosen.max_slots = o.max_slots;
  chosen.max_cells = o.max_cells;
  chosen.string_bytes = o.string_bytes;
  return DeriveLayout(chosen);
}

Layout ValidateHeader(const RegionHeader& h, uint64_t actual_bytes, std::string_view name) {
  const std::string who = "region \"" + std::string(name) + "\": ";
  if (h.magic != kMagic) {
    throw RegionError(who + "not a shmetrics region (bad magic); remove it or use another name",
                      Reason::kInvalid);
  }
  if (h.layout_version != kLayoutVersion) {
    throw RegionError(who + "layout version " + std::to_string(h.layout_version) +
                          ", this build reads version " + std::to_string(kLayoutVersion) +
                          "; stop its writers and re-create it (shmetrics-gateway --reset)",
                      Reason::kInvalid);
  }
  if (h.header_bytes != sizeof(RegionHeader)) {
    throw RegionError(who + "header size mismatch", Reason::kInvalid);
  }
  if (h.region_bytes != actual_bytes) {
    throw RegionError(who + "header says " + std::to_string(h.region_bytes) +
                          " bytes but the object has " + std::to_string(actual_bytes),
                      Reason::kInvalid);
  }
  Layout chosen;
  chosen.region_bytes = h.region_bytes;
  static_cast<RegionCapacities&>(chosen) = h.capacities;
  Layout l;
  try {
    l = DeriveLayout(chosen);
  } catch (const RegionError& e) {
    throw RegionError(who + "corrupt capacities: " + e.what(), Reason::kInvalid);
  }
  if (static_cast<const RegionCapacities&>(l) != h.capacities ||
      static_cast<const RegionOffsets&>(l) != h.offsets) {
    throw RegionError(who + "corrupt header: section offsets do not match capacities",
                      Reason::kInvalid);
  }
  return l;
}

std::unique_ptr<Region> Region::OpenOrCreate(const std::string& name,
                                             const RegionOptions& options) {
  CheckName(name);
  ComputeLayout(options);  // fail on bad options before touching the system
  if (std::string problem = ModeProblem(options.mode); !problem.empty()) {
    throw RegionError("region options: " + problem);
  }
  if (!options.group.empty()) ResolveGroup(options.group);  // an unknown group creates nothing
  // O_EXCL decides who initialises; everyone else attaches and waits for `ready`. The name may
  // vanish between the two (a --reset): then try to create it again.
  for (int attempt = 0;; ++attempt) {
    const int fd =
        ::shm_open(("/" + name).c_str(),
                   O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, options.mode);
    if (fd >= 0) return Attach(name, fd, true, options);
    const int err = errno;
    if (err != EEXIST) {
      throw RegionError(Who(name) + "cannot create " + kShmDir + name + ": " + Errno(err),
                        err == EACCES || err == EPERM ? Reason::kAccess : Reason::kOther);
    }
    try {
      return Open(name, options);
    } catch (const RegionError& e) {
      if (e.reason() != Reason::kNotFound || attempt >= 3) throw;
    }
  }
}

std::unique_ptr<Region> Region::Open(const std::string& name, const RegionOptions& options) {
  return OpenExisting(name, options, false);
}

std::unique_ptr<Region> Region::OpenReadOnly(const std::string& name,
                                             const RegionOptions& options) {
  return OpenExisting(name, options, true);
}

std::unique_ptr<Region> Region::OpenExisting(const std::string& name, const RegionOptions& options,
                                             bool read_only) {
  CheckName(name);
  const std::string path = kShmDir + name;
  // Not even opened when it is no regular file (a device's open may act); fstat in Attach is the
  // authoritative check, and the open flags keep the race harmless: nothing blocks or follows.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    throw RegionError(Who(name) + path + " is " + FileTypeName(st.st_mode) +
                          ", not a regular file; refusing it (remove it or use another name)",
                      Reason::kNotRegular);
  }
  const int fd =
      ::shm_open(("/" + name).c_str(),
                 (read_only ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
  if (fd < 0) {
    const int err = errno;
    const Reason reason = err == ENOENT                   ? Reason::kNotFound
                          : err == EACCES || err == EPERM ? Reason::kAccess
                          : err == ELOOP                  ? Reason::kNotRegular
                                                          : Reason::kOther;
    throw RegionError(Who(name) + "cannot open " + path + ": " + Errno(err), reason);
  }
  return Attach(name, fd, false, options, read_only);
}

bool Region::Remove(const std::string& name) {
  CheckName(name);
  if (::shm_unlink(("/" + name).c_str()) == 0) return true;
  const int err = errno;
  if (err == ENOENT) return false;
  const std::string path = kShmDir + name;
  std::string hint;
  struct stat st {};
  if ((err == EACCES || err == EPERM) && ::lstat(path.c_str(), &st) == 0) {
    hint = " (it is owned by " + DescribeUid(st.st_uid) + " and this process runs as " +
           DescribeUid(::geteuid()) + "; in the sticky " + kShmDir +
           " only the owner or root may remove it)";
  }
  throw RegionError(Who(name) + "cannot remove " + path + ": " + Errno(err) + hint,
                    err == EACCES || err == EPERM ? Reason::kAccess : Reason::kOther);
}

ino_t Region::CurrentInode(const std::string& name) {
  struct stat st {};
  if (::lstat((kShmDir + name).c_str(), &st) != 0) return 0;
  return st.st_ino;
}

namespace {

// A copy of the header through the descriptor: never through the mapping, which faults if the
// object shrinks under it. False on a short read (the object is smaller than a header).
bool ReadHeader(int fd, RegionHeader& out) {
  return ::pread(fd, &out, sizeof out, 0) == static_cast<ssize_t>(sizeof out);
}

}  // namespace

std::unique_ptr<Region> Region::Attach(const std::string& name, int raw_fd, bool created,
                                       const RegionOptions& options, bool read_only) {
  FdGuard fd{raw_fd};
  const std::string who = Who(name);
  const std::string path = kShmDir + name;
  auto fail = [&](const std::string& what, int err, Reason reason) {
    if (created) ::shm_unlink(("/" + name).c_str());
    throw RegionError(who + what + (err ? std::string(": ") + Errno(err) : ""), reason);
  };
  // For a failed system call: errno before anything (building the message) can change it.
  auto fail_errno = [&](const char* what, Reason reason) {
    const int err = errno;
    fail(what, err, reason);
  };
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) fail_errno("cannot stat it", Reason::kOther);
  if (!S_ISREG(st.st_mode)) {
    fail(path + " is " + FileTypeName(st.st_mode) +
             ", not a regular file; refusing it (remove it or use another name)",
         0, Reason::kNotRegular);
  }
  std::optional<gid_t> trusted_gid;
  try {
    if (!options.group.empty()) trusted_gid = ResolveGroup(options.group);
  } catch (const RegionError& e) {
    fail(e.what(), 0, Reason::kOther);
  }

  uint64_t bytes = 0;
  Layout layout;
  RegionHeader existing{};
  if (created) {
    // Group and mode before the size: whoever sees a size sees the final owner and mode.
    if (trusted_gid && ::fchown(fd.fd, static_cast<uid_t>(-1), *trusted_gid) != 0) {
      const int err = errno;
      fail("cannot give " + path + " to group " + options.group +
               " (the creating user must be a member of it)",
           err, Reason::kAccess);
    }
    if (::fchmod(fd.fd, options.mode) != 0) {
      const int err = errno;
      fail("cannot set mode " + Octal(options.mode) + " on " + path, err, Reason::kAccess);
    }
    bytes = options.size_bytes;
    layout = ComputeLayout(options);
    if (::ftruncate(fd.fd, static_cast<off_t>(bytes)) != 0) {
      const int err = errno;
      fail("cannot size to " + std::to_string(bytes) + " bytes", err, Reason::kOther);
    }
    // Reserve every page now: a full /dev/shm must fail here, not as SIGBUS in a worker.
    if (int err = ::posix_fallocate(fd.fd, 0, static_cast<off_t>(bytes)); err != 0) {
      fail("cannot reserve " + std::to_string(bytes) + " bytes in /dev/shm (is it too " +
               "small? see README \"Sizing the region\")",
           err, Reason::kOther);
    }
  } else {
    // A concurrent creator may still be sizing or initialising it.
    const auto deadline = std::chrono::steady_clock::now() + options.creator_wait;
    for (;;) {
      if (::fstat(fd.fd, &st) != 0) fail_errno("cannot stat it", Reason::kOther);
      // Removed meanwhile (a --reset, or a creator that failed): nobody will finish this one.
      if (st.st_nlink == 0) fail("was removed while being attached", 0, Reason::kNotFound);
      const bool sized = static_cast<uint64_t>(st.st_size) >= sizeof(RegionHeader);
      // Once sized, owner and mode are final (see the invariants above).
      if (sized) CheckTrusted(st, name, trusted_gid, options.group);
      if (sized && ReadHeader(fd.fd, existing)) {
        // A creator writes the magic before `ready`; anything else there is not a region.
        if (existing.magic != 0 && existing.magic != kMagic) {
          fail("not a shmetrics region (bad magic); remove it or use another name", 0,
               Reason::kInvalid);
        }
        if (existing.ready.load(std::memory_order_relaxed) == kReadyValue) {
          // Read again: fields the creator wrote before `ready` may postdate the first copy.
          if (::fstat(fd.fd, &st) != 0 || !ReadHeader(fd.fd, existing)) {
            fail("shrank while being attached", 0, Reason::kNotReady);
          }
          break;
        }
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        if (!sized) CheckTrusted(st, name, trusted_gid, options.group);
        // Not ours to repair: report it and let the operator decide.
        fail(std::string(sized ? "exists but is not initialised" : "exists but was never sized") +
                 " (its creator is still at it, or died doing it); if it stays so, remove it "
                 "with shmetrics-gateway --region " +
                 name + " --reset",
             0, Reason::kNotReady);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    bytes = static_cast<uint64_t>(st.st_size);
    layout = ValidateHeader(existing, bytes, name);
  }

  void* base =
      ::mmap(nullptr, bytes, read_only ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    fail("cannot map " + std::to_string(bytes) + " bytes", err, Reason::kOther);
  }
  std::unique_ptr<Region> r(new Region());
  r->name_ = name;
  r->base_ = static_cast<char*>(base);
  r->mapped_bytes_ = bytes;
  r->fd_ = fd.release();
  r->created_ = created;
  r->read_only_ = read_only;
  r->inode_ = st.st_ino;
  r->layout_ = layout;

  if (!created) {
    r->generation_ = existing.generation;
    return r;
  }
  // The object is fresh and zero-filled: only non-zero fields need writing.
  const Layout& l = layout;
  RegionHeader& h = r->header();
  h.magic = kMagic;
  h.layout_version = kLayoutVersion;
  h.header_bytes = sizeof(RegionHeader);
  h.region_bytes = l.region_bytes;
  std::random_device rd;
  h.generation = (uint64_t{rd()} << 32 | rd()) ^ NowUnixNs();
  h.created_unix_ns = NowUnixNs();
  h.capacities = l;
  h.offsets = l;
  h.cells_used.store(kSystemCells, std::memory_order_relaxed);
  h.pages_used.store(1, std::memory_order_relaxed);  // page 0 is kNoPage
  h.ready.store(kReadyValue, std::memory_order_release);
  r->generation_ = h.generation;
  return r;
}

Region::Integrity Region::CheckIntegrity(std::string* what) const {
  auto say = [&](Integrity result, const std::string& text) {
    if (what != nullptr) *what = text;
    return result;
  };
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    return say(Integrity::kResized, "cannot stat the region's object: " + Errno(errno));
  }
  const auto bytes = static_cast<uint64_t>(st.st_size);
  if (bytes != layout_.region_bytes) {
    return say(Integrity::kResized,
               std::string(bytes < layout_.region_bytes ? "was truncated" : "was resized") +
                   " under the mapping: the object has " + std::to_string(bytes) +
                   " bytes, the region " + std::to_string(layout_.region_bytes));
  }
  const RegionHeader& h = header();
  if (h.magic != kMagic || h.ready.load(std::memory_order_acquire) != kReadyValue ||
      h.generation != generation_) {
    return say(Integrity::kOverwritten,
               "had its header overwritten in place (bad magic, not ready or another "
               "generation)");
  }
  return say(Integrity::kIntact, {});
}

Region::~Region() {
  if (base_ != nullptr) ::munmap(base_, mapped_bytes_);
  if (fd_ >= 0) ::close(fd_);
}

FamilyRecord* Region::family(uint32_t i) const {
  if (i >= layout_.max_families) return nullptr;
  return reinterpret_cast<FamilyRecord*>(base_ + layout_.families_offset) + i;
}

SeriesRecord* Region::series(uint32_t i) const {
  if (i >= layout_.max_series) return nullptr;
  return reinterpret_cast<SeriesRecord*>(base_ + layout_.series_offset) + i;
}

std::atomic<uint32_t>* Region::hash_bucket(uint32_t i) const {
  if (i >= layout_.hash_buckets) return nullptr;
  return reinterpret_cast<std::atomic<uint32_t>*>(base_ + layout_.hash_offset) + i;
}

SlotHeader* Region::slot(uint32_t i) const {
  if (i >= layout_.total_slots()) return nullptr;
  return reinterpret_cast<SlotHeader*>(base_ + layout_.slots_offset) + i;
}

DirectoryEntry* Region::directory(uint32_t slot) const {
  if (slot >= layout_.total_slots()) return nullptr;
  return reinterpret_cast<DirectoryEntry*>(base_ + layout_.directory_offset) +
         uint64_t{slot} * layout_.pages_per_slot;
}

Cell* Region::page(uint32_t page_index) const {
  if (page_index == kNoPage || page_index >= layout_.page_count) return nullptr;
  return reinterpret_cast<Cell*>(base_ + layout_.pages_offset + uint64_t{page_index} * kPageBytes);
}

const char* Region::arena(uint32_t offset, uint32_t length) const {
  if (uint64_t{offset} + length > layout_.string_bytes) return nullptr;
  return base_ + layout_.strings_offset + offset;
}

char* Region::mutable_arena(uint32_t offset, uint32_t length) const {
  return const_cast<char*>(arena(offset, length));
}

int Region::OpenLockDescriptor() const {
  // A fresh open of the same inode is a new open file description, unlike dup().
  const std::string path = "/proc/self/fd/" + std::to_string(fd_);
  int fd = ::open(path.c_str(), (read_only_ ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) {
    throw RegionError("region \"" + name_ + "\": cannot open a lock descriptor (" + path +
                      "): " + Errno(errno));
  }
  return fd;
}

}  // namespace shmetrics::shm
