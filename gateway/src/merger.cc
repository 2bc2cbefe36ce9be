#include "merger.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include "shmetrics/shm/family_spec.h"
#include "shmetrics/shm/registry_reader.h"

namespace shmetrics::gateway {
namespace {

using shm::Cell;
using shm::SlotState;
using shm::native::LiveRead;

// A live writer holds a block's seqlock odd for well under a microsecond unless it was preempted,
// killed mid-update, or is hostile. A torn block is retried with yields while the scrape's budget
// lasts, then read once: however many blocks stay torn, a scrape spends at most about the budget.
constexpr uint32_t kTornRetries = 64;
constexpr std::chrono::milliseconds kTornBudget{20};

// Copies exemplar block words [kExemplarValue, kExemplarCells) into `words`; for a live writer's
// block under its seqlock, trying at most `attempts` times (the same protocol as
// shm::native::DecodeLive).
LiveRead ReadExemplarWords(const Cell* e, bool live, uint32_t attempts, uint64_t* words) {
  for (uint32_t attempt = 0; attempt < attempts; ++attempt) {
    if (attempt > 0) std::this_thread::yield();
    const uint64_t s1 = e[shm::kExemplarSeq].load(std::memory_order_acquire);
    if (live && (s1 & 1)) continue;
    for (uint32_t c = shm::kExemplarValue; c < shm::kExemplarCells; ++c)
      words[c] = e[c].load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (!live || e[shm::kExemplarSeq].load(std::memory_order_relaxed) == s1) return LiveRead::kOk;
  }
  return LiveRead::kTorn;
}

// A count the gateway keeps in a system cell of the accumulator bank. The bank is region memory
// like any other: a value that is not a count (NaN, negative, too large) reads as 0, since
// converting it to an integer would be undefined.
uint64_t FoldedCount(const std::vector<double>& cells, uint32_t cell) {
  const double v = cell < cells.size() ? cells[cell] : 0;
  return v >= 0 && v < 0x1p64 ? static_cast<uint64_t>(v) : 0;
}

uint32_t State(const shm::SlotHeader& s) { return s.state.load(std::memory_order_acquire); }

}  // namespace

template <typename Read>
LiveRead Merger::ReadWithTornBudgetLocked(Read&& read) const {
  const LiveRead first = read(1);
  if (first != LiveRead::kTorn) return first;
  return read(std::chrono::steady_clock::now() < torn_deadline_ ? kTornRetries : 1);
}

void Merger::MergeBlocksLocked(const std::vector<Cell*>& pages, bool live, Snapshot& out) {
  for (uint32_t si : registry_.block_series()) {
    const SeriesInfo& s = registry_.series()[si];
    const shm::FamilyView& f = registry_.FamilyOf(s).view;
    const Cell* cells = RegionAccess::CellPtr(pages, s.view.cell_base);
    if (cells == nullptr) continue;
    if (f.native) {
      shm::native::Sparse h;
      const Cell* block = cells + f.native_offset;
      auto decode = [&](uint32_t attempts) {
        if (live) {
          return shm::native::DecodeLive(block, f.native_window, f.native_schema, h, attempts);
        }
        return shm::native::Decode(block, f.native_window, f.native_schema, h) ? LiveRead::kOk
                                                                               : LiveRead::kInvalid;
      };
      const LiveRead read = ReadWithTornBudgetLocked(decode);
      if (read == LiveRead::kTorn) {
        ++access_.stats().torn_reads;
      } else if (read == LiveRead::kInvalid) {
        ++access_.stats().corrupt_blocks;
        access_.LogSkipped("series #" + std::to_string(s.view.index) +
                           ": invalid native histogram block");
      } else if (!h.empty()) {
        if (!out.native[si]) out.native[si] = shm::native::Sparse::At(f.native_schema);
        shm::native::Merge(*out.native[si], h);
      }
    }
    const uint32_t blocks = ExemplarBlocks(f);
    if (blocks == 0) continue;
    std::vector<ExemplarValue>& best = out.exemplars[si];
    best.resize(blocks);
    for (uint32_t b = 0; b < blocks; ++b) {
      MergeExemplarLocked(cells + f.exemplar_offset + b * shm::kExemplarCells, live, s.view.index,
                          best[b]);
    }
  }
}

void Merger::MergeExemplarLocked(const Cell* block, bool live, uint32_t series,
                                 ExemplarValue& best) {
  uint64_t words[shm::kExemplarCells];
  const LiveRead read = ReadWithTornBudgetLocked(
      [&](uint32_t attempts) { return ReadExemplarWords(block, live, attempts, words); });
  if (read != LiveRead::kOk) {
    ++access_.stats().torn_reads;  // never serve a torn exemplar
    return;
  }
  const uint64_t ts = words[shm::kExemplarUnixNs];
  if (ts == 0 || (best.present && ts <= best.unix_ns)) return;
  // Decode the labels; anything malformed is skipped (the region is untrusted).
  unsigned char bytes[shm::kExemplarLabelBytes];
  std::memcpy(bytes, &words[shm::kExemplarLabels], sizeof bytes);
  const uint64_t used = words[shm::kExemplarUsed];
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
    valid = valid && shm::LabelNameProblem(parts[0]).empty() && shm::Utf8Problem(parts[1]).empty();
    if (valid) labels.emplace_back(std::move(parts[0]), std::move(parts[1]));
  }
  if (!valid) {
    ++access_.stats().corrupt_blocks;
    access_.LogSkipped("series #" + std::to_string(series) + ": invalid exemplar labels");
    return;
  }
  best = ExemplarValue{true, AsDouble(words[shm::kExemplarValue]), ts, std::move(labels)};
}

