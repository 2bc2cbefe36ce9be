#include "shmetrics/shm/native_histogram.h"

#include <gtest/gtest.h>

#include <cmath>
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
  block[1].store(kSchemaBias + 20);  // schema 20: impossible
  Sparse out;
  EXPECT_FALSE(Decode(block.data(), 4, 3, out));
}

}  // namespace
}  // namespace shmetrics::shm::native
