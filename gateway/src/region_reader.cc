#include "region_reader.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>

#include "log.h"
#include "shmetrics/shm/ofd_lock.h"
#include "shmetrics/shm/page_pool.h"
#include "text_format.h"

namespace shmetrics::gateway {
namespace {

using shm::Cell;
using shm::SlotState;

constexpr uint32_t kNone = ~0u;
constexpr uint32_t kMaxCorruptLogs = 20;

// A live writer holds a block's seqlock odd for well under a microsecond unless it was preempted,
// killed mid-update, or is hostile. A torn block is retried with yields while the scrape's budget
// lasts, then read once: however many blocks stay torn, a scrape spends at most about the budget.
constexpr uint32_t kTornRetries = 64;
constexpr std::chrono::milliseconds kTornBudget{20};

// Copies exemplar block words [1, kExemplarCells) into `words`; for a live writer's block under
// its seqlock, trying at most `attempts` times. False when it stayed torn.
bool ReadExemplarWords(const Cell* e, bool live, uint32_t attempts, uint64_t* words) {
  for (uint32_t attempt = 0; attempt < attempts; ++attempt) {
    if (attempt > 0) std::this_thread::yield();
    const uint64_t s1 = e[0].load(std::memory_order_acquire);
    if (live && (s1 & 1)) continue;
    for (uint32_t c = 1; c < shm::kExemplarCells; ++c)
      words[c] = e[c].load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (!live || e[0].load(std::memory_order_relaxed) == s1) return true;
  }
  return false;
}

double AsDouble(uint64_t bits) { return std::bit_cast<double>(bits); }

// A count the gateway keeps in a system cell of the accumulator bank. The bank is region memory
// like any other: a value that is not a count (NaN, negative, too large) reads as 0, since
// converting it to an integer would be undefined.
uint64_t FoldedCount(const std::vector<double>& sums, uint32_t cell) {
  const double v = cell < sums.size() ? sums[cell] : 0;
  return v >= 0 && v < 0x1p64 ? static_cast<uint64_t>(v) : 0;
}
uint64_t AsBits(double v) { return std::bit_cast<uint64_t>(v); }
double DecodeGauge(uint64_t e) { return std::bit_cast<double>(e ^ shm::kGaugeBias); }
uint64_t EncodeGauge(double v) {
  uint64_t bits = std::bit_cast<uint64_t>(v);
  if (v != v) bits = shm::kCanonicalNaN;
  return bits ^ shm::kGaugeBias;
}

uint32_t State(const shm::SlotHeader& s) { return s.state.load(std::memory_order_acquire); }

}  // namespace

RegionReader::RegionReader(std::unique_ptr<shm::Region> region, ReaderOptions options)
    : region_(std::move(region)), options_(options) {
  lock_fd_ = region_->OpenLockDescriptor();
  if (shm::TryLockByte(lock_fd_, shm::kGatewayLockByte) != shm::LockResult::kAcquired) {
    ::close(lock_fd_);
    throw shm::RegionError("region \"" + region_->name() +
                           "\" is already served by another shmetrics-gateway (its lock is held)");
  }
  std::lock_guard lock(mu_);
  RefreshLocked();
  ReapLocked();  // finish whatever a killed predecessor left half done, before serving anything
}

RegionReader::~RegionReader() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the gateway lock and any slot locks we hold
}

ReaderStats RegionReader::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void RegionReader::LogCorrupt(const std::string& what) {
  if (corrupt_logged_ < kMaxCorruptLogs) {
    ++corrupt_logged_;
    LogWarn("region \"" + region_->name() + "\": skipping invalid data: " + what +
            (corrupt_logged_ == kMaxCorruptLogs ? " (further reports suppressed)" : ""));
  }
}

