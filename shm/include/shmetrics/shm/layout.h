// The byte layout of a shmetrics region. Every struct that lives in shared memory is defined here,
// and kLayoutVersion changes with any change to them.
//
// A region is one fixed-size POSIX shared-memory object:
//
//   RegionHeader | FamilyRecord[max_families] | SeriesRecord[max_series] | hash[hash_buckets]
//   | string arena | SlotHeader[max_slots + 2] | directory[(max_slots + 2) * pages_per_slot]
//   | pages[page_count]
//
// Cells are 8-byte atomics addressed by a global *cell index*: each series owns the contiguous
// range [cell_base, cell_base + cells_per_series) of that index space. Every writer (a thread of a
// worker process) has a slot whose directory maps cell pages to 4 KiB pages of the page pool, so a
// writer's memory grows with the pages of series it touches, never with slots x all series.
// The two slots past max_slots are the accumulator banks: the gateway's single-writer store of
// what dead writers counted. The fold protocol that fills them is defined below, at SlotState;
// gateway/src/folder.h implements it.
//
// Invariants:
//  - Inside the region there are offsets and indices only, never pointers.
//  - Registry records (families, series, strings) are append-only: written under the registry lock,
//    then published by a release store of the matching count. A record at index < count is
//    immutable. A writer killed mid-registration leaves unpublished bytes that the next holder of
//    the lock overwrites: there is nothing to repair.
//  - A value cell has exactly one writer: the thread that owns the slot (counter, histogram), or
//    the process that owns the primary slot (gauges, atomic RMW among its threads), or the gateway
//    (accumulator banks, and a dead slot while folding it). No cache line is written by two
//    processes.
//  - Slot ownership and liveness are open-file-description (OFD) record locks on the region file,
//    which the kernel drops when the owning process dies: no pid is ever used to decide liveness.
//  - No lock of any kind lives in the region.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace shmetrics::shm {

inline constexpr uint64_t kMagic = 0x4349'5254'454d'4853ull;  // "SHMETRIC" as little-endian bytes
inline constexpr uint32_t kLayoutVersion = 3;

inline constexpr uint32_t kCellBytes = 8;
inline constexpr uint32_t kCellsPerPage = 512;
inline constexpr uint32_t kPageBytes = kCellsPerPage * kCellBytes;  // 4 KiB
inline constexpr uint32_t kNoPage = 0;  // page index 0 is never handed out

inline constexpr uint32_t kMaxLabels = 16;
inline constexpr uint32_t kMaxBuckets = 128;  // classic histogram bounds, +Inf not included
inline constexpr uint32_t kMaxNameBytes = 256;
inline constexpr uint32_t kMaxHelpBytes = 4096;
inline constexpr uint32_t kMaxLabelValueBytes = 4096;

// Cells [0, kSystemCells) are reserved. Only the accumulator banks write them.
inline constexpr uint32_t kCellFoldedWriters = 0;  // slots folded (threads and processes)
inline constexpr uint32_t kCellFoldedWorkers = 1;  // primary slots folded (worker processes)
inline constexpr uint32_t kSystemCells = 8;

// Each family's dropped-update counters (per writer, folded like counters), at drop_cell + reason.
inline constexpr uint32_t kDropSeriesLimit = 0;   // a child past the family's series cap
inline constexpr uint32_t kDropInvalidValue = 1;  // a negative or NaN counter increment
inline constexpr uint32_t kFamilyDropCells = 2;

// Byte offsets of the OFD record locks taken on the region file. They are advisory: the locked
// bytes carry no meaning as data.
inline constexpr int64_t kGatewayLockByte = 0;   // held by the one gateway serving the region
inline constexpr int64_t kRegistryLockByte = 1;  // held while registering families and series
inline constexpr int64_t kSlotLockBase = 64;     // + slot index: held by the slot's process

