// Native (exponential, sparse) histograms inside a region: the bucket math and the block of cells
// one writer keeps per series.
//
// Bucket i at schema s holds (2^((i-1)/2^s), 2^(i/2^s)] (and the mirror for negative values);
// observations with |v| <= zero_threshold go to the zero bucket. Buckets of two histograms with
// the same schema line up, and a bucket at schema s is exactly two buckets at s+1, so histograms
// merge exactly: reduce to the lowest schema, add counts by index.
//
// A writer keeps, per sign, a window of `window` consecutive buckets. An observation outside the
// window moves the window if the occupied span fits, otherwise reduces the schema (halving the
// resolution) until it fits: the documented rule at the bound, as the native histogram spec
// allows. The block is kHeaderCells of header (seqlock, schema, offsets word, zero count; named
// in layout.h, beside the rest of the region's bytes), then the window's bucket counts (doubles):
//   [kHeaderCells, kHeaderCells + W)        positive buckets, from FirstPositive(offsets word)
//   [kHeaderCells + W, kHeaderCells + 2W)   negative buckets, from FirstNegative(offsets word)
// Counts and sums come from the family's classic part (its +Inf bucket and sum cells).
#pragma once

#include <cstdint>
#include <map>

#include "shmetrics/shm/layout.h"

namespace shmetrics::shm::native {

inline constexpr int32_t kMinSchema = -4;
inline constexpr int32_t kMaxSchema = 8;
inline constexpr uint32_t kMaxWindow = 240;  // a block must fit a page with the classic part
inline constexpr double kDefaultZeroThreshold = 2.938735877055719e-39;  // 2^-128, as client_golang
// Every finite non-zero double has a bucket key within +-kMaxKey at any schema (binary exponents
// -1073..1024 times at most 2^kMaxSchema buckets per octave). A block whose window offsets leave
// that range is corrupt; checking it keeps all index arithmetic far from int32 overflow.
inline constexpr int32_t kMaxKey = 1100 << kMaxSchema;

// Whether a block's schema cell holds a schema: false when the cell is 0 (no bucketed observation
// yet) or outside kMinSchema..kMaxSchema (corrupt). Unsigned compare: any 64-bit value is safe.
inline constexpr bool ValidSchemaCell(uint64_t cell) {
  constexpr uint64_t kLowest = kSchemaBias - static_cast<uint64_t>(-kMinSchema);
  return cell - kLowest <= static_cast<uint64_t>(kMaxSchema - kMinSchema);
}
inline constexpr int32_t SchemaOfCell(uint64_t cell) {  // only for ValidSchemaCell(cell)
  return static_cast<int32_t>(cell) - static_cast<int32_t>(kSchemaBias);
}
inline constexpr uint64_t SchemaCellOf(int32_t schema) {  // schema in kMinSchema..kMaxSchema
  return static_cast<uint64_t>(schema + static_cast<int32_t>(kSchemaBias));
}

// Bucket index of a > 0 at `schema`, exact at the boundaries (frexp, no log rounding).
int32_t BucketKey(double a, int32_t schema) noexcept;
// The index of bucket `key` after lowering the schema by `delta` >= 0.
inline int32_t ReduceKey(int32_t key, int32_t delta) {
  return delta <= 0 ? key : (key + (int32_t{1} << delta) - 1) >> delta;  // arithmetic shift
}
// Upper bound of bucket `key` at `schema` (for tests and quantile checks).
double BucketUpperBound(int32_t key, int32_t schema) noexcept;

// A decoded histogram: sparse buckets by index.
struct Sparse {
  int32_t schema = kMaxSchema;
  double zero_count = 0;
  std::map<int32_t, double> positive, negative;
  bool empty() const { return zero_count == 0 && positive.empty() && negative.empty(); }
  static Sparse At(int32_t schema) {
    Sparse s;
    s.schema = schema;
    return s;
  }
};

// Adds `from` into `into`, reducing `into` to the lower of the two schemas.
void Merge(Sparse& into, const Sparse& from);
// Lowers the schema of `h` by `delta`.
void Reduce(Sparse& h, int32_t delta);

// Reads a block that nobody writes concurrently (the accumulator, a dead writer's slot, or a
// seqlock-validated copy). Returns false if the block is not a valid one (schema outside
// kMinSchema..min(kMaxSchema, family schema), offsets outside +-kMaxKey, a count that is negative
// or not finite); an untouched block decodes as empty with `schema` = family schema.
bool Decode(const Cell* block, uint32_t window, int32_t family_schema, Sparse& out);
enum class LiveRead { kOk, kTorn, kInvalid };
// Reads a live writer's block under its seqlock, trying at most `attempts` (>= 1) times: kTorn
// when the seqlock stayed odd or moved every time (a writer mid-update, killed mid-update, or
// hostile), kInvalid when a stable copy is not a valid block.
LiveRead DecodeLive(const Cell* block, uint32_t window, int32_t family_schema, Sparse& out,
                    uint32_t attempts);
// Adds one observation `v` (|v| above the zero threshold, not NaN) to a writer's own block,
// moving the window or lowering the schema as needed. In place, with stack buffers only: no
// allocation, no lock (the writer's path). At kMinSchema a value still out of reach (only with
// tiny windows) is counted in the nearest edge bucket. Does not touch the seqlock.
void AddInPlace(Cell* block, uint32_t window, int32_t family_schema, double v) noexcept;

// Writes `h` into a block of `window` buckets per sign, lowering the schema until both signs fit.
// At kMinSchema a span still wider than the window (tiny windows, values far apart) keeps its
// low edge and counts the rest in the top bucket: every count is kept, only resolution is lost,
// and nothing is written outside the block. Does not touch the seqlock.
void Encode(Sparse h, Cell* block, uint32_t window);

}  // namespace shmetrics::shm::native
