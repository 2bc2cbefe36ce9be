// Region: one mapped shmetrics region, created or attached by name, with bounds-checked access to
// its sections. Owns the mapping and the descriptor; nothing here is on a hot path.
//
// Attach validates the header against the layout recomputed from its capacities and copies the
// result into this process (`layout()`): every later bounds check uses that private copy, so a
// process that scribbles on the shared header cannot move another process's bounds.
//
// Attach also decides whether the object may be trusted at all (README "Permissions"):
//  - /dev/shm/NAME is opened with O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC: a FIFO or device put in its
//    place cannot block us, a symbolic link is never followed; anything but a regular file is
//    refused before it is sized or mapped.
//  - A region another user could write into is refused: one that is world-writable (S_IWOTH), or
//    one owned by another uid unless its group is the trusted `RegionOptions::group`. A region our
//    own euid owns is accepted whatever its group. Root is not special.
//  - The header of an existing region is read with pread() and validated before the mapping is
//    touched, so a region truncated while we attach cannot fault inside Open.
//
// Thread-safety: a Region is immutable after construction and may be used from any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "shmetrics/shm/layout.h"
#include "shmetrics/shm/region_options.h"

namespace shmetrics::shm {

// Why `mode` may not be a region's mode (empty when it may): bits above 0777 (setuid, setgid,
// sticky) or write permission for others.
std::string ModeProblem(mode_t mode);

// Why `name` may not be a region's name (empty when it may): the rule every attach applies.
std::string RegionNameProblem(const std::string& name);

// The gid of group `name` (getgrnam_r); throws RegionError naming the group when there is none.
gid_t ResolveGroup(const std::string& name);

// Where each section starts, derived from the capacities alone: the header's capacities and
// offsets (layout.h) plus the region's size.
struct Layout : RegionCapacities, RegionOffsets {
  uint64_t region_bytes = 0;

  uint32_t total_slots() const { return max_slots + 2; }  // writers + two accumulator banks
  uint32_t bank_slot(uint32_t bank) const { return max_slots + bank; }
};

// Computes the layout for the capacities; throws RegionError when they do not fit the size.
Layout ComputeLayout(const RegionOptions& options);

// Validates a header as found in a region of `actual_bytes` bytes; returns the layout or throws
// RegionError naming the first field that is wrong.
Layout ValidateHeader(const RegionHeader& header, uint64_t actual_bytes, std::string_view name);

class Region {
 public:
  // Attaches to `name`, creating it with `options` if it does not exist yet. Waits (bounded) for a
  // concurrent creator to finish initialising.
  static std::unique_ptr<Region> OpenOrCreate(const std::string& name,
                                              const RegionOptions& options = {});
  // Attaches to an existing region; throws if there is none. Of `options` only the attach
  // policy is used: `group` and `creator_wait`.
  static std::unique_ptr<Region> Open(const std::string& name, const RegionOptions& options = {});
  // Attaches like Open, but for reading only: opened O_RDONLY and mapped PROT_READ, so read
  // permission suffices and a store through any accessor faults instead of changing the region.
  // For tools that must leave the region as they found it (shmetrics-inspect).
  static std::unique_ptr<Region> OpenReadOnly(const std::string& name,
                                              const RegionOptions& options = {});
  // Removes the name (existing mappings stay valid). Returns false if there was none; throws
  // RegionError (Reason::kAccess, with errno text) when it exists but may not be removed.
  static bool Remove(const std::string& name);

  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  const std::string& name() const { return name_; }
  const Layout& layout() const { return layout_; }
  bool created() const { return created_; }
  bool read_only() const { return read_only_; }
  uint64_t generation() const { return generation_; }

  RegionHeader& header() const { return *reinterpret_cast<RegionHeader*>(base_); }

  // Bounds-checked against layout(): an out-of-range index returns nullptr.
  FamilyRecord* family(uint32_t index) const;
  SeriesRecord* series(uint32_t index) const;
  std::atomic<uint32_t>* hash_bucket(uint32_t index) const;
  SlotHeader* slot(uint32_t index) const;          // index < total_slots()
  DirectoryEntry* directory(uint32_t slot) const;  // pages_per_slot entries
  Cell* page(uint32_t page_index) const;           // 0 < page_index < page_count
  // Arena bytes [offset, offset + length), or nullptr when the range leaves the arena.
  const char* arena(uint32_t offset, uint32_t length) const;
  char* mutable_arena(uint32_t offset, uint32_t length) const;

  // Opens a new open file description of this region's file: OFD locks taken through it belong to
  // it alone (see ofd_lock.h). O_CLOEXEC. The caller owns and closes it. For a read-only region
  // it is read-only too: it can test locks (F_OFD_GETLK) but not take write locks.
  int OpenLockDescriptor() const;

  // The inode of the mapped object, to notice that the name now points at a re-created region.
  ino_t inode() const { return inode_; }
  // The inode the name points at now (lstat: opens nothing, follows no link, never blocks), or 0
  // if the name is gone.
  static ino_t CurrentInode(const std::string& name);

  // Whether the mapped object is still the region we attached, and if not (`what` says how):
  // resized (truncated or grown) under the mapping, or its header overwritten in place. One
  // fstat, and a read of the header only when the size is intact. A caller that gets anything but
  // kIntact must stop touching the mapping: pages past a truncation raise SIGBUS.
  enum class Integrity { kIntact, kResized, kOverwritten };
  Integrity CheckIntegrity(std::string* what = nullptr) const;

  // The mapping, for a SIGBUS handler that must recognise faults inside it.
  const void* mapping_base() const { return base_; }
  uint64_t mapping_bytes() const { return mapped_bytes_; }

 private:
  Region() = default;
  // Sizes and initialises (created) or validates (attached) the object behind `fd`, then maps
  // it. Takes ownership of `fd`.
  static std::unique_ptr<Region> Attach(const std::string& name, int fd, bool created,
                                        const RegionOptions& options, bool read_only = false);
  static std::unique_ptr<Region> OpenExisting(const std::string& name, const RegionOptions& options,
                                              bool read_only);

  std::string name_;
  Layout layout_;
  char* base_ = nullptr;
  uint64_t mapped_bytes_ = 0;
  int fd_ = -1;
  ino_t inode_ = 0;
  bool created_ = false;
  bool read_only_ = false;
  uint64_t generation_ = 0;
};

}  // namespace shmetrics::shm
