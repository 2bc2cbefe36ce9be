#include "shmetrics/shm/region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

namespace shmetrics::shm {
namespace bip = boost::interprocess;
namespace {

constexpr uint64_t kMaxRegionBytes = 1ull << 40;
constexpr std::chrono::seconds kCreatorWait{5};

uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

uint32_t NextPowerOfTwo(uint64_t v) {
  uint64_t p = 1;
  while (p < v) p <<= 1;
  return static_cast<uint32_t>(p);
}

std::string Errno(int err) { return std::strerror(err); }

uint64_t NowUnixNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

void CheckName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 200;
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-' || c == '.');
  }
  if (!ok) {
    throw RegionError("invalid region name \"" + name +
                      "\": use 1-200 characters from [A-Za-z0-9._-] (it becomes /dev/shm/" + name +
                      ")");
  }
}

uint64_t FileSize(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

Layout ComputeLayout(const RegionOptions& o) {
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
  if (o.size_bytes > kMaxRegionBytes) fail("size_bytes is larger than 1 TiB");

  Layout l;
  l.region_bytes = o.size_bytes;
  l.max_families = o.max_families;
  l.max_series = o.max_series;
  l.max_slots = o.max_slots;
  l.max_cells = o.max_cells;
  l.pages_per_slot = o.max_cells / kCellsPerPage;
  l.hash_buckets = NextPowerOfTwo(2ull * o.max_series);
  l.string_bytes = o.string_bytes;

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
  if (o.size_bytes < need) {
    fail("size_bytes " + std::to_string(o.size_bytes) +
         " is too small for these capacities: need " + "at least " + std::to_string(need) +
         " bytes (raise size_bytes or lower max_series, " + "max_slots, max_cells, string_bytes)");
  }
  const uint64_t pages = (o.size_bytes - l.pages_offset) / kPageBytes;
  l.page_count = static_cast<uint32_t>(std::min<uint64_t>(pages, 0xffffffffu));
  return l;
}

Layout ValidateHeader(const RegionHeader& h, uint64_t actual_bytes, std::string_view name) {
  const std::string who = "region \"" + std::string(name) + "\": ";
  if (h.magic != kMagic) {
    throw RegionError(who + "not a shmetrics region (bad magic); remove it or use another name");
  }
  if (h.layout_version != kLayoutVersion) {
    throw RegionError(who + "layout version " + std::to_string(h.layout_version) +
                      ", this build reads version " + std::to_string(kLayoutVersion) +
                      "; stop its writers and re-create it (shmetrics-gateway --reset)");
  }
  if (h.header_bytes != sizeof(RegionHeader)) throw RegionError(who + "header size mismatch");
  if (h.region_bytes != actual_bytes) {
    throw RegionError(who + "header says " + std::to_string(h.region_bytes) +
                      " bytes but the object has " + std::to_string(actual_bytes));
  }
  RegionOptions o;
  o.size_bytes = h.region_bytes;
  o.max_families = h.max_families;
  o.max_series = h.max_series;
  o.max_slots = h.max_slots;
  o.max_cells = h.max_cells;
  o.string_bytes = h.string_bytes;
  Layout l;
  try {
    l = ComputeLayout(o);
  } catch (const RegionError& e) {
    throw RegionError(who + "corrupt capacities: " + e.what());
  }
  const bool same = l.pages_per_slot == h.pages_per_slot && l.page_count == h.page_count &&
                    l.hash_buckets == h.hash_buckets && l.families_offset == h.families_offset &&
                    l.series_offset == h.series_offset && l.hash_offset == h.hash_offset &&
                    l.strings_offset == h.strings_offset && l.slots_offset == h.slots_offset &&
                    l.directory_offset == h.directory_offset && l.pages_offset == h.pages_offset;
  if (!same) throw RegionError(who + "corrupt header: section offsets do not match capacities");
  return l;
}

struct Region::Handles {
  bip::shared_memory_object shm;
  bip::mapped_region mapping;
};

std::unique_ptr<Region> Region::OpenOrCreate(const std::string& name,
                                             const RegionOptions& options) {
  CheckName(name);
  ComputeLayout(options);  // fail on bad options before touching the system
  // create_only is O_CREAT|O_EXCL: it decides who initialises; everyone else waits for `ready`.
  auto handles = std::make_unique<Handles>();
  try {
    handles->shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write,
                                             bip::permissions(options.mode));
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() != bip::already_exists_error) {
      throw RegionError("region \"" + name + "\": cannot create /dev/shm/" + name + ": " +
                        e.what());
    }
    return Open(name);
  }
  return Map(name, std::move(handles), true, &options);
}

std::unique_ptr<Region> Region::Open(const std::string& name) {
  CheckName(name);
  auto handles = std::make_unique<Handles>();
  try {
    handles->shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    throw RegionError("region \"" + name + "\": cannot open /dev/shm/" + name + ": " + e.what());
  }
  return Map(name, std::move(handles), false, nullptr);
}