// Summaries carry count and sum only: quantiles cannot be merged across processes (use a native
// histogram and histogram_quantile()).
enum class MetricType : uint8_t { kCounter = 1, kGauge = 2, kHistogram = 3, kSummary = 4 };
// The type's word, as exposition TYPE lines and error messages spell it; "unknown" for a value
// that is none of them (only a corrupt record holds such).
constexpr const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
    case MetricType::kSummary:
      return "summary";
  }
  return "unknown";
}

// How the gateway merges a gauge over workers. "live" modes drop a dead worker's value; the others
// keep its last value in the accumulator (all: for a retention window, in the gateway).
enum class GaugeMode : uint8_t {
  kAll = 1,      // one series per worker, label pid; dead workers' last values retained a while
  kLiveAll = 2,  // one series per live worker, label pid
  kSum = 3,
  kLiveSum = 4,  // the default
  kMax = 5,
  kLiveMax = 6,
  kMin = 7,
  kLiveMin = 8,
  kMostRecent = 9,
  kLiveMostRecent = 10,
};

inline constexpr bool IsLiveMode(GaugeMode m) {
  return m == GaugeMode::kLiveAll || m == GaugeMode::kLiveSum || m == GaugeMode::kLiveMax ||
         m == GaugeMode::kLiveMin || m == GaugeMode::kLiveMostRecent;
}
inline constexpr bool IsMostRecentMode(GaugeMode m) {
  return m == GaugeMode::kMostRecent || m == GaugeMode::kLiveMostRecent;
}
inline constexpr bool IsPerWorkerMode(GaugeMode m) {
  return m == GaugeMode::kAll || m == GaugeMode::kLiveAll;
}

// Cell encodings (the writer and the gateway must agree):
//  - counter value: an integer while every amount added was whole (Inc is then an integer add,
//    no float round trip on the cell's load-add-store chain); after a fractional amount, the
//    double's bits with bit 63 set. A counter is never negative, so its sign bit is free.
//  - count (histogram buckets, summary count, drop counters): an integer.
//  - sum (histogram and summary sums): double bits.
//  - gauge: see kGaugeBias below.
inline constexpr uint64_t kCounterFloatTag = 1ull << 63;
inline constexpr double DecodeCounterCell(uint64_t bits) {
  return (bits & kCounterFloatTag) ? std::bit_cast<double>(bits & ~kCounterFloatTag)
                                   : static_cast<double>(bits);
}
inline constexpr uint64_t EncodeCounterFloat(double v) {
  return std::bit_cast<uint64_t>(v) | kCounterFloatTag;
}
// The sum of two counter cells, staying integer while both are and it fits.
inline constexpr uint64_t AddCounterCells(uint64_t a, uint64_t b) {
  if (!((a | b) & kCounterFloatTag) && ((a + b) & kCounterFloatTag) == 0 && a + b >= a)
    return a + b;
  return EncodeCounterFloat(DecodeCounterCell(a) + DecodeCounterCell(b));
}

// Gauge cells hold the value's bits XOR kGaugeBias, so that a zeroed cell, kGaugeNeverSet, means
// "this worker never set it" (min/max/mostrecent/all must not see a phantom 0). NaN is
// canonicalised on store, so no value encodes to kGaugeNeverSet.
// The rule for reading: DecodeGauge(kGaugeNeverSet) is 0.0, the value a gauge starts at (so Add
// on a fresh cell adds to 0). A merge that must not count an unset worker compares the cell with
// kGaugeNeverSet before decoding it.
inline constexpr uint64_t kGaugeBias = 0x7ff4'5348'4d45'5452ull;  // a signalling NaN payload
inline constexpr uint64_t kCanonicalNaN = 0x7ff8'0000'0000'0000ull;
inline constexpr uint64_t kGaugeNeverSet = 0;
inline constexpr uint64_t EncodeGauge(double v) {
  return (v != v ? kCanonicalNaN : std::bit_cast<uint64_t>(v)) ^ kGaugeBias;
}
inline constexpr double DecodeGauge(uint64_t cell) {
  return cell == kGaugeNeverSet ? 0.0 : std::bit_cast<double>(cell ^ kGaugeBias);
}