void Merger::MergeLocked(std::span<const WorkerGauge> retained, Snapshot& out) {
  torn_deadline_ = std::chrono::steady_clock::now() + kTornBudget;
  const shm::Region& region = access_.region();
  const shm::RegionHeader& h = region.header();
  const shm::Layout& l = region.layout();
  const std::vector<CellKind>& kinds = registry_.kinds();
  const std::vector<SeriesInfo>& series = registry_.series();
  const uint32_t cell_count = static_cast<uint32_t>(kinds.size());
  const bool has_blocks = !registry_.block_series().empty();
  out.gauge.assign(series.size(), std::nullopt);
  out.worker_gauges.clear();
  out.native.assign(has_blocks ? series.size() : 0, std::nullopt);
  out.exemplars.assign(has_blocks ? series.size() : 0, {});

  const uint64_t commit = h.fold_commit.load(std::memory_order_acquire);
  const uint32_t active = shm::ActiveBankOf(commit);
  std::vector<Cell*>& pages = pages_scratch_;
  // Adds a slot's pages into `cells`; returns the non-zero cells seen, and counts its pages.
  auto add_pages = [&](std::vector<double>& cells, const std::vector<Cell*>& pg,
                       uint64_t* page_count) {
    uint64_t touched = 0;
    for (uint32_t p = 0; p < pg.size(); ++p) {
      if (pg[p] == nullptr) continue;
      if (page_count) ++*page_count;
      const uint32_t first = p * shm::kCellsPerPage;
      if (first >= cell_count) continue;
      const uint32_t n = std::min(shm::kCellsPerPage, cell_count - first);
      double* sum = cells.data() + first;
      const CellKind* kind = kinds.data() + first;
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
  access_.ResolvePages(l.bank_slot(active), pages);
  if (folded_commit_ != commit || folded_cells_.size() != cell_count) {
    folded_cells_.assign(cell_count, 0.0);
    add_pages(folded_cells_, pages, nullptr);
    folded_commit_ = commit;
  }
  out.cells = folded_cells_;
  MergeBlocksLocked(pages, false, out);
  out.folded_writers = FoldedCount(out.cells, shm::kCellFoldedWriters);
  out.folded_workers = FoldedCount(out.cells, shm::kCellFoldedWorkers);

  struct GaugeAcc {
    bool has = false;
    double value = 0;
    uint64_t ts = 0;
  };
  std::vector<GaugeAcc> gauges(series.size());
  // Seed the gauges of non-live aggregate modes with what dead workers left in the accumulator.
  for (uint32_t s : registry_.gauge_series()) {
    const shm::GaugeMode mode = registry_.FamilyOf(series[s]).view.gauge_mode;
    if (shm::IsLiveMode(mode) || shm::IsPerWorkerMode(mode)) continue;
    Cell* c = RegionAccess::CellPtr(pages, series[s].view.cell_base);
    const uint64_t e = c ? c->load(std::memory_order_relaxed) : 0;
    if (e == kGaugeNeverSet) continue;
    gauges[s] = {true, DecodeGauge(e),
                 shm::IsMostRecentMode(mode) ? c[1].load(std::memory_order_relaxed) : 0};
  }

  out.live_workers = out.live_writers = 0;
  out.writer_pages = out.writer_cells_touched = 0;
  std::map<std::string, int> pid_uses;
  for (uint32_t i = 0; i < l.max_slots; ++i) {
    const shm::SlotHeader& slot = *region.slot(i);
    const uint32_t st = State(slot);
    if (st != static_cast<uint32_t>(SlotState::kActive) &&
        st != static_cast<uint32_t>(SlotState::kReleased))
      continue;
    ++out.live_writers;
    access_.ResolvePages(i, pages);
    out.writer_cells_touched += add_pages(out.cells, pages, &out.writer_pages);
    MergeBlocksLocked(pages, true, out);
    if (slot.primary_slot != i) continue;  // gauges live in the process's primary slot only
    ++out.live_workers;
    std::string pid = std::to_string(slot.pid);
    if (pid_uses[pid]++ > 0)
      pid.append("-").append(std::to_string(i));  // same pid in two pid namespaces
    for (uint32_t s : registry_.gauge_series()) {
      const Cell* c = RegionAccess::CellPtr(pages, series[s].view.cell_base);
      const uint64_t e = c ? c->load(std::memory_order_relaxed) : 0;
      if (e == kGaugeNeverSet) continue;
      const double v = DecodeGauge(e);
      GaugeAcc& g = gauges[s];
      switch (CombineOf(registry_.FamilyOf(series[s]).view.gauge_mode)) {
        case GaugeCombine::kPerWorker:
          out.worker_gauges.push_back({s, pid, v});
          break;
        case GaugeCombine::kSum:
          g.value = g.has ? g.value + v : v;
          g.has = true;
          break;
        case GaugeCombine::kMax:
          g.value = g.has ? std::max(g.value, v) : v;
          g.has = true;
          break;
        case GaugeCombine::kMin:
          g.value = g.has ? std::min(g.value, v) : v;
          g.has = true;
          break;
        case GaugeCombine::kMostRecent: {
          const uint64_t ts = c[1].load(std::memory_order_relaxed);
          if (!g.has || ts >= g.ts) g = {true, v, ts};
          break;
        }
      }
    }
  }

  // Dead workers' values in mode `all`, until they expire; a live worker with the same pid wins,
  // and of two dead ones the older.
  for (const WorkerGauge& r : retained) {
    const bool shadowed =
        std::any_of(out.worker_gauges.begin(), out.worker_gauges.end(),
                    [&](const WorkerGauge& w) { return w.series == r.series && w.pid == r.pid; });
    if (!shadowed) out.worker_gauges.push_back(r);
  }
  std::stable_sort(out.worker_gauges.begin(), out.worker_gauges.end(),
                   [](const WorkerGauge& a, const WorkerGauge& b) { return a.series < b.series; });

  for (uint32_t s : registry_.gauge_series()) {
    const shm::GaugeMode mode = registry_.FamilyOf(series[s]).view.gauge_mode;
    const GaugeCombine combine = CombineOf(mode);
    if (combine == GaugeCombine::kPerWorker) continue;
    if (gauges[s].has) {
      out.gauge[s] = gauges[s].value;
    } else if (combine == GaugeCombine::kSum) {
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
