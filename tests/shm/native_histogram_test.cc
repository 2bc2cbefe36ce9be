#include "shmetrics/shm/native_histogram.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace shmetrics::shm::native {
namespace {

TEST(NativeHistogramTest, BucketKeysAtSchemaZeroArePowersOfTwo) {
  // Bucket i holds (2^(i-1), 2^i].
  EXPECT_EQ(BucketKey(1.0, 0), 0);
  EXPECT_EQ(BucketKey(1.5, 0), 1);
  EXPECT_EQ(BucketKey(2.0, 0), 1);
  EXPECT_EQ(BucketKey(2.0000001, 0), 2);
  EXPECT_EQ(BucketKey(0.5, 0), -1);
  EXPECT_EQ(BucketKey(0.75, 0), 0);
}

TEST(NativeHistogramTest, BucketKeysAreExactAtEveryBoundary) {
  for (int schema = kMinSchema; schema <= kMaxSchema; ++schema) {
    for (int key = -40; key <= 40; ++key) {
      const double upper = BucketUpperBound(key, schema);
      // The upper bound belongs to the bucket; the next representable double above it does not.
      EXPECT_EQ(BucketKey(upper, schema), key) << "schema " << schema << " key " << key;
      EXPECT_EQ(BucketKey(std::nextafter(upper, INFINITY), schema), key + 1) << "schema " << schema;
    }
  }
}

TEST(NativeHistogramTest, ReducingMatchesComputingAtTheLowerSchema) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> value(0, 3);
  for (int i = 0; i < 20000; ++i) {
    const double v = value(rng);
    for (int schema = kMinSchema + 1; schema <= kMaxSchema; ++schema) {
      for (int delta = 1; schema - delta >= kMinSchema; ++delta) {
        ASSERT_EQ(ReduceKey(BucketKey(v, schema), delta), BucketKey(v, schema - delta))
            << v << " schema " << schema << " delta " << delta;
      }
    }
  }
}

TEST(NativeHistogramTest, EncodeReducesUntilTheSpanFitsAndKeepsCounts) {
  std::vector<Cell> block(BlockCells(8));
  for (auto& c : block) c.store(0);
  Sparse h = Sparse::At(3);
  h.zero_count = 2;
  h.positive[0] = 1;
  h.positive[100] = 5;  // span 101 buckets: needs a schema reduction to fit 8
  h.negative[-3] = 4;
  Encode(h, block.data(), 8);
  Sparse back;
  ASSERT_TRUE(Decode(block.data(), 8, 3, back));
  EXPECT_LT(back.schema, 3);
  EXPECT_EQ(back.zero_count, 2);
  double pos = 0, neg = 0;
  for (auto [k, v] : back.positive) pos += v;
  for (auto [k, v] : back.negative) neg += v;
  EXPECT_EQ(pos, 6);
  EXPECT_EQ(neg, 4);
  Sparse expected = h;
  Reduce(expected, 3 - back.schema);
  EXPECT_EQ(back.positive, expected.positive);
  EXPECT_EQ(back.negative, expected.negative);
}

TEST(NativeHistogramTest, MergeOfDifferentSchemasReducesToTheLowest) {
  Sparse a = Sparse::At(3), b = Sparse::At(1);
  a.positive[8] = 1;  // at schema 1: (8 + 3) >> 2 = 2
  b.positive[2] = 10;
  a.zero_count = 1;
  Merge(a, b);
  EXPECT_EQ(a.schema, 1);
  EXPECT_EQ(a.positive.at(2), 11);
  EXPECT_EQ(a.zero_count, 1);
}

TEST(NativeHistogramTest, DecodeRejectsCorruptSchema) {
  std::vector<Cell> block(BlockCells(4));
  for (auto& c : block) c.store(0);
  block[kSchemaCell].store(kSchemaBias + 20);  // schema 20: impossible
  Sparse out;
  EXPECT_FALSE(Decode(block.data(), 4, 3, out));
}