// FamilyRecord::flags
inline constexpr uint8_t kFamilyNative = 1;     // histogram with a native (exponential) block
inline constexpr uint8_t kFamilyExemplars = 2;  // counter / classic buckets carry exemplars

// An exemplar block: the most recent exemplar of one counter or classic bucket, written by the
// series' writer under a seqlock (odd while it writes; readers of a live writer retry), cell by
// cell:
inline constexpr uint32_t kExemplarSeq = 0;     // seqlock
inline constexpr uint32_t kExemplarValue = 1;   // the observed value (double bits)
inline constexpr uint32_t kExemplarUnixNs = 2;  // when it was written; 0 = no exemplar yet
inline constexpr uint32_t kExemplarUsed = 3;    // bytes of the label area in use
inline constexpr uint32_t kExemplarLabels = 4;  // first cell of the label area
// The label area holds the label pairs back to back, each part as a length byte then its bytes:
// (u8 name length, name, u8 value length, value)...; bytes past kExemplarUsed are zero. Each
// cell holds 8 of those bytes in memory order (memcpy of the byte array into the cells).
inline constexpr uint32_t kExemplarLabelBytes = 128;  // OpenMetrics' limit on names + values
inline constexpr uint32_t kExemplarCells = kExemplarLabels + kExemplarLabelBytes / kCellBytes;

namespace native {
// The header of a native histogram block (the bucket math is in native_histogram.h). One writer
// owns the block; it holds kSeqCell odd while it moves the window or lowers the schema.
inline constexpr uint32_t kSeqCell = 0;      // seqlock
inline constexpr uint32_t kSchemaCell = 1;   // schema + kSchemaBias; 0 = no bucketed observation
inline constexpr uint32_t kOffsetsCell = 2;  // first bucket index per sign, see PackOffsets
inline constexpr uint32_t kZeroCell = 3;     // zero-bucket count (double bits)
inline constexpr uint32_t kHeaderCells = 4;  // first bucket cell: W positive, then W negative
inline constexpr uint64_t kSchemaBias = 16;  // keeps every valid schema cell != 0
// The offsets word: low 32 bits the first positive bucket index, high 32 the first negative one,
// each an int32 in two's complement.
inline constexpr uint64_t PackOffsets(int32_t positive, int32_t negative) {
  return uint64_t{static_cast<uint32_t>(positive)} | uint64_t{static_cast<uint32_t>(negative)}
                                                         << 32;
}
inline constexpr int32_t FirstPositive(uint64_t offsets) {
  return static_cast<int32_t>(static_cast<uint32_t>(offsets));
}
inline constexpr int32_t FirstNegative(uint64_t offsets) {
  return static_cast<int32_t>(static_cast<uint32_t>(offsets >> 32));
}
inline constexpr uint32_t BlockCells(uint32_t window) { return kHeaderCells + 2 * window; }
}  // namespace native

// Where the parts of one series' cell range are, relative to its cell_base.
//  counter:   [value (counter encoding)] [exemplar block]?
//  gauge:     [encoded value] [unix ns of the last write, most-recent modes]
//  summary:   [count, sum]
//  histogram: [count per finite bound..., +Inf count, sum (double)] [native block]?
//             [exemplar block per classic bucket incl. +Inf]?
struct SeriesLayout {
  uint32_t cells = 0;
  uint32_t native_offset = 0;    // 0: none
  uint32_t exemplar_offset = 0;  // 0: none
};
inline constexpr SeriesLayout ComputeSeriesLayout(MetricType type, GaugeMode mode,
                                                  uint32_t bucket_count, uint8_t flags,
                                                  uint32_t native_window) {
  SeriesLayout l;
  switch (type) {
    case MetricType::kCounter:
      l.cells = 1;
      if (flags & kFamilyExemplars) {
        l.exemplar_offset = l.cells;
        l.cells += kExemplarCells;
      }
      break;
    case MetricType::kGauge:
      l.cells = IsMostRecentMode(mode) ? 2 : 1;
      break;
    case MetricType::kSummary:
      l.cells = 2;  // count, sum (double bits)
      break;
    case MetricType::kHistogram:
      l.cells = bucket_count + 2;
      if (flags & kFamilyNative) {
        l.native_offset = l.cells;
        l.cells += native::BlockCells(native_window);
      }
      if (flags & kFamilyExemplars) {
        l.exemplar_offset = l.cells;
        l.cells += (bucket_count + 1) * kExemplarCells;
      }
      break;
  }
  return l;
}