void RegionReader::RefreshLocked() {
  const shm::RegionHeader& h = region_->header();
  const shm::Layout& l = region_->layout();
  const uint32_t family_count =
      std::min(h.family_count.load(std::memory_order_acquire), l.max_families);
  bool new_families = false;
  for (; families_seen_ < family_count; ++families_seen_) {
    shm::ReadProblem problem;
    auto f = shm::ReadFamily(*region_, families_seen_, &problem);
    std::vector<std::string> exposed;
    if (f) {
      // Every name a family exposes must be its own (a gauge "x_total" beside a counter "x" would
      // be one series twice): only a hostile writer makes a clash, skipped like any invalid record.
      exposed = shm::ExposedNames(f->name, f->type);
      for (const std::string& name : exposed) {
        if (exposed_names_.contains(name)) {
          problem.what = "family #" + std::to_string(families_seen_) + " (" + f->name +
                         "): another family already exposes " + name;
          f.reset();
          break;
        }
      }
    }
    if (f) {
      for (uint32_t c = 0; c < shm::kFamilyDropCells; ++c) {
        if (f->drop_cell + c < kinds_.size() && kinds_[f->drop_cell + c] != CellKind::kUnknown) {
          problem.what = "family #" + std::to_string(families_seen_) + " (" + f->name +
                         "): drop cells overlap another family or series";
          f.reset();
          break;
        }
      }
    }
    decoded_families_.push_back(f);
    family_slot_.push_back(kNone);
    if (!f) {
      ++stats_.corrupt_records;
      LogCorrupt(problem.what);
      continue;
    }
    if (kinds_.size() < f->drop_cell + shm::kFamilyDropCells) {
      kinds_.resize(f->drop_cell + shm::kFamilyDropCells, CellKind::kUnknown);
    }
    for (uint32_t c = 0; c < shm::kFamilyDropCells; ++c)
      kinds_[f->drop_cell + c] = CellKind::kCount;
    exposed_names_.insert(exposed.begin(), exposed.end());
    family_slot_[families_seen_] = static_cast<uint32_t>(families_.size());
    families_.push_back(FamilyInfo{std::move(*f), {}});
    new_families = true;
  }
  if (new_families) {
    family_order_.resize(families_.size());
    for (uint32_t i = 0; i < families_.size(); ++i) family_order_[i] = i;
    std::sort(family_order_.begin(), family_order_.end(), [&](uint32_t a, uint32_t b) {
      return families_[a].view.name < families_[b].view.name;
    });
  }

  const uint32_t series_count =
      std::min(h.series_count.load(std::memory_order_acquire), l.max_series);
  for (; series_seen_ < series_count; ++series_seen_) {
    shm::ReadProblem problem;
    auto s = shm::ReadSeries(*region_, series_seen_, decoded_families_, &problem);
    if (!s) {
      ++stats_.corrupt_records;
      LogCorrupt(problem.what);
      continue;
    }
    FamilyInfo& f = families_[family_slot_[s->family]];
    const uint32_t k = f.view.cells_per_series;
    if (kinds_.size() < s->cell_base + k) kinds_.resize(s->cell_base + k, CellKind::kUnknown);
    bool overlaps = false;
    for (uint32_t c = 0; c < k; ++c) overlaps |= kinds_[s->cell_base + c] != CellKind::kUnknown;
    if (overlaps) {  // two series claiming one cell: only a hostile writer does that
      ++stats_.corrupt_records;
      LogCorrupt("series #" + std::to_string(series_seen_) + ": cells overlap another series");
      continue;
    }
    // One label set once per family: a second record of it would be a duplicate sample.
    std::vector<std::string_view> values(s->label_values.begin(), s->label_values.end());
    const uint32_t hash = shm::HashSeries(s->family, values);
    bool duplicate = false;
    for (auto [it, end] = series_by_hash_.equal_range(hash); it != end && !duplicate; ++it) {
      const shm::SeriesView& other = series_[it->second].view;
      duplicate = other.family == s->family && other.label_values == s->label_values;
    }
    if (duplicate) {
      ++stats_.corrupt_records;
      LogCorrupt("series #" + std::to_string(series_seen_) +
                 ": same labels as an earlier series of " + f.view.name);
      continue;
    }
    CellKind kind = CellKind::kSum;
    if (f.view.type == shm::MetricType::kGauge) {
      switch (f.view.gauge_mode) {
        case shm::GaugeMode::kSum:
          kind = CellKind::kGaugeSum;
          break;
        case shm::GaugeMode::kMax:
          kind = CellKind::kGaugeMax;
          break;
        case shm::GaugeMode::kMin:
          kind = CellKind::kGaugeMin;
          break;
        case shm::GaugeMode::kMostRecent:
          kind = CellKind::kGaugeMostRecent;
          break;
        case shm::GaugeMode::kAll:
          kind = CellKind::kGaugeAll;
          break;
        default:
          kind = CellKind::kGaugeLive;
          break;
      }
    }
    for (uint32_t c = 0; c < k; ++c) kinds_[s->cell_base + c] = kind;
    if (kind == CellKind::kGaugeMostRecent) kinds_[s->cell_base + 1] = CellKind::kGaugeTimestamp;
    // Cell encodings (shm/layout.h): counter values, integer counts, double sums.
    switch (f.view.type) {
      case shm::MetricType::kCounter:
        kinds_[s->cell_base] = CellKind::kCounter;
        break;
      case shm::MetricType::kHistogram:
        for (uint32_t c = 0; c <= f.view.bounds.size(); ++c)
          kinds_[s->cell_base + c] = CellKind::kCount;
        break;
      case shm::MetricType::kSummary:
        kinds_[s->cell_base] = CellKind::kCount;
        break;
      case shm::MetricType::kGauge:
        break;
    }
    // Blocks run from the first of native/exemplar offsets to the end of the series.
    const uint32_t first_block =
        f.view.native_offset ? f.view.native_offset : f.view.exemplar_offset;
    if (first_block != 0) {
      for (uint32_t c = first_block; c < k; ++c) kinds_[s->cell_base + c] = CellKind::kBlock;
    }

    SeriesInfo info;
    info.view = std::move(*s);
    for (size_t i = 0; i < f.view.label_names.size(); ++i) {
      if (i) info.text_labels += ',';
      info.text_labels += f.view.label_names[i];
      info.text_labels += "=\"";
      text::AppendLabelValue(info.text_labels, info.view.label_values[i]);
      info.text_labels += '"';
    }
    const auto index = static_cast<uint32_t>(series_.size());
    if (f.view.type == shm::MetricType::kGauge) gauge_series_.push_back(index);
    if (first_block != 0) block_series_.push_back(index);
    if (kind == CellKind::kGaugeAll) all_mode_series_[info.view.cell_base] = index;
    f.series.push_back(index);
    series_by_hash_.emplace(hash, index);
    series_.push_back(std::move(info));
  }
}

