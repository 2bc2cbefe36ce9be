#include "shmetrics/shm/native_histogram.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <thread>
#include <vector>

namespace shmetrics::shm::native {
namespace {

// table[s][i] = 2^(i / 2^s) / 2 for schema s in 1..8: the mantissa boundaries of one octave.
// Fixed arrays filled at load time, so BucketKey (on the writer's path) never allocates nor
// waits for a first-use guard.
struct Bounds {
  Bounds() {
    for (int s = 1; s <= kMaxSchema; ++s) {
      const int n = 1 << s;
      for (int i = 0; i < n; ++i) table[s][i] = std::exp2(static_cast<double>(i) / n) / 2;
    }
  }
  double table[kMaxSchema + 1][1 << kMaxSchema];
};
const Bounds kMantissaBounds;

double D(uint64_t bits) { return std::bit_cast<double>(bits); }
uint64_t U(double v) { return std::bit_cast<uint64_t>(v); }

void ReduceMap(std::map<int32_t, double>& m, int32_t delta) {
  std::map<int32_t, double> out;
  for (auto [k, v] : m) out[ReduceKey(k, delta)] += v;
  m.swap(out);
}

// Span of occupied indices fits a window of w after lowering the schema by `delta`?
bool Fits(const std::map<int32_t, double>& m, int32_t delta, uint32_t w) {
  if (m.empty()) return true;
  const int64_t lo = ReduceKey(m.begin()->first, delta);
  const int64_t hi = ReduceKey(m.rbegin()->first, delta);
  return hi - lo < static_cast<int64_t>(w);
}

}  // namespace

int32_t BucketKey(double a, int32_t schema) noexcept {
  int exp = 0;
  const double frac = std::frexp(a, &exp);  // a = frac * 2^exp, frac in [0.5, 1)
  if (schema > 0) {
    const double* b = kMantissaBounds.table[schema];
    const int64_t n = int64_t{1} << schema;
    const auto i = std::lower_bound(b, b + n, frac) - b;
    return static_cast<int32_t>(i + (exp - 1) * n);
  }
  int32_t key = exp;
  if (frac == 0.5) --key;  // exact powers of two are the upper bound of the bucket below
  const int32_t delta = -schema;
  return ReduceKey(key, delta);
}

double BucketUpperBound(int32_t key, int32_t schema) noexcept {
  return std::exp2(static_cast<double>(key) * std::exp2(-static_cast<double>(schema)));
}

void Reduce(Sparse& h, int32_t delta) {
  if (delta <= 0) return;
  ReduceMap(h.positive, delta);
  ReduceMap(h.negative, delta);
  h.schema -= delta;
}

void Merge(Sparse& into, const Sparse& from) {
  const int32_t schema = std::min(into.schema, from.schema);
  Reduce(into, into.schema - schema);
  const int32_t delta = from.schema - schema;
  for (auto [k, v] : from.positive) into.positive[ReduceKey(k, delta)] += v;
  for (auto [k, v] : from.negative) into.negative[ReduceKey(k, delta)] += v;
  into.zero_count += from.zero_count;
}

bool Decode(const Cell* block, uint32_t window, int32_t family_schema, Sparse& out) {
  out = Sparse{};
  out.schema = family_schema;
  const uint64_t sc = block[kSchemaCell].load(std::memory_order_relaxed);
  const double zero = D(block[kZeroCell].load(std::memory_order_relaxed));
  if (!(zero >= 0) || !std::isfinite(zero)) return false;
  out.zero_count = zero;
  if (sc == 0) return true;  // no bucketed observation yet; a zero-bucket one needs no schema
  if (!ValidSchemaCell(sc) || SchemaOfCell(sc) > family_schema) return false;
  out.schema = SchemaOfCell(sc);
  const uint64_t offs = block[kOffsetsCell].load(std::memory_order_relaxed);
  const int32_t pos = FirstPositive(offs);
  const int32_t neg = FirstNegative(offs);
  for (const int32_t first : {pos, neg}) {
    if (first < -kMaxKey || first > kMaxKey) return false;
  }
  for (uint32_t i = 0; i < window; ++i) {
    const double p = D(block[kHeaderCells + i].load(std::memory_order_relaxed));
    const double n = D(block[kHeaderCells + window + i].load(std::memory_order_relaxed));
    if (!(p >= 0) || !(n >= 0) || !std::isfinite(p) || !std::isfinite(n)) return false;
    if (p != 0) out.positive[pos + static_cast<int32_t>(i)] += p;
    if (n != 0) out.negative[neg + static_cast<int32_t>(i)] += n;
  }
  return true;
}

LiveRead DecodeLive(const Cell* block, uint32_t window, int32_t family_schema, Sparse& out,
                    uint32_t attempts) {
  for (uint32_t attempt = 0; attempt < attempts; ++attempt) {
    if (attempt > 0) std::this_thread::yield();  // let a preempted writer finish its update
    const uint64_t s1 = block[kSeqCell].load(std::memory_order_acquire);
    if (s1 & 1) continue;
    const bool ok = Decode(block, window, family_schema, out);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (block[kSeqCell].load(std::memory_order_relaxed) == s1) {
      return ok ? LiveRead::kOk : LiveRead::kInvalid;
    }
  }
  out = Sparse::At(family_schema);
  return LiveRead::kTorn;
}

namespace {
struct StackWindow {
  int32_t offset = 0;
  double count[kMaxWindow];
};

// A window whose offset is outside +-kMaxKey was scribbled on by another process: it restarts
// empty rather than feed wild indices into the arithmetic below.
void LoadWindow(const Cell* cells, uint32_t w, int32_t offset, StackWindow& out) {
  const bool valid = offset >= -kMaxKey && offset <= kMaxKey;
  out.offset = valid ? offset : 0;
  for (uint32_t i = 0; i < w; ++i)
    out.count[i] = valid ? D(cells[i].load(std::memory_order_relaxed)) : 0.0;
}

void StoreWindow(Cell* cells, uint32_t w, const StackWindow& in) {
  for (uint32_t i = 0; i < w; ++i) cells[i].store(U(in.count[i]), std::memory_order_relaxed);
}

// Halves the resolution of one window in place; the span only shrinks, so it still fits.
void ReduceWindow(StackWindow& win, uint32_t w) {
  double out[kMaxWindow] = {};
  const int32_t base = ReduceKey(win.offset, 1);
  for (uint32_t i = 0; i < w; ++i) {
    if (win.count[i] != 0)
      out[ReduceKey(win.offset + static_cast<int32_t>(i), 1) - base] += win.count[i];
  }
  win.offset = base;
  for (uint32_t i = 0; i < w; ++i) win.count[i] = out[i];
}
}  // namespace

void AddInPlace(Cell* block, uint32_t w, int32_t family_schema, double v) noexcept {
  // Our own block, unless another process scribbled on it: a corrupt schema restarts at the
  // family's (wrong buckets for what was there, but no undefined arithmetic).
  const uint64_t schema_cell = block[kSchemaCell].load(std::memory_order_relaxed);
  int32_t schema = ValidSchemaCell(schema_cell) ? SchemaOfCell(schema_cell) : family_schema;
  const uint64_t offs = block[kOffsetsCell].load(std::memory_order_relaxed);
  StackWindow pos, neg;
  LoadWindow(block + kHeaderCells, w, FirstPositive(offs), pos);
  LoadWindow(block + kHeaderCells + w, w, FirstNegative(offs), neg);
  StackWindow& target = v > 0 ? pos : neg;
  const double a = v > 0 ? v : -v;
  for (;;) {
    const int32_t key = BucketKey(a, schema);
    int64_t lo = key, hi = key;
    for (uint32_t i = 0; i < w; ++i) {
      if (target.count[i] == 0) continue;
      lo = std::min<int64_t>(lo, target.offset + int64_t{i});
      hi = std::max<int64_t>(hi, target.offset + int64_t{i});
    }
    if (hi - lo < static_cast<int64_t>(w) || schema == kMinSchema) {
      // Re-centre the occupied span (room both ways before the next move), then count.
      const int64_t span = hi - lo + 1;
      const int64_t start =
          span <= static_cast<int64_t>(w) ? lo - (static_cast<int64_t>(w) - span) / 2 : lo;
      double moved[kMaxWindow] = {};
      for (uint32_t i = 0; i < w; ++i) {
        if (target.count[i] == 0) continue;
        const int64_t at = std::clamp<int64_t>(target.offset + int64_t{i} - start, 0, w - 1);
        moved[at] += target.count[i];
      }
      moved[std::clamp<int64_t>(key - start, 0, w - 1)] += 1.0;  // clamped only at kMinSchema
      target.offset = static_cast<int32_t>(start);
      for (uint32_t i = 0; i < w; ++i) target.count[i] = moved[i];
      break;
    }
    ReduceWindow(pos, w);  // both signs share the schema
    ReduceWindow(neg, w);
    --schema;
  }
  StoreWindow(block + kHeaderCells, w, pos);
  StoreWindow(block + kHeaderCells + w, w, neg);
  block[kOffsetsCell].store(PackOffsets(pos.offset, neg.offset), std::memory_order_relaxed);
  block[kSchemaCell].store(SchemaCellOf(schema), std::memory_order_relaxed);
}

void Encode(Sparse h, Cell* block, uint32_t window) {
  int32_t delta = 0;
  while (h.schema - delta > kMinSchema &&
         !(Fits(h.positive, delta, window) && Fits(h.negative, delta, window))) {
    ++delta;
  }
  Reduce(h, delta);
  // Centre the occupied span in the window: room to grow both ways before the next move. A span
  // still wider than the window (only at kMinSchema) starts at its low edge; the buckets above
  // the window are counted in its top bucket.
  auto first = [window](const std::map<int32_t, double>& m) {
    if (m.empty()) return 0;
    const int64_t span = int64_t{m.rbegin()->first} - m.begin()->first + 1;
    if (span > window) return m.begin()->first;
    return static_cast<int32_t>(m.begin()->first - (static_cast<int64_t>(window) - span) / 2);
  };
  const int32_t pos = first(h.positive), neg = first(h.negative);
  for (uint32_t i = 0; i < 2 * window; ++i)
    block[kHeaderCells + i].store(0, std::memory_order_relaxed);
  auto store = [&](const std::map<int32_t, double>& m, int32_t start, Cell* cells) {
    for (auto [k, v] : m) {
      Cell& c = cells[std::clamp<int64_t>(int64_t{k} - start, 0, window - 1)];
      c.store(U(D(c.load(std::memory_order_relaxed)) + v), std::memory_order_relaxed);
    }
  };
  store(h.positive, pos, block + kHeaderCells);
  store(h.negative, neg, block + kHeaderCells + window);
  block[kOffsetsCell].store(PackOffsets(pos, neg), std::memory_order_relaxed);
  block[kZeroCell].store(U(h.zero_count), std::memory_order_relaxed);
  const bool any = !h.positive.empty() || !h.negative.empty();
  block[kSchemaCell].store(any ? SchemaCellOf(h.schema) : 0, std::memory_order_relaxed);
}

}  // namespace shmetrics::shm::native
