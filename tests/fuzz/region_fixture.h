// The region the region reader fuzzer attacks: a small real region, written by real client
// processes, then corrupted by each fuzz input and restored to its pristine bytes before the next.
//
// Built once per fuzz process (RegionFixture::Get), under a name unique to the process
// ("shmetrics-fuzz-<pid>-<n>"), removed at exit; names left behind by fuzz processes that crashed
// are removed when the next one starts. What the writers leave (every metric type: counters with
// and without exemplars, gauges in all ten modes and special values, classic histograms with
// exemplars and negative bounds, native histograms small enough to reduce their schema, native +
// classic + exemplars together, summaries, a family over its series cap):
//   - a worker that wrote and died before a first fold, which a RegionReader then folded: the
//     accumulator bank holds its values;
//   - a live worker (a child process that stays blocked until the fuzzer exits, so it holds its
//     slots' locks), one of whose threads wrote and exited: a kReleased slot;
//   - a worker that wrote and died after the fold, with a second thread still kActive at death:
//     two dead slots the next RegionReader folds.
//
// An input is a list of operations on the mapping (ApplyInput). Every record is
//   [tag u8] [sel u8] [off u16 little-endian] [n = (tag >> 4) + 1 data bytes]
// and tag & 15 picks the operation:
//   0..6  copy the data over a section at (sel << 16 | off) % size: 0 header, 1 family records,
//         2 series records, 3 hash table, 4 string arena (the used part), 5 slot headers,
//         6 page directories
//   7     copy the data into used page (sel % pages used) + 1, at byte off % 4096
//   8     copy the data anywhere: (sel << 16 | off) % region size
//   9     set slot sel % (slots + 2)'s state: data[0] % 5 (4 is invalid), or the u32 when n >= 4
//   10    copy record (off & 255) over record (off >> 8) of the families (sel % 3 == 0), series
//         (1) or slot headers (2); a destination one past the last record appends it
//   11    point a string at a new arena string holding the data: sel even: family (off & 255)'s
//         name, help, unit or label name (off >> 8: 0, 1, 2, 3+); odd: series (off & 255)'s label
//         value (off >> 8)
//   12    set a header word to the data (little-endian): sel % 6 picks family_count,
//         series_count, cells_used, strings_used, pages_used, fold_commit
//   13..15 as 8
// Only `ready` is restored after the operations: an unready region makes attach wait 5 s for its
// creator (by design), which would only slow the fuzzer down.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shmetrics/shm/region.h"

namespace shmetrics::fuzz {

class RegionFixture {
 public:
  // The process's fixture, built on first call. Aborts (a broken fuzz setup, not a finding) if the
  // writers fail.
  static RegionFixture& Get();

  const std::string& name() const { return name_; }
  // Puts back the bytes the writers left.
  void Restore();
  // Applies an input's operations to the mapping (see the header comment).
  void ApplyInput(const uint8_t* data, size_t size);

 private:
  RegionFixture();
  void Populate();

  std::string name_;
  std::unique_ptr<shm::Region> region_;  // the creator's mapping, kept for patching
  char* base_ = nullptr;
  size_t bytes_ = 0;
  std::vector<char> pristine_;
  shm::Layout layout_;
  uint32_t family_count_ = 0, series_count_ = 0, strings_used_ = 0, pages_used_ = 0;
  pid_t live_worker_ = -1;
  int live_hold_fd_ = -1;  // its read end waits for our exit
};

}  // namespace shmetrics::fuzz