void RegionReader::ResolvePages(uint32_t slot, std::vector<Cell*>& pages) {
  const uint32_t n = region_->layout().pages_per_slot;
  pages.assign(n, nullptr);
  const shm::DirectoryEntry* dir = region_->directory(slot);
  if (dir == nullptr) return;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t p = dir[i].load(std::memory_order_acquire);
    if (p == shm::kNoPage) continue;
    pages[i] = region_->page(p);  // nullptr when out of range: a corrupt entry reads as absent
    if (pages[i] == nullptr) {
      ++stats_.corrupt_slots;
      LogCorrupt("slot " + std::to_string(slot) + ": directory entry " + std::to_string(i) +
                 " points outside the page pool");
    }
  }
}

Cell* RegionReader::CellPtr(const std::vector<Cell*>& pages, uint32_t cell) const {
  const uint32_t page = cell / shm::kCellsPerPage;
  if (page >= pages.size() || pages[page] == nullptr) return nullptr;
  return pages[page] + cell % shm::kCellsPerPage;
}

uint32_t RegionReader::Reap() {
  std::lock_guard lock(mu_);
  RefreshLocked();
  return ReapLocked();
}

uint32_t RegionReader::ReapLocked() {
  shm::RegionHeader& h = region_->header();
  const shm::Layout& l = region_->layout();
  const uint64_t commit = h.fold_commit.load(std::memory_order_acquire);
  const uint32_t active = commit & 1;
  const uint64_t epoch = commit >> 1;

  std::vector<uint32_t> dead;      // to fold now
  std::vector<uint32_t> finished;  // folded before a crash: only zero and free
  if (options_.before_liveness_probe) options_.before_liveness_probe();
  for (uint32_t i = 0; i < l.max_slots; ++i) {
    shm::SlotHeader& s = *region_->slot(i);
    const uint32_t st = State(s);
    if (st == static_cast<uint32_t>(SlotState::kFree)) continue;
    if (st > static_cast<uint32_t>(SlotState::kFolding)) {
      ++stats_.corrupt_slots;
      LogCorrupt("slot " + std::to_string(i) + ": unknown state " + std::to_string(st));
      continue;
    }
    // A live process holds its slots' locks; the kernel dropped them if it died.
    const shm::LockResult r = shm::TryLockByte(lock_fd_, shm::kSlotLockBase + i);
    if (r == shm::LockResult::kBusy) continue;
    if (r == shm::LockResult::kError) {
      LogWarn("slot " + std::to_string(i) + ": lock probe failed: " + std::strerror(errno));
      continue;
    }
    if (st == static_cast<uint32_t>(SlotState::kFolding) && s.fold_epoch <= epoch) {
      finished.push_back(i);
    } else {
      dead.push_back(i);
    }
  }

  auto release = [&](uint32_t i) { shm::UnlockByte(lock_fd_, shm::kSlotLockBase + i); };
  auto free_slot = [&](uint32_t i) {
    ZeroSlotLocked(i);
    shm::SlotHeader& s = *region_->slot(i);
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
  RefreshLocked();

  const uint32_t inactive = 1 - active;
  if (!PrepareBankLocked(inactive, active, dead)) {
    ++stats_.fold_failures;
    LogWarn("region \"" + region_->name() + "\": no free pages for the accumulator; " +
            std::to_string(dead.size()) +
            " dead writers stay unfolded (still counted) until "
            "pages are available; enlarge the region");
    for (uint32_t i : dead) release(i);
    return static_cast<uint32_t>(finished.size());
  }

  const uint64_t new_epoch = epoch + 1;
  for (uint32_t i : dead) {
    shm::SlotHeader& s = *region_->slot(i);
    s.fold_epoch = new_epoch;
    s.state.store(static_cast<uint32_t>(SlotState::kFolding), std::memory_order_release);
  }

  // Inactive bank := active bank + dead slots.
  std::vector<Cell*> src, dst;
  ResolvePages(l.bank_slot(active), src);
  ResolvePages(l.bank_slot(inactive), dst);
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
    if (region_->slot(i)->primary_slot == i) ++workers;
  }
  auto add = [&](uint32_t cell, double v) {
    Cell* c = CellPtr(dst, cell);  // page 0 of the bank: PrepareBankLocked made sure it exists
    if (c != nullptr)
      c->store(AsBits(AsDouble(c->load(std::memory_order_relaxed)) + v), std::memory_order_relaxed);
  };
  add(shm::kCellFoldedWriters, static_cast<double>(dead.size()));
  add(shm::kCellFoldedWorkers, workers);

  h.fold_commit.store(new_epoch << 1 | inactive, std::memory_order_release);  // the commit point
  ++stats_.fold_rounds;
  for (uint32_t i : dead) free_slot(i);
  return static_cast<uint32_t>(dead.size() + finished.size());
}

