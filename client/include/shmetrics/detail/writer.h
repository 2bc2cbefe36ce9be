// What the inline write path needs to find this thread's cells. Visible because the hot path is
// inline; not API.
//
// Performance rules for everything in this directory:
//  1. An update is: one TLS load, one page-table load, then a relaxed load + store of the cell
//     (counter, histogram: this thread is the cell's only writer, so no lock prefix is needed) or
//     one atomic RMW (gauge: threads of one process share the process's gauge cells).
//  2. Anything else (first touch of a page, claiming a slot after start or fork, running out of
//     room) is in an out-of-line slow path that never throws, never blocks and counts every drop.
//  3. Hint only branches that are definitely unusual (drops, invalid values, first touch).
//
// The TLS model is left to the compiler, on purpose. Linked into an executable (the static
// library, or a shared library the program links against at start), `tls_pages[region]` is one
// %fs-relative load. In a module loaded with dlopen() (a Python extension) it is a
// __tls_get_addr call per update (a few ns; -mtls-dialect=gnu2 makes it a cheaper descriptor
// call). Pinning initial-exec would make the dlopen case as cheap, but glibc serves initial-exec
// TLS of a dlopen'ed module from a small static surplus (hundreds of bytes, shared by every such
// module), which this library's 1.5 KiB could exhaust: dlopen() would then fail outright.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "shmetrics/shm/clock.h"
#include "shmetrics/shm/layout.h"
#include "shmetrics/shm/native_histogram.h"

namespace shmetrics {

// One label of an exemplar, e.g. {"trace_id", "4bf92f3577b34da6"}. Names and values together are
// at most 128 bytes (OpenMetrics); a longer exemplar is dropped and counted.
struct ExemplarLabel {
  std::string_view name;
  std::string_view value;
};

}  // namespace shmetrics