// The most finite bounds a classic histogram with exemplars (and no native part) can have: one
// series' cells must fit one page. Bindings use it to register a family with more bounds
// without exemplars instead of refusing it.
inline constexpr uint32_t kMaxExemplarHistogramBounds =
    (kCellsPerPage - 2 - kExemplarCells) / (1 + kExemplarCells);
static_assert(ComputeSeriesLayout(MetricType::kHistogram, GaugeMode::kAll,
                                  kMaxExemplarHistogramBounds, kFamilyExemplars, 0)
                      .cells <= kCellsPerPage &&
              ComputeSeriesLayout(MetricType::kHistogram, GaugeMode::kAll,
                                  kMaxExemplarHistogramBounds + 1, kFamilyExemplars, 0)
                      .cells > kCellsPerPage);

using Cell = std::atomic<uint64_t>;

// A string in the arena: byte offset from the arena start, and length.
struct StringRef {
  uint32_t offset;
  uint32_t length;
};

// What a region can hold. max_families, max_series, max_slots, max_cells and string_bytes are
// chosen (RegionOptions); the rest is derived from them and the size (ComputeLayout), and an
// attacher derives it again and compares.
struct RegionCapacities {
  uint32_t max_families = 0;
  uint32_t max_series = 0;
  uint32_t max_slots = 0;       // writer slots; two more follow for the accumulator banks
  uint32_t max_cells = 0;       // size of the cell index space, a multiple of kCellsPerPage
  uint32_t pages_per_slot = 0;  // max_cells / kCellsPerPage
  uint32_t page_count = 0;      // pool size, page 0 included and never used
  uint32_t hash_buckets = 0;    // power of two, >= 2 * max_series
  uint32_t string_bytes = 0;
  bool operator==(const RegionCapacities&) const = default;
};

// Where each section starts: byte offsets from the region start.
struct RegionOffsets {
  uint64_t families_offset = 0;
  uint64_t series_offset = 0;
  uint64_t hash_offset = 0;
  uint64_t strings_offset = 0;
  uint64_t slots_offset = 0;
  uint64_t directory_offset = 0;
  uint64_t pages_offset = 0;
  bool operator==(const RegionOffsets&) const = default;
};

struct alignas(64) RegionHeader {
  // Identity, written once by the creator before `ready` is published.
  uint64_t magic;
  uint32_t layout_version;
  uint32_t header_bytes;
  uint64_t region_bytes;
  uint64_t generation;  // random, new each time the region is created
  uint64_t created_unix_ns;

  RegionCapacities capacities;
  RegionOffsets offsets;

  std::atomic<uint32_t> ready;  // kReadyValue once the creator has written everything above
  uint32_t reserved0;

  // Registry watermarks: written under the registry lock, read with acquire by everyone.
  alignas(64) std::atomic<uint32_t> family_count;
  std::atomic<uint32_t> series_count;
  std::atomic<uint32_t> cells_used;
  std::atomic<uint32_t> strings_used;

  // Page pool bump pointer, advanced only by TakePage (page_pool.h); pages never return to the
  // pool, they stay with the slot that took them and are zeroed for its next occupant.
  alignas(64) std::atomic<uint32_t> pages_used;

