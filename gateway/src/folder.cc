#include "folder.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "log.h"
#include "shmetrics/shm/native_histogram.h"
#include "shmetrics/shm/ofd_lock.h"
#include "shmetrics/shm/page_pool.h"

namespace shmetrics::gateway {
namespace {

using shm::Cell;
using shm::SlotState;

// A probe fails only when the kernel refuses the lock call (say, out of lock records); it is
// counted every time, logged the first times and then ever more sparsely.
constexpr uint64_t kProbeErrorsInFull = 10;

uint32_t State(const shm::SlotHeader& s) { return s.state.load(std::memory_order_acquire); }

}  // namespace

std::span<const WorkerGauge> Folder::RetainedGaugesLocked(
    std::chrono::steady_clock::time_point now) {
  const auto expired = static_cast<size_t>(
      std::find_if(retained_until_.begin(), retained_until_.end(),
                   [&](std::chrono::steady_clock::time_point until) { return until > now; }) -
      retained_until_.begin());
  retained_.erase(retained_.begin(), retained_.begin() + expired);
  retained_until_.erase(retained_until_.begin(), retained_until_.begin() + expired);
  return retained_;
}

uint32_t Folder::ReapLocked() {
  shm::Region& region = access_.region();
  shm::RegionHeader& h = region.header();
  const shm::Layout& l = region.layout();
  const uint64_t commit = h.fold_commit.load(std::memory_order_acquire);
  const uint32_t active = shm::ActiveBankOf(commit);
  const uint64_t epoch = shm::FoldEpochOf(commit);

  std::vector<uint32_t> dead;      // to fold now
  std::vector<uint32_t> finished;  // folded before a crash: only zero and free
  if (options_.before_liveness_probe) options_.before_liveness_probe();
  for (uint32_t i = 0; i < l.max_slots; ++i) {
    shm::SlotHeader& s = *region.slot(i);
    const uint32_t st = State(s);
    if (st == static_cast<uint32_t>(SlotState::kFree)) continue;
    if (st > static_cast<uint32_t>(SlotState::kFolding)) {
      ++access_.stats().corrupt_slots;
      access_.LogSkipped("slot " + std::to_string(i) + ": unknown state " + std::to_string(st));
      continue;
    }
    // A live process holds its slots' locks; the kernel dropped them if it died.
    const shm::LockResult r = shm::TryLockByte(lock_fd_, shm::kSlotLockBase + i);
    if (r == shm::LockResult::kBusy) continue;
    if (r == shm::LockResult::kError) {  // kept as live: folding a live writer counts it twice
      const int err = errno;
      const uint64_t n = ++access_.stats().probe_errors;
      if (LogThisOccurrence(n, kProbeErrorsInFull)) {
        LogWarn("region \"" + region.name() + "\": slot " + std::to_string(i) +
                ": lock probe failed (failure " + std::to_string(n) + "): " + std::strerror(err));
      }
      continue;
    }
    if (st == static_cast<uint32_t>(SlotState::kFolding) &&
        shm::FoldCommitted(s.fold_epoch, commit)) {
      finished.push_back(i);
    } else {
      dead.push_back(i);
    }
  }

  auto release = [&](uint32_t i) { shm::UnlockByte(lock_fd_, shm::kSlotLockBase + i); };
  auto free_slot = [&](uint32_t i) {
    ZeroSlotLocked(i);
    shm::SlotHeader& s = *region.slot(i);
    s.pid = 0;
    s.tid = 0;
    s.fold_epoch = 0;
    s.state.store(static_cast<uint32_t>(SlotState::kFree), std::memory_order_release);
    release(i);
  };
  for (uint32_t i : finished) free_slot(i);
  if (dead.empty()) return static_cast<uint32_t>(finished.size());
  // A dead writer may have registered series after the caller's refresh and written them before
  // it died. Its registrations were all published before its lock was released (the kernel
  // drops the lock only after the process is gone), so refreshing now, with the slot locks held,
  // knows every cell the fold must carry over before the slots are zeroed.
  registry_.RefreshLocked();

  const uint32_t inactive = 1 - active;
  if (!PrepareBankLocked(inactive, active, dead)) {
    ++access_.stats().fold_failures;
    LogWarn("region \"" + region.name() + "\": no free pages for the accumulator; " +
            std::to_string(dead.size()) +
            " dead writers stay unfolded (still counted) until "
            "pages are available; enlarge the region");
    for (uint32_t i : dead) release(i);
    return static_cast<uint32_t>(finished.size());
  }

  const uint64_t new_epoch = epoch + 1;
  for (uint32_t i : dead) {
    shm::SlotHeader& s = *region.slot(i);
    s.fold_epoch = new_epoch;
    s.state.store(static_cast<uint32_t>(SlotState::kFolding), std::memory_order_release);
  }

  // Inactive bank := active bank + dead slots.
  std::vector<Cell*> src, dst;
  access_.ResolvePages(l.bank_slot(active), src);
  access_.ResolvePages(l.bank_slot(inactive), dst);
  for (uint32_t p = 0; p < l.pages_per_slot; ++p) {
    if (dst[p] == nullptr) continue;
    for (uint32_t c = 0; c < shm::kCellsPerPage; ++c) {
      dst[p][c].store(src[p] ? src[p][c].load(std::memory_order_relaxed) : 0,
                      std::memory_order_relaxed);
    }
  }
  uint32_t workers = 0;
  for (uint32_t i : dead) {
    FoldSlotLocked(i, inactive);
    if (region.slot(i)->primary_slot == i) ++workers;
  }
  auto add = [&](uint32_t cell, double v) {
    Cell* c = RegionAccess::CellPtr(
        dst, cell);  // page 0 of the bank: PrepareBankLocked made sure it exists
    if (c != nullptr)
      c->store(AsBits(AsDouble(c->load(std::memory_order_relaxed)) + v), std::memory_order_relaxed);
  };
  add(shm::kCellFoldedWriters, static_cast<double>(dead.size()));
  add(shm::kCellFoldedWorkers, workers);

  h.fold_commit.store(shm::EncodeFoldCommit(new_epoch, inactive),
                      std::memory_order_release);  // the commit point
  ++access_.stats().fold_rounds;
  for (uint32_t i : dead) free_slot(i);
  return static_cast<uint32_t>(dead.size() + finished.size());
}

bool Folder::PrepareBankLocked(uint32_t inactive, uint32_t active,
                               const std::vector<uint32_t>& dead) {
  shm::Region& region = access_.region();
  const shm::Layout& l = region.layout();
  shm::RegionHeader& h = region.header();
  shm::DirectoryEntry* dir = region.directory(l.bank_slot(inactive));
  const shm::DirectoryEntry* active_dir = region.directory(l.bank_slot(active));
  std::vector<bool> need(l.pages_per_slot, false);
  need[0] = true;  // system cells
  for (uint32_t p = 0; p < l.pages_per_slot; ++p)
    need[p] = need[p] || active_dir[p].load() != shm::kNoPage;
  for (uint32_t i : dead) {
    const shm::DirectoryEntry* d = region.directory(i);
    for (uint32_t p = 0; p < l.pages_per_slot; ++p)
      need[p] = need[p] || d[p].load() != shm::kNoPage;
  }
  for (uint32_t p = 0; p < l.pages_per_slot; ++p) {
    if (!need[p] || region.page(dir[p].load(std::memory_order_acquire)) != nullptr) continue;
    const uint32_t page = shm::TakePage(h, l.page_count);
    if (page == shm::kNoPage) return false;
    dir[p].store(page, std::memory_order_release);
  }
  return true;
}

void Folder::FoldSlotLocked(uint32_t slot, uint32_t bank) {
  std::vector<Cell*> from, to;
  access_.ResolvePages(slot, from);
  access_.ResolvePages(access_.region().layout().bank_slot(bank), to);
  const std::vector<CellKind>& kinds = registry_.kinds();
  for (uint32_t p = 0; p < from.size(); ++p) {
    if (from[p] == nullptr || to[p] == nullptr) continue;
    for (uint32_t c = 0; c < shm::kCellsPerPage; ++c) {
      const uint32_t cell = p * shm::kCellsPerPage + c;
      if (cell < shm::kSystemCells || cell >= kinds.size()) continue;
      const uint64_t v = from[p][c].load(std::memory_order_relaxed);
      if (v == 0) continue;  // untouched (0.0 and "never set" both encode as 0)
      Cell& acc = to[p][c];
      const uint64_t a = acc.load(std::memory_order_relaxed);
      switch (kinds[cell]) {
        case CellKind::kSum:
          acc.store(AsBits(AsDouble(a) + AsDouble(v)), std::memory_order_relaxed);
          break;
        case CellKind::kCount:
          acc.store(a + v, std::memory_order_relaxed);
          break;
        case CellKind::kCounter:
          acc.store(shm::AddCounterCells(a, v), std::memory_order_relaxed);
          break;
        case CellKind::kGauge:    // below, per series
        case CellKind::kBlock:    // below, per series
        case CellKind::kUnknown:  // belongs to no valid series
          break;
      }
    }
  }
  FoldGaugesLocked(from, to, access_.region().slot(slot)->pid);
  FoldBlocksLocked(from, to);
}

void Folder::FoldGaugesLocked(const std::vector<Cell*>& from, const std::vector<Cell*>& to,
                              int32_t pid) {
  const auto now = std::chrono::steady_clock::now();
  for (uint32_t si : registry_.gauge_series()) {
    const SeriesInfo& s = registry_.series()[si];
    const shm::GaugeMode mode = registry_.FamilyOf(s).view.gauge_mode;
    if (shm::IsLiveMode(mode)) continue;  // live-mode gauges die with their worker
    const uint32_t base = s.view.cell_base;
    const Cell* src = RegionAccess::CellPtr(from, base);
    Cell* acc = RegionAccess::CellPtr(to, base);
    if (src == nullptr || acc == nullptr) continue;
    const uint64_t v = src->load(std::memory_order_relaxed);
    if (v == kGaugeNeverSet) continue;  // never set by this worker
    const uint64_t a = acc->load(std::memory_order_relaxed);
    switch (CombineOf(mode)) {
      case GaugeCombine::kPerWorker:
        retained_.push_back({si, std::to_string(pid), DecodeGauge(v)});
        retained_until_.push_back(now + options_.dead_gauge_retention);
        break;
      case GaugeCombine::kSum:
        acc->store(EncodeGauge(DecodeGauge(a) + DecodeGauge(v)), std::memory_order_relaxed);
        break;
      case GaugeCombine::kMax:
        if (a == kGaugeNeverSet || DecodeGauge(v) > DecodeGauge(a))
          acc->store(v, std::memory_order_relaxed);
        break;
      case GaugeCombine::kMin:
        if (a == kGaugeNeverSet || DecodeGauge(v) < DecodeGauge(a))
          acc->store(v, std::memory_order_relaxed);
        break;
      case GaugeCombine::kMostRecent: {
        // Value and timestamp are adjacent cells of one series, never split across pages.
        if (base % shm::kCellsPerPage + 1 >= shm::kCellsPerPage) break;
        const uint64_t ts = src[1].load(std::memory_order_relaxed);
        if (ts > acc[1].load(std::memory_order_relaxed)) {
          acc->store(v, std::memory_order_relaxed);
          acc[1].store(ts, std::memory_order_relaxed);
        }
        break;
      }
    }
  }
}

void Folder::FoldBlocksLocked(const std::vector<Cell*>& from, const std::vector<Cell*>& to) {
  for (uint32_t si : registry_.block_series()) {
    const SeriesInfo& s = registry_.series()[si];
    const shm::FamilyView& f = registry_.FamilyOf(s).view;
    const Cell* src = RegionAccess::CellPtr(from, s.view.cell_base);
    Cell* dst = RegionAccess::CellPtr(to, s.view.cell_base);
    if (src == nullptr || dst == nullptr) continue;
    if (f.native) {
      shm::native::Sparse acc, dead;
      const bool ok_acc =
          shm::native::Decode(dst + f.native_offset, f.native_window, f.native_schema, acc);
      const bool ok_dead =
          shm::native::Decode(src + f.native_offset, f.native_window, f.native_schema, dead);
      if (!ok_acc || !ok_dead) {
        ++access_.stats().corrupt_blocks;
        access_.LogSkipped("series #" + std::to_string(s.view.index) +
                           ": invalid native histogram block");
      }
      if (ok_dead && !dead.empty()) {
        if (!ok_acc) acc = shm::native::Sparse::At(f.native_schema);
        shm::native::Merge(acc, dead);
        shm::native::Encode(std::move(acc), dst + f.native_offset, f.native_window);
      }
    }
    for (uint32_t b = 0; b < ExemplarBlocks(f); ++b) {
      const Cell* e = src + f.exemplar_offset + b * shm::kExemplarCells;
      Cell* a = dst + f.exemplar_offset + b * shm::kExemplarCells;
      // Keep the most recent; a dead writer's block is quiescent, so no seqlock is needed.
      if (e[shm::kExemplarUnixNs].load(std::memory_order_relaxed) >
          a[shm::kExemplarUnixNs].load(std::memory_order_relaxed)) {
        for (uint32_t c = shm::kExemplarValue; c < shm::kExemplarCells; ++c)
          a[c].store(e[c].load(std::memory_order_relaxed), std::memory_order_relaxed);
      }
    }
  }
}

void Folder::ZeroSlotLocked(uint32_t slot) {
  std::vector<Cell*> pages;
  access_.ResolvePages(slot, pages);
  for (Cell* p : pages) {
    if (p == nullptr) continue;
    for (uint32_t c = 0; c < shm::kCellsPerPage; ++c) p[c].store(0, std::memory_order_relaxed);
  }
}
}  // namespace shmetrics::gateway
