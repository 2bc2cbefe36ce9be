// Region: one mapped shmetrics region, created or attached by name, with bounds-checked access to
// its sections. Owns the mapping and the descriptor; nothing here is on a hot path.
//
// Attach validates the header against the layout recomputed from its capacities and copies the
// result into this process (`layout()`): every later bounds check uses that private copy, so a
// process that scribbles on the shared header cannot move another process's bounds.
//
// Thread-safety: a Region is immutable after construction and may be used from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "shmetrics/shm/layout.h"

namespace shmetrics::shm {

// Thrown by attach/create: names the region and says what is wrong, with errno text where the
// operating system said no.
class RegionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

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
  mode_t mode = 0600;  // 0660 lets a group (app servers + gateway) share the region
};

// Where each section starts, derived from the capacities alone.
struct Layout {
  uint64_t region_bytes = 0;
  uint32_t max_families = 0, max_series = 0, max_slots = 0, max_cells = 0;
  uint32_t pages_per_slot = 0, page_count = 0, hash_buckets = 0, string_bytes = 0;
  uint64_t families_offset = 0, series_offset = 0, hash_offset = 0, strings_offset = 0;
  uint64_t slots_offset = 0, directory_offset = 0, pages_offset = 0;

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
  // Attaches to an existing region; throws if there is none.
  static std::unique_ptr<Region> Open(const std::string& name);
  // Removes the name (existing mappings stay valid). Returns false if there was none.
  static bool Remove(const std::string& name);

  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  const std::string& name() const { return name_; }
  const Layout& layout() const { return layout_; }
  bool created() const { return created_; }
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
  // it alone (see ofd_lock.h). O_CLOEXEC. The caller owns and closes it.
  int OpenLockDescriptor() const;

  // The inode of the mapped object, to notice that the name now points at a re-created region.
  ino_t inode() const { return inode_; }
  // The inode the name points at now, or 0 if the name is gone.
  static ino_t CurrentInode(const std::string& name);

 private:
  Region() = default;
  struct Handles;  // the Boost.Interprocess object and mapping, kept out of this header
  static std::unique_ptr<Region> Map(const std::string& name, std::unique_ptr<Handles> handles,
                                     bool created, const RegionOptions* init);

  std::string name_;
  Layout layout_;
  std::unique_ptr<Handles> handles_;
  char* base_ = nullptr;
  int fd_ = -1;  // owned by handles_
  ino_t inode_ = 0;
  bool created_ = false;
  uint64_t generation_ = 0;
};

}  // namespace shmetrics::shm