  // Degenerate-path drop counters, shared by all processes: only touched when a writer has no slot
  // or no page, never on the normal path.
  alignas(64) std::atomic<uint64_t> dropped_no_slot;
  std::atomic<uint64_t> dropped_no_page;
  std::atomic<uint64_t>
      dropped_region_full;                  // updates to families/series the region had no room for
  std::atomic<uint64_t> dropped_exemplars;  // exemplars too long, or on a family without storage
  std::atomic<uint64_t> registration_errors;  // families or series refused for lack of room

  // The fold protocol's commit word (see SlotState): the active accumulator bank and the last
  // committed fold epoch, EncodeFoldCommit(epoch, bank). Written only by the gateway.
  alignas(64) std::atomic<uint64_t> fold_commit;
};
inline constexpr uint32_t kReadyValue = 0x52454459;  // "REDY"

struct FamilyRecord {
  StringRef name;  // base name: a counter's "_total" is not part of it
  StringRef help;
  StringRef unit;          // empty when none
  uint32_t labels_offset;  // arena offset of label_count StringRefs (label names)
  uint32_t bounds_offset;  // arena offset of bucket_count doubles (histograms)
  uint32_t bucket_count;
  uint32_t cells_per_series;
  uint32_t max_series;  // per-family cardinality cap
  uint32_t drop_cell;   // first of kFamilyDropCells counters of this family's dropped updates
  uint64_t created_unix_ns;
  MetricType type;
  GaugeMode gauge_mode;  // kLiveSum for non-gauges
  uint8_t label_count;
  uint8_t flags;                       // kFamilyNative | kFamilyExemplars
  std::atomic<uint32_t> series_count;  // registered series, for the cap (under registry lock)
  int32_t native_schema;               // the schema writers start at (-4..8)
  uint32_t native_window;              // buckets per sign each writer keeps
  double native_zero_threshold;
  uint32_t native_offset;  // see SeriesLayout
  uint32_t exemplar_offset;
  uint64_t reserved1;
};

struct SeriesRecord {
  uint32_t family;
  uint32_t cell_base;
  uint32_t values_offset;  // arena offset of label_count StringRefs (label values)
  uint32_t hash;
  uint64_t created_unix_ns;
};

// The fold protocol: how a dead writer's cells reach the accumulator exactly once, although the
// gateway may be killed at any instruction.
//
// A slot's state machine (SlotHeader::state, release stores, acquire loads):
//   kFree -> kActive     a writer process, holding the slot's OFD lock (kSlotLockBase + slot)
//                        and having re-read kFree under it; it holds the lock while it owns the
//                        slot (a primary slot: until the process dies).
//   kActive -> kReleased the owning process, when a thread's (non-primary) slot ends with its
//                        thread: it stores kReleased, then unlocks.
//   kActive | kReleased -> kFolding
//                        the gateway (holding kGatewayLockByte), once TryLockByte on the slot's
//                        lock returned kAcquired: the owner released it or died (the kernel drops
//                        a dead process's locks). kBusy and kError mean alive. The gateway keeps
//                        the slot lock until the slot is kFree.
//   kFolding -> kFree    the gateway, after the commit below and after zeroing the slot's pages
//                        (the pages stay with the slot for its next occupant).
// A fold round, by the gateway, with commit word c = fold_commit:
//   1. every slot to fold gets fold_epoch = FoldEpochOf(c) + 1, then state kFolding;
//   2. the inactive bank is rebuilt whole: active bank + the folded slots' cells;
//   3. one release store fold_commit = EncodeFoldCommit(FoldEpochOf(c) + 1, inactive bank): the
//      commit point, which also makes the rebuilt bank the active one for every reader;
//   4. the slots are zeroed and set kFree (step "kFolding -> kFree").
// A round that cannot start (no free page for the inactive bank) changes no state and unlocks
// the slots: they stay counted where they are until a later round.
// Crashes: before 3, the active bank is untouched and the slots are still kActive, kReleased or
// kFolding with an epoch not yet committed, so the next gateway folds them again from scratch.
// After 3, FoldCommitted(fold_epoch, c) holds for them and the next gateway only zeroes and frees
// them. Either way each slot is counted once and counters never go backwards. Writers never see
// a kFolding slot: they claim only kFree ones, under the slot's lock.
enum class SlotState : uint32_t {
  kFree = 0,
  kActive = 1,    // owned by a live writer (its process holds the slot's lock)
  kReleased = 2,  // the owning thread exited; the process released the slot for folding
  kFolding = 3,   // the gateway is folding it into the accumulator (see fold_epoch)
};