namespace shmetrics::detail {

// Regions one process may attach. Each costs 24 bytes of TLS per thread: tls_pages here, and in
// writer.cc the thread's slot and its next claim time (1.5 KiB per thread in all).
inline constexpr int kMaxRegions = 64;

// One entry of a process-local page table of one slot: table[i] is this process's address of
// the page that holds cells [i * kCellsPerPage, (i + 1) * kCellsPerPage), or nullptr.
using PageEntry = std::atomic<shm::Cell*>;

// This thread's page table per region (counters, histograms), kept in TLS itself rather than
// behind a writer object: one dependent load less on every update. Reset in the child after fork().
extern constinit thread_local PageEntry* tls_pages[kMaxRegions];
// This process's primary page table per region (gauges). Reset in the child after fork().
extern std::atomic<PageEntry*> process_pages[kMaxRegions];

// Slow paths: claim a slot, map or allocate the page, or hand back a sink (and count the drop).
// The returned pointer is valid for the series' whole cell range (ranges never cross a page).
shm::Cell* ThreadCellsSlow(uint32_t region, uint32_t cell_base) noexcept;
shm::Cell* ProcessCellsSlow(uint32_t region, uint32_t cell_base) noexcept;
// An update that cannot be stored: counted in the family's drop cell (this thread's), or in the
// region header when even that does not exist.
void CountDrop(uint32_t region, uint32_t drop_cell) noexcept;
using shm::NowUnixNs;

// Hot path: noexcept, no allocation, no lock, no syscall.
inline shm::Cell* ThreadCells(uint32_t region, uint32_t cell_base) noexcept {
  if (PageEntry* pages = tls_pages[region]; __builtin_expect(pages != nullptr, 1)) {
    // Relaxed: the entry holds an address inside the mapping, nothing else is published through
    // it. This thread filled it, or (the primary slot's table) a gauge write of another thread did.
    shm::Cell* page = pages[cell_base / shm::kCellsPerPage].load(std::memory_order_relaxed);
    if (__builtin_expect(page != nullptr, 1)) return page + cell_base % shm::kCellsPerPage;
  }
  return ThreadCellsSlow(region, cell_base);
}

// Acquire: the table and its entries are published by whichever thread of the process claimed the
// primary slot or mapped the page.
inline shm::Cell* ProcessCells(uint32_t region, uint32_t cell_base) noexcept {
  if (PageEntry* pages = process_pages[region].load(std::memory_order_acquire);
      __builtin_expect(pages != nullptr, 1)) {
    shm::Cell* page = pages[cell_base / shm::kCellsPerPage].load(std::memory_order_acquire);
    if (__builtin_expect(page != nullptr, 1)) return page + cell_base % shm::kCellsPerPage;
  }
  return ProcessCellsSlow(region, cell_base);
}

// Native histogram parameters a handle carries (see shm/native_histogram.h for the block).
struct NativeParams {
  uint32_t offset = 0;  // of the block within the series
  uint32_t window = 0;  // 0: not native
  int32_t schema = 0;   // the family's starting schema
  double zero_threshold = 0;
};

using ExemplarLabelView = ExemplarLabel;

// Writes an exemplar block under its seqlock; `block` nullptr (family without exemplars) or
// labels over 128 bytes count a dropped exemplar instead.
void WriteExemplar(uint32_t region, shm::Cell* block, double value, const ExemplarLabelView* labels,
                   size_t count) noexcept;
// The native part of an observation that does not land in the current window (first
// observation, window move, schema reduction). Out of line; this thread is the block's writer.
void NativeObserveSlow(shm::Cell* block, double v, const NativeParams& p) noexcept;
int32_t NativeBucketKey(double a, int32_t schema) noexcept;

// A double's bits mapped so that unsigned integer order is numeric order (sign-magnitude to
// offset binary: negatives have every bit flipped, positives the sign bit set). -0.0 sorts just
// below +0.0, so bounds are keyed after -0.0 becomes +0.0. Not meaningful for NaN.
inline uint64_t OrderKey(double v) noexcept {
  const uint64_t bits = std::bit_cast<uint64_t>(v);
  const uint64_t negative = static_cast<uint64_t>(static_cast<int64_t>(bits) >> 63);
  return bits ^ (negative | (uint64_t{1} << 63));
}

// Histogram bucket search past its first compare: `steps` - 1 more compares from bucket `i`, or
// a binary search of everything above `i` when steps is kSearchAllBuckets. `keys` ends with the
// UINT64_MAX sentinel at index n.
inline constexpr uint32_t kSearchAllBuckets = 0xffffffffu;
inline uint32_t FinishBucketSearch(const uint64_t* keys, uint32_t n, uint32_t steps, uint64_t key,
                                   uint32_t i) noexcept {
  if (steps != kSearchAllBuckets) {
    for (uint32_t s = 1; s < steps; ++s) i += key > keys[i];
    return i;
  }
  uint32_t hi = n;  // the first key >= `key` lies in [i, n]
  while (i < hi) {
    const uint32_t mid = i + (hi - i) / 2;
    if (key <= keys[mid])
      hi = mid;
    else
      i = mid + 1;
  }
  return i;
}

// Single-writer counter updates (see the counter encoding in shm/layout.h).
inline void CounterInc(shm::Cell& cell) noexcept {
  const uint64_t x = cell.load(std::memory_order_relaxed);
  if (__builtin_expect((x & shm::kCounterFloatTag) != 0, 0)) {
    cell.store(shm::EncodeCounterFloat(shm::DecodeCounterCell(x) + 1.0), std::memory_order_relaxed);
    return;
  }
  cell.store(x + 1, std::memory_order_relaxed);
}
inline void CounterAdd(shm::Cell& cell, double v) noexcept {  // v >= 0, checked by the caller
  const uint64_t x = cell.load(std::memory_order_relaxed);
  if (!(x & shm::kCounterFloatTag) && v < 9007199254740992.0) {  // 2^53: exact as an integer
    const auto n = static_cast<uint64_t>(v);
    if (static_cast<double>(n) == v && !((x + n) & shm::kCounterFloatTag)) {
      cell.store(x + n, std::memory_order_relaxed);
      return;
    }
  }
  cell.store(shm::EncodeCounterFloat(shm::DecodeCounterCell(x) + v), std::memory_order_relaxed);
}
// Single-writer +1 of an integer count cell.
inline void CountInc(shm::Cell& cell) noexcept {
  cell.store(cell.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// Single-writer add: this thread is the only writer of `cell`, so load + store is atomic enough
// and costs no lock prefix. Readers see either the old or the new value, never a torn one.
inline void SingleWriterAdd(shm::Cell& cell, double v) noexcept {
  const double old = std::bit_cast<double>(cell.load(std::memory_order_relaxed));
  cell.store(std::bit_cast<uint64_t>(old + v), std::memory_order_relaxed);
}

// The native part of Histogram::Observe: one bucket increment when `v` lands in the window.
inline void NativeObserve(shm::Cell* block, double v, const NativeParams& p) noexcept {
  if (v != v) return;  // NaN: counted by the classic part (+Inf bucket, sum) only
  const double a = v < 0 ? -v : v;
  if (a <= p.zero_threshold) return SingleWriterAdd(block[shm::native::kZeroCell], 1.0);
  const uint64_t schema_cell = block[shm::native::kSchemaCell].load(std::memory_order_relaxed);
  // One unsigned compare: 0 (no observation yet) and any corrupt value take the slow path.
  if (__builtin_expect(shm::native::ValidSchemaCell(schema_cell), 1)) {
    const int32_t key = NativeBucketKey(a, shm::native::SchemaOfCell(schema_cell));
    const uint64_t offsets = block[shm::native::kOffsetsCell].load(std::memory_order_relaxed);
    const auto first = static_cast<uint32_t>(v > 0 ? shm::native::FirstPositive(offsets)
                                                   : shm::native::FirstNegative(offsets));
    const uint32_t i = static_cast<uint32_t>(key) - first;  // modular: no signed overflow
    if (i < p.window) {
      return SingleWriterAdd(block[shm::native::kHeaderCells + (v > 0 ? 0 : p.window) + i], 1.0);
    }
  }
  NativeObserveSlow(block, v, p);
}

// The gauge encoding (shm/layout.h): a never-set cell decodes as 0.0, so Add starts from 0.
using shm::DecodeGauge;
using shm::EncodeGauge;

}  // namespace shmetrics::detail