bool RegionReader::PrepareBankLocked(uint32_t inactive, uint32_t active,
                                     const std::vector<uint32_t>& dead) {
  const shm::Layout& l = region_->layout();
  shm::RegionHeader& h = region_->header();
  shm::DirectoryEntry* dir = region_->directory(l.bank_slot(inactive));
  const shm::DirectoryEntry* active_dir = region_->directory(l.bank_slot(active));
  std::vector<bool> need(l.pages_per_slot, false);
  need[0] = true;  // system cells
  for (uint32_t p = 0; p < l.pages_per_slot; ++p)
    need[p] = need[p] || active_dir[p].load() != shm::kNoPage;
  for (uint32_t i : dead) {
    const shm::DirectoryEntry* d = region_->directory(i);
    for (uint32_t p = 0; p < l.pages_per_slot; ++p)
      need[p] = need[p] || d[p].load() != shm::kNoPage;
  }
  for (uint32_t p = 0; p < l.pages_per_slot; ++p) {
    if (!need[p] || region_->page(dir[p].load(std::memory_order_acquire)) != nullptr) continue;
    const uint32_t page = shm::TakePage(h, l.page_count);
    if (page == shm::kNoPage) return false;
    dir[p].store(page, std::memory_order_release);
  }
  return true;
}