// Values so far apart that even kMinSchema cannot fit them in the window. Encode once
// wrote such spans before its block (it checked only one side of the window index). Every count
// must stay inside the block, and none may be lost.
TEST(NativeHistogramTest, EncodeKeepsEveryCountInsideItsBlockForAnySpan) {
  constexpr uint64_t kGuard = 0x6775617264ull;  // "guard"
  constexpr uint32_t kGuardCells = 64;
  for (uint32_t window : {1u, 2u, 3u, 8u}) {
    for (auto [low, high] : {std::pair{1e-30, 1e30}, {1e-300, 1e300}, {4.9e-324, 1.7e308}}) {
      Sparse h = Sparse::At(3);
      h.positive[BucketKey(low, 3)] = 1;
      h.positive[BucketKey(high, 3)] = 1;
      h.negative[BucketKey(high, 3)] = 2;
      h.negative[BucketKey(low, 3)] = 3;
      std::vector<Cell> cells(kGuardCells + BlockCells(window) + kGuardCells);
      for (auto& c : cells) c.store(kGuard);
      Cell* block = cells.data() + kGuardCells;
      for (uint32_t i = 0; i < BlockCells(window); ++i) block[i].store(0);
      Encode(h, block, window);
      for (uint32_t i = 0; i < kGuardCells; ++i) {
        ASSERT_EQ(cells[i].load(), kGuard) << "window " << window << " wrote before the block";
        ASSERT_EQ(cells[cells.size() - 1 - i].load(), kGuard) << "window " << window;
      }
      Sparse back;
      ASSERT_TRUE(Decode(block, window, 3, back));
      double pos = 0, neg = 0;
      for (auto [k, v] : back.positive) pos += v;
      for (auto [k, v] : back.negative) neg += v;
      EXPECT_EQ(pos, 2) << "window " << window;
      EXPECT_EQ(neg, 5) << "window " << window;
      EXPECT_EQ(back.schema, kMinSchema);
    }
  }
}

// A block is untrusted: offsets outside +-kMaxKey, schema cells that overflow a signed
// subtraction, and counts that are negative or not finite make it invalid, never undefined.
TEST(NativeHistogramTest, DecodeRejectsWildOffsetsSchemaCellsAndCounts) {
  auto fresh = [] {
    std::vector<Cell> block(BlockCells(4));
    for (auto& c : block) c.store(0);
    block[kSchemaCell].store(kSchemaBias + 3);
    block[kHeaderCells].store(std::bit_cast<uint64_t>(1.0));
    return block;
  };
  Sparse out;
  {
    auto b = fresh();
    ASSERT_TRUE(Decode(b.data(), 4, 3, out));
  }
  for (uint64_t offsets :
       {uint64_t{0x80000000u}, uint64_t{0x7fffffffu}, uint64_t{0x80000000u} << 32,
        uint64_t{static_cast<uint32_t>(kMaxKey + 1)}}) {
    auto b = fresh();
    b[2].store(offsets);
    EXPECT_FALSE(Decode(b.data(), 4, 3, out)) << std::hex << offsets;
  }
  for (uint64_t schema_cell : {uint64_t{0x8000000000000000ull}, uint64_t{0xffffffffull},
                               uint64_t{0x80000000ull}, kSchemaBias - 5}) {
    auto b = fresh();
    b[1].store(schema_cell);
    EXPECT_FALSE(Decode(b.data(), 4, 3, out)) << std::hex << schema_cell;
  }
  for (double bad : {-1.0, double{NAN}, double{INFINITY}}) {
    auto b = fresh();
    b[5].store(std::bit_cast<uint64_t>(bad));
    EXPECT_FALSE(Decode(b.data(), 4, 3, out)) << bad;
    auto z = fresh();
    z[3].store(std::bit_cast<uint64_t>(bad));
    EXPECT_FALSE(Decode(z.data(), 4, 3, out)) << "zero count " << bad;
  }
}

// The offsets word is read by separately built writers and gateways: its bits are fixed.
TEST(NativeHistogramTest, OffsetsWordHoldsPositiveLowNegativeHigh) {
  static_assert(PackOffsets(INT32_MIN, INT32_MIN) == 0x8000'0000'8000'0000ull);
  static_assert(PackOffsets(-1, 2) == 0x0000'0002'ffff'ffffull);
  static_assert(FirstPositive(PackOffsets(-7, 9)) == -7 && FirstNegative(PackOffsets(-7, 9)) == 9);
  static_assert(SchemaOfCell(SchemaCellOf(kMinSchema)) == kMinSchema && !ValidSchemaCell(0));
  EXPECT_EQ(FirstNegative(PackOffsets(INT32_MAX, INT32_MIN)), INT32_MIN);
}

// The writer's own block scribbled on by another process: AddInPlace restarts a corrupt schema at
// the family's and still counts the observation (UBSan guards the arithmetic in the sanitizer run).
TEST(NativeHistogramTest, AddInPlaceSurvivesACorruptBlock) {
  for (uint64_t schema_cell : {0x8000000000000000ull, 0xffffffffull, 0x80000000ull}) {
    std::vector<Cell> block(BlockCells(4));
    for (auto& c : block) c.store(0);
    block[kSchemaCell].store(schema_cell);
    block[kOffsetsCell].store(PackOffsets(INT32_MIN, INT32_MIN));
    AddInPlace(block.data(), 4, 3, 1.5);
    Sparse out;
    ASSERT_TRUE(Decode(block.data(), 4, 3, out)) << std::hex << schema_cell;
    double total = 0;
    for (auto [k, v] : out.positive) total += v;
    EXPECT_EQ(total, 1);
  }
}

}  // namespace
}  // namespace shmetrics::shm::native
