// RegionReader: the gateway's view of one region. It owns the three parts and the one mutex that
// serialises them: the registry cache (registry_cache.h: the decoded registry and how each cell
// is read), the folder (folder.h: dead writers folded into the accumulator exactly once) and the
// merger (merger.h: the Snapshot the encoders turn into an exposition).
//
// The region is untrusted: every index and offset is checked (shm::Region accessors), invalid
// records are skipped, counted in ReaderStats and logged (rate-limited).
//
// Thread-safety: all public methods lock an internal mutex; one reader per region and process.
// Cross-process: at most one gateway per region (OFD lock on kGatewayLockByte).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "folder.h"
#include "merger.h"
#include "region_access.h"
#include "registry_cache.h"
#include "shmetrics/shm/region.h"
#include "shmetrics/shm/registry_reader.h"
#include "snapshot.h"

namespace shmetrics::gateway {

class RegionReader {
 public:
  // Takes the gateway lock; throws shm::RegionError if another gateway serves the region.
  RegionReader(std::unique_ptr<shm::Region> region, ReaderOptions options = {});
  ~RegionReader();

  // Reaps dead writers (folds them), then merges everything into `out`.
  void Collect(Snapshot& out);
  // Only the reaping half (the periodic timer calls it). Returns the number of slots folded.
  uint32_t Reap();

  const shm::Region& region() const { return *region_; }
  ReaderStats stats() const;

  // Registry cache, valid until the next Collect/Reap (append-only: indices stay valid).
  const std::vector<FamilyInfo>& families() const { return registry_.families(); }
  const std::vector<SeriesInfo>& series() const { return registry_.series(); }
  // Families in exposition order (by name).
  const std::vector<uint32_t>& family_order() const { return registry_.family_order(); }

 private:
  static int TakeGatewayLock(const shm::Region& region);

  mutable std::mutex mu_;
  std::unique_ptr<shm::Region> region_;
  ReaderOptions options_;
  int lock_fd_;  // holds the gateway lock and, while a fold runs, the folded slots' locks
  RegionAccess access_;
  RegistryCache registry_;
  Folder folder_;
  Merger merger_;
};

}  // namespace shmetrics::gateway