void RegionReader::FoldSlotLocked(uint32_t slot, uint32_t bank) {
  std::vector<Cell*> from, to;
  ResolvePages(slot, from);
  ResolvePages(region_->layout().bank_slot(bank), to);
  const shm::SlotHeader& header = *region_->slot(slot);
  const auto now = std::chrono::steady_clock::now();
  for (uint32_t p = 0; p < from.size(); ++p) {
    if (from[p] == nullptr || to[p] == nullptr) continue;
    for (uint32_t c = 0; c < shm::kCellsPerPage; ++c) {
      const uint32_t cell = p * shm::kCellsPerPage + c;
      if (cell < shm::kSystemCells || cell >= kinds_.size()) continue;
      const uint64_t v = from[p][c].load(std::memory_order_relaxed);
      if (v == 0) continue;  // untouched (0.0 and "never set" both encode as 0)
      Cell& acc = to[p][c];
      const uint64_t a = acc.load(std::memory_order_relaxed);
      switch (kinds_[cell]) {
        case CellKind::kSum:
          acc.store(AsBits(AsDouble(a) + AsDouble(v)), std::memory_order_relaxed);
          break;
        case CellKind::kCount:
          acc.store(a + v, std::memory_order_relaxed);
          break;
        case CellKind::kCounter:
          acc.store(shm::AddCounterCells(a, v), std::memory_order_relaxed);
          break;
        case CellKind::kGaugeSum:
          acc.store(EncodeGauge((a ? DecodeGauge(a) : 0.0) + DecodeGauge(v)),
                    std::memory_order_relaxed);
          break;
        case CellKind::kGaugeMax:
          if (a == 0 || DecodeGauge(v) > DecodeGauge(a)) acc.store(v, std::memory_order_relaxed);
          break;
        case CellKind::kGaugeMin:
          if (a == 0 || DecodeGauge(v) < DecodeGauge(a)) acc.store(v, std::memory_order_relaxed);
          break;
        case CellKind::kGaugeMostRecent: {
          // Value and timestamp are adjacent cells of one series, never split across pages.
          if (c + 1 >= shm::kCellsPerPage) break;
          const uint64_t ts = from[p][c + 1].load(std::memory_order_relaxed);
          if (ts > to[p][c + 1].load(std::memory_order_relaxed)) {
            acc.store(v, std::memory_order_relaxed);
            to[p][c + 1].store(ts, std::memory_order_relaxed);
          }
          break;
        }
        case CellKind::kGaugeAll:
          // Kept a while in gateway memory (not crash-safe, by design: it is only a gauge).
          if (auto it = all_mode_series_.find(cell); it != all_mode_series_.end()) {
            retained_.push_back({it->second, std::to_string(header.pid), DecodeGauge(v),
                                 now + options_.dead_gauge_retention});
          }
          break;
        case CellKind::kGaugeTimestamp:
        case CellKind::kGaugeLive:
        case CellKind::kUnknown:
        case CellKind::kBlock:  // below, per series
          break;  // live-mode gauges die with their worker; unknown cells belong to no valid series
      }
    }
  }
  FoldBlocksLocked(from, to);
}

void RegionReader::FoldBlocksLocked(const std::vector<Cell*>& from, const std::vector<Cell*>& to) {
  for (uint32_t si : block_series_) {
    const SeriesInfo& s = series_[si];
    const shm::FamilyView& f = families_[family_slot_[s.view.family]].view;
    const Cell* src = CellPtr(from, s.view.cell_base);
    Cell* dst = CellPtr(to, s.view.cell_base);
    if (src == nullptr || dst == nullptr) continue;
    if (f.native) {
      shm::native::Sparse acc, dead;
      const bool ok_acc =
          shm::native::Decode(dst + f.native_offset, f.native_window, f.native_schema, acc);
      const bool ok_dead =
          shm::native::Decode(src + f.native_offset, f.native_window, f.native_schema, dead);
      if (!ok_acc || !ok_dead) {
        ++stats_.corrupt_slots;
        LogCorrupt("series #" + std::to_string(s.view.index) + ": invalid native histogram block");
      }
      if (ok_dead && !dead.empty()) {
        if (!ok_acc) acc = shm::native::Sparse::At(f.native_schema);
        shm::native::Merge(acc, dead);
        shm::native::Encode(std::move(acc), dst + f.native_offset, f.native_window);
      }
    }
    if (f.exemplar_offset != 0) {
      const uint32_t blocks =
          f.type == shm::MetricType::kCounter ? 1 : static_cast<uint32_t>(f.bounds.size()) + 1;
      for (uint32_t b = 0; b < blocks; ++b) {
        const Cell* e = src + f.exemplar_offset + b * shm::kExemplarCells;
        Cell* a = dst + f.exemplar_offset + b * shm::kExemplarCells;
        // Keep the most recent; a dead writer's block is quiescent, so no seqlock is needed.
        if (e[2].load(std::memory_order_relaxed) > a[2].load(std::memory_order_relaxed)) {
          for (uint32_t c = 1; c < shm::kExemplarCells; ++c)
            a[c].store(e[c].load(std::memory_order_relaxed), std::memory_order_relaxed);
        }
      }
    }
  }
}