bool Region::Remove(const std::string& name) {
  CheckName(name);
  return bip::shared_memory_object::remove(name.c_str());
}

ino_t Region::CurrentInode(const std::string& name) {
  int fd = ::shm_open(("/" + name).c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return 0;
  struct stat st {};
  const int rc = ::fstat(fd, &st);
  ::close(fd);
  return rc == 0 ? st.st_ino : 0;
}

std::unique_ptr<Region> Region::Map(const std::string& name, std::unique_ptr<Handles> handles,
                                    bool created, const RegionOptions* init) {
  const std::string who = "region \"" + name + "\": ";
  const int fd = handles->shm.get_mapping_handle().handle;
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);  // a worker that execs must not keep the region open
  auto fail = [&](const std::string& what, int err) -> std::unique_ptr<Region> {
    const std::string msg = who + what + (err ? std::string(": ") + Errno(err) : "");
    if (created) bip::shared_memory_object::remove(name.c_str());
    throw RegionError(msg);
  };

  uint64_t bytes = 0;
  if (created) {
    bytes = init->size_bytes;
    try {
      handles->shm.truncate(static_cast<bip::offset_t>(bytes));
    } catch (const bip::interprocess_exception& e) {
      return fail(std::string("cannot size to ") + std::to_string(bytes) + " bytes: " + e.what(),
                  0);
    }
    // Reserve every page now: a full /dev/shm must fail here, not as SIGBUS in a worker.
    if (int err = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)); err != 0) {
      return fail("cannot reserve " + std::to_string(bytes) + " bytes in /dev/shm (is it too " +
                      "small? see README \"Sizing the region\")",
                  err);
    }
  } else {
    // The creator may still be sizing it.
    const auto deadline = std::chrono::steady_clock::now() + kCreatorWait;
    while ((bytes = FileSize(fd)) < sizeof(RegionHeader)) {
      if (std::chrono::steady_clock::now() > deadline) {
        return fail(
            "exists but was never sized (its creator died?); remove it with "
            "shmetrics-gateway --region " +
                name + " --reset",
            0);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  try {
    handles->mapping = bip::mapped_region(handles->shm, bip::read_write, 0, bytes);
  } catch (const bip::interprocess_exception& e) {
    return fail(std::string("cannot map ") + std::to_string(bytes) + " bytes: " + e.what(), 0);
  }

  std::unique_ptr<Region> r(new Region());
  r->name_ = name;
  r->base_ = static_cast<char*>(handles->mapping.get_address());
  r->fd_ = fd;
  r->handles_ = std::move(handles);
  r->created_ = created;
  struct stat st {};
  if (::fstat(fd, &st) == 0) r->inode_ = st.st_ino;
  auto& h = r->header();

  if (created) {
    const Layout l = ComputeLayout(*init);
    // The object is fresh and zero-filled: only non-zero fields need writing.
    h.magic = kMagic;
    h.layout_version = kLayoutVersion;
    h.header_bytes = sizeof(RegionHeader);
    h.region_bytes = l.region_bytes;
    std::random_device rd;
    h.generation = (uint64_t{rd()} << 32 | rd()) ^ NowUnixNs();
    h.created_unix_ns = NowUnixNs();
    h.max_families = l.max_families;
    h.max_series = l.max_series;
    h.max_slots = l.max_slots;
    h.max_cells = l.max_cells;
    h.pages_per_slot = l.pages_per_slot;
    h.page_count = l.page_count;
    h.hash_buckets = l.hash_buckets;
    h.string_bytes = l.string_bytes;
    h.families_offset = l.families_offset;
    h.series_offset = l.series_offset;
    h.hash_offset = l.hash_offset;
    h.strings_offset = l.strings_offset;
    h.slots_offset = l.slots_offset;
    h.directory_offset = l.directory_offset;
    h.pages_offset = l.pages_offset;
    h.cells_used.store(kSystemCells, std::memory_order_relaxed);
    h.pages_used.store(1, std::memory_order_relaxed);  // page 0 is kNoPage
    h.ready.store(kReadyValue, std::memory_order_release);
    r->layout_ = l;
  } else {
    const auto deadline = std::chrono::steady_clock::now() + kCreatorWait;
    while (h.ready.load(std::memory_order_acquire) != kReadyValue) {
      if (std::chrono::steady_clock::now() > deadline) {
        // Not ours to repair: report it and let the operator decide.
        const bool magic_ok = h.magic == kMagic;
        throw RegionError(who + (magic_ok ? "was never finished by its creator (it died while "
                                            "initialising); remove it with shmetrics-gateway "
                                            "--region " +
                                                name + " --reset"
                                          : "is not a shmetrics region (bad magic); remove it or "
                                            "use another name"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    r->layout_ = ValidateHeader(h, bytes, name);
  }
  r->generation_ = h.generation;
  return r;
}

Region::~Region() = default;

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
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    throw RegionError("region \"" + name_ + "\": cannot open a lock descriptor (" + path +
                      "): " + Errno(errno));
  }
  return fd;
}

}  // namespace shmetrics::shm