// The commit word: bit 0 the active bank (the slot bank_slot(bank) = max_slots + bank), bits
// 1..63 the last committed fold epoch (0: nothing folded yet).
inline constexpr uint64_t EncodeFoldCommit(uint64_t epoch, uint32_t active_bank) {
  return epoch << 1 | (active_bank & 1);
}
inline constexpr uint32_t ActiveBankOf(uint64_t commit) { return commit & 1; }
inline constexpr uint64_t FoldEpochOf(uint64_t commit) { return commit >> 1; }
// True when a kFolding slot's fold was committed before a crash: zero and free it, never fold it.
inline constexpr bool FoldCommitted(uint64_t slot_fold_epoch, uint64_t commit) {
  return slot_fold_epoch <= FoldEpochOf(commit);
}

struct alignas(64) SlotHeader {
  std::atomic<uint32_t> state;
  uint32_t primary_slot;  // the slot of this writer's process (== own index for the primary)
  std::atomic<uint64_t> occupancy;  // +1 at every claim: tells a new occupant from the last one
  uint64_t fold_epoch;              // the fold round that set kFolding; see FoldCommitted
  uint64_t claimed_unix_ns;
  int32_t pid;  // as the writer sees it: for labels and logs, never for liveness
  int32_t tid;
  uint64_t reserved[3];
};

using DirectoryEntry = std::atomic<uint32_t>;  // page index or kNoPage

// Layout checks: the region is read by processes built separately, so the layout must not
// depend on anything but these definitions.
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(Cell) == kCellBytes && alignof(Cell) == kCellBytes);
static_assert(sizeof(RegionHeader) == 448 && alignof(RegionHeader) == 64);
static_assert(sizeof(RegionCapacities) == 32 && sizeof(RegionOffsets) == 56);
static_assert(offsetof(RegionHeader, capacities) == 40 && offsetof(RegionHeader, offsets) == 72 &&
              offsetof(RegionHeader, ready) == 128);
static_assert(sizeof(FamilyRecord) == 96);
static_assert(sizeof(SeriesRecord) == 24);
static_assert(sizeof(SlotHeader) == 64);
static_assert(sizeof(StringRef) == 8);
static_assert(std::is_standard_layout_v<RegionHeader> && std::is_standard_layout_v<FamilyRecord> &&
              std::is_standard_layout_v<SeriesRecord> && std::is_standard_layout_v<SlotHeader>);
static_assert(kCellsPerPage * kCellBytes == 4096);
// Encodings: no gauge value encodes as "never set" (the only bits that would, kGaugeBias, are a
// NaN and NaN is canonicalised), and the commit word keeps bank and epoch apart.
static_assert(DecodeGauge(kGaugeNeverSet) == 0.0 && DecodeGauge(EncodeGauge(0.0)) == 0.0 &&
              EncodeGauge(0.0) != kGaugeNeverSet && DecodeGauge(EncodeGauge(-2.5)) == -2.5);
static_assert(EncodeGauge(std::bit_cast<double>(kGaugeBias)) == (kCanonicalNaN ^ kGaugeBias));
static_assert(ActiveBankOf(EncodeFoldCommit(5, 1)) == 1 &&
              FoldEpochOf(EncodeFoldCommit(5, 1)) == 5);
static_assert(kExemplarCells == 20 && native::kHeaderCells == 4);

}  // namespace shmetrics::shm