void RegionReader::ZeroSlotLocked(uint32_t slot) {
  std::vector<Cell*> pages;
  ResolvePages(slot, pages);
  for (Cell* p : pages) {
    if (p == nullptr) continue;
    for (uint32_t c = 0; c < shm::kCellsPerPage; ++c) p[c].store(0, std::memory_order_relaxed);
  }
}

void RegionReader::MergeBlocksLocked(const std::vector<Cell*>& pages, bool live, Snapshot& out) {
  for (uint32_t si : block_series_) {
    const SeriesInfo& s = series_[si];
    const shm::FamilyView& f = families_[family_slot_[s.view.family]].view;
    const Cell* cells = CellPtr(pages, s.view.cell_base);
    if (cells == nullptr) continue;
    if (f.native) {
      shm::native::Sparse h;
      const Cell* block = cells + f.native_offset;
      using shm::native::LiveRead;
      LiveRead read = LiveRead::kOk;
      if (!live) {
        read = shm::native::Decode(block, f.native_window, f.native_schema, h) ? LiveRead::kOk
                                                                               : LiveRead::kInvalid;
      } else {
        read = shm::native::DecodeLive(block, f.native_window, f.native_schema, h, 1);
        if (read == LiveRead::kTorn) {
          read = shm::native::DecodeLive(block, f.native_window, f.native_schema, h,
                                         TornRetriesLocked());
        }
      }
      if (read == LiveRead::kTorn) {
        ++stats_.torn_reads;
      } else if (read == LiveRead::kInvalid) {
        ++stats_.corrupt_slots;
        LogCorrupt("series #" + std::to_string(s.view.index) + ": invalid native histogram block");
      } else if (!h.empty()) {
        if (!out.native[si]) out.native[si] = shm::native::Sparse::At(f.native_schema);
        shm::native::Merge(*out.native[si], h);
      }
    }
    if (f.exemplar_offset == 0) continue;
    const uint32_t blocks =
        f.type == shm::MetricType::kCounter ? 1 : static_cast<uint32_t>(f.bounds.size()) + 1;
    std::vector<ExemplarValue>& best = out.exemplars[si];
    best.resize(blocks);
    for (uint32_t b = 0; b < blocks; ++b) {
      const Cell* e = cells + f.exemplar_offset + b * shm::kExemplarCells;
      uint64_t words[shm::kExemplarCells];
      const bool stable = !live ? (ReadExemplarWords(e, false, 1, words), true)
                                : ReadExemplarWords(e, true, 1, words) ||
                                      ReadExemplarWords(e, true, TornRetriesLocked(), words);
      if (!stable) {
        ++stats_.torn_reads;  // never serve a torn exemplar
        continue;
      }
      const uint64_t ts = words[2];
      if (ts == 0 || (best[b].present && ts <= best[b].unix_ns)) continue;
      // Decode the labels; anything malformed is skipped (the region is untrusted).
      unsigned char bytes[shm::kExemplarLabelBytes];
      std::memcpy(bytes, &words[4], sizeof bytes);
      const uint64_t used = words[3];
      std::vector<std::pair<std::string, std::string>> labels;
      bool valid = used <= sizeof bytes;
      for (size_t i = 0; valid && i < used;) {
        std::string parts[2];
        for (std::string& part : parts) {
          if (i >= used || i + 1 + bytes[i] > used) {
            valid = false;
            break;
          }
          part.assign(reinterpret_cast<const char*>(bytes + i + 1), bytes[i]);
          i += 1 + bytes[i];
        }
        valid =
            valid && shm::LabelNameProblem(parts[0]).empty() && shm::Utf8Problem(parts[1]).empty();
        if (valid) labels.emplace_back(std::move(parts[0]), std::move(parts[1]));
      }
      if (!valid) {
        ++stats_.corrupt_slots;
        LogCorrupt("series #" + std::to_string(s.view.index) + ": invalid exemplar labels");
        continue;
      }
      best[b] = ExemplarValue{true, AsDouble(words[1]), ts, std::move(labels)};
    }
  }
}

