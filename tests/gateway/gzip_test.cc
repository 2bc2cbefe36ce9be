// gzip: what Gzip writes is a gzip member that zlib's own inflate (auto-detecting the wrapper)
// reads back byte for byte, and Gunzip refuses damaged input.
#include "gzip.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <random>
#include <stdexcept>

namespace shmetrics::gateway {
namespace {

// Independent of gzip.cc: zlib's inflate with header auto-detection (32 + MAX_WBITS).
std::string Inflate(const std::string& in) {
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, 32 + MAX_WBITS), Z_OK);
  std::string out(in.size() * 20 + 1024, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  inflateEnd(&zs);
  return out;
}

std::string MetricsLikeText(size_t lines) {
  std::mt19937_64 rng(7);
  std::string s;
  for (size_t i = 0; i < lines; ++i) {
    s += "http_requests_total{method=\"GET\",code=\"" + std::to_string(200 + rng() % 5) +
         "\",path=\"/p" + std::to_string(i) + "\"} " + std::to_string(rng() % 100000) + "\n";
  }
  return s;
}

TEST(GzipTest, RoundTripsThroughZlib) {
  std::mt19937_64 rng(1);
  std::string random_bytes(100000, '\0');
  for (char& c : random_bytes) c = static_cast<char>(rng());
  for (const std::string& in :
       {std::string(), std::string("x"), MetricsLikeText(50000), random_bytes}) {
    const std::string gz = Gzip(in);
    ASSERT_GE(gz.size(), 18u);  // header + trailer
    EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);
    EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
    EXPECT_EQ(Inflate(gz), in);
    EXPECT_EQ(Gunzip(gz), in);
  }
}

TEST(GzipTest, CompressesExpositionText) {
  const std::string text = MetricsLikeText(20000);
  for (int level : {1, 6, 9}) {
    const std::string gz = Gzip(text, level);
    EXPECT_LT(gz.size() * 4, text.size()) << "level " << level;
    EXPECT_EQ(Inflate(gz), text);
  }
}

TEST(GzipTest, GunzipRefusesDamagedInput) {
  const std::string gz = Gzip(MetricsLikeText(100));
  EXPECT_THROW(Gunzip(gz.substr(0, gz.size() / 2)), std::runtime_error);
  EXPECT_THROW(Gunzip("not gzip at all"), std::runtime_error);
}

}  // namespace
}  // namespace shmetrics::gateway