uint32_t RegionReader::TornRetriesLocked() const {
  return std::chrono::steady_clock::now() < torn_deadline_ ? kTornRetries : 1;
}

void RegionReader::Collect(Snapshot& out) {
  std::lock_guard lock(mu_);
  RefreshLocked();
  ReapLocked();
  MergeLocked(out);
}

void RegionReader::MergeLocked(Snapshot& out) {
  torn_deadline_ = std::chrono::steady_clock::now() + kTornBudget;
  const shm::RegionHeader& h = region_->header();
  const shm::Layout& l = region_->layout();
  const uint32_t cells = static_cast<uint32_t>(kinds_.size());
  out.gauge.assign(series_.size(), std::nullopt);
  out.worker_gauges.clear();
  out.native.assign(block_series_.empty() ? 0 : series_.size(), std::nullopt);
  out.exemplars.assign(block_series_.empty() ? 0 : series_.size(), {});

  const uint64_t commit = h.fold_commit.load(std::memory_order_acquire);
  const uint32_t active = commit & 1;
  std::vector<Cell*>& pages = pages_scratch_;
  // Adds a slot's pages into `sums`; returns the non-zero cells seen, and counts its pages.
  auto add_pages = [&](std::vector<double>& sums, const std::vector<Cell*>& pg,
                       uint64_t* page_count) {
    uint64_t touched = 0;
    for (uint32_t p = 0; p < pg.size(); ++p) {
      if (pg[p] == nullptr) continue;
      if (page_count) ++*page_count;
      const uint32_t first = p * shm::kCellsPerPage;
      if (first >= cells) continue;
      const uint32_t n = std::min(shm::kCellsPerPage, cells - first);
      double* sum = sums.data() + first;
      const CellKind* kind = kinds_.data() + first;
      for (uint32_t c = 0; c < n; ++c) {
        const uint64_t bits = pg[p][c].load(std::memory_order_relaxed);
        touched += bits != 0;
        sum[c] += kind[c] == CellKind::kCounter ? shm::DecodeCounterCell(bits)
                  : kind[c] == CellKind::kCount ? static_cast<double>(bits)
                                                : AsDouble(bits);
      }
    }
    return touched;
  };

  // Accumulator bank: counters, histograms, drop cells, and the kept values of non-live gauges.
  ResolvePages(l.bank_slot(active), pages);
  if (folded_commit_ != commit || folded_sums_.size() != cells) {
    folded_sums_.assign(cells, 0.0);
    add_pages(folded_sums_, pages, nullptr);
    folded_commit_ = commit;
  }
  out.sums = folded_sums_;
  MergeBlocksLocked(pages, false, out);
  out.folded_writers = FoldedCount(out.sums, shm::kCellFoldedWriters);
  out.folded_workers = FoldedCount(out.sums, shm::kCellFoldedWorkers);

  struct GaugeAcc {
    bool has = false;
    double value = 0;
    uint64_t ts = 0;
  };
  std::vector<GaugeAcc> gauges(series_.size());
  // Seed the non-live gauges with what dead workers left in the accumulator.
  for (uint32_t s : gauge_series_) {
    const uint32_t base = series_[s].view.cell_base;
    const CellKind kind = base < kinds_.size() ? kinds_[base] : CellKind::kUnknown;
    if (kind != CellKind::kGaugeSum && kind != CellKind::kGaugeMax && kind != CellKind::kGaugeMin &&
        kind != CellKind::kGaugeMostRecent) {
      continue;
    }
    Cell* c = CellPtr(pages, base);
    const uint64_t e = c ? c->load(std::memory_order_relaxed) : 0;
    if (e == 0) continue;
    gauges[s] = {true, DecodeGauge(e),
                 kind == CellKind::kGaugeMostRecent ? c[1].load(std::memory_order_relaxed) : 0};
  }

  out.live_workers = out.live_writers = 0;
  out.writer_pages = out.writer_cells_touched = 0;
  std::map<std::string, int> pid_uses;
  for (uint32_t i = 0; i < l.max_slots; ++i) {
    const shm::SlotHeader& slot = *region_->slot(i);
    const uint32_t st = State(slot);
    if (st != static_cast<uint32_t>(SlotState::kActive) &&
        st != static_cast<uint32_t>(SlotState::kReleased))
      continue;
    ++out.live_writers;
    ResolvePages(i, pages);
    out.writer_cells_touched += add_pages(out.sums, pages, &out.writer_pages);
    MergeBlocksLocked(pages, true, out);
    if (slot.primary_slot != i) continue;  // gauges live in the process's primary slot only
    ++out.live_workers;
    std::string pid = std::to_string(slot.pid);
    if (pid_uses[pid]++ > 0)
      pid.append("-").append(std::to_string(i));  // same pid in two pid namespaces
    for (uint32_t s : gauge_series_) {
      const uint32_t base = series_[s].view.cell_base;
      const Cell* c = CellPtr(pages, base);
      const uint64_t e = c ? c->load(std::memory_order_relaxed) : 0;
      if (e == 0) continue;
      const double v = DecodeGauge(e);
      GaugeAcc& g = gauges[s];
      const shm::GaugeMode mode = families_[family_slot_[series_[s].view.family]].view.gauge_mode;
      switch (mode) {
        case shm::GaugeMode::kAll:
        case shm::GaugeMode::kLiveAll:
          out.worker_gauges.push_back({s, pid, v});
          break;
        case shm::GaugeMode::kSum:
        case shm::GaugeMode::kLiveSum:
          g.value = g.has ? g.value + v : v;
          g.has = true;
          break;
        case shm::GaugeMode::kMax:
        case shm::GaugeMode::kLiveMax:
          g.value = g.has ? std::max(g.value, v) : v;
          g.has = true;
          break;
        case shm::GaugeMode::kMin:
        case shm::GaugeMode::kLiveMin:
          g.value = g.has ? std::min(g.value, v) : v;
          g.has = true;
          break;
        case shm::GaugeMode::kMostRecent:
        case shm::GaugeMode::kLiveMostRecent: {
          const uint64_t ts = c[1].load(std::memory_order_relaxed);
          if (!g.has || ts >= g.ts) g = {true, v, ts};
          break;
        }
      }
    }
  }

  // Dead workers' values in mode `all`, until they expire; a live worker with the same pid wins.
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(retained_, [&](const Retained& r) { return r.expires <= now; });
  for (const Retained& r : retained_) {
    const bool shadowed =
        std::any_of(out.worker_gauges.begin(), out.worker_gauges.end(),
                    [&](const WorkerGauge& w) { return w.series == r.series && w.pid == r.pid; });
    if (!shadowed) out.worker_gauges.push_back({r.series, r.pid, r.value});
  }
  std::stable_sort(out.worker_gauges.begin(), out.worker_gauges.end(),
                   [](const WorkerGauge& a, const WorkerGauge& b) { return a.series < b.series; });

  for (uint32_t s : gauge_series_) {
    const shm::FamilyView& f = families_[family_slot_[series_[s].view.family]].view;
    if (shm::IsPerWorkerMode(f.gauge_mode)) continue;
    if (gauges[s].has) {
      out.gauge[s] = gauges[s].value;
    } else if (f.gauge_mode == shm::GaugeMode::kSum || f.gauge_mode == shm::GaugeMode::kLiveSum) {
      out.gauge[s] = 0.0;  // a sum over no workers is 0; max/min/mostrecent of nothing is absent
    }
  }

  out.pages_used = h.pages_used.load(std::memory_order_relaxed);
  out.dropped_no_slot = h.dropped_no_slot.load(std::memory_order_relaxed);
  out.dropped_no_page = h.dropped_no_page.load(std::memory_order_relaxed);
  out.dropped_region_full = h.dropped_region_full.load(std::memory_order_relaxed);
  out.registration_errors = h.registration_errors.load(std::memory_order_relaxed);
  out.dropped_exemplars = h.dropped_exemplars.load(std::memory_order_relaxed);
}

}  // namespace shmetrics::gateway
