#include "gzip.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <stdexcept>

namespace shmetrics::gateway {
namespace {

constexpr int kGzipWindowBits = 16 + MAX_WBITS;  // 16: gzip header and trailer instead of zlib's
constexpr size_t kMaxChunk = UINT_MAX / 2;       // z_stream counts in uInt

}  // namespace

std::string Gzip(std::string_view in, int level) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, kGzipWindowBits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("gzip: deflateInit2 failed");
  }
  std::string out;
  out.resize(deflateBound(&zs, static_cast<uLong>(std::min(in.size(), kMaxChunk))) +
             (in.size() > kMaxChunk ? in.size() / 100 + 1024 : 0));
  size_t produced = 0;
  size_t consumed = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    const size_t chunk = std::min(in.size() - consumed, kMaxChunk);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + consumed));
    zs.avail_in = static_cast<uInt>(chunk);
    const bool last = consumed + chunk == in.size();
    if (out.size() - produced < 64) out.resize(out.size() * 2 + 64);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    zs.avail_out = static_cast<uInt>(std::min(out.size() - produced, kMaxChunk));
    const uInt avail_out = zs.avail_out;
    rc = deflate(&zs, last ? Z_FINISH : Z_NO_FLUSH);
    if (rc == Z_STREAM_ERROR) {
      deflateEnd(&zs);
      throw std::runtime_error("gzip: deflate failed");
    }
    consumed += chunk - zs.avail_in;
    produced += avail_out - zs.avail_out;
  }
  deflateEnd(&zs);
  out.resize(produced);
  return out;
}

std::string Gunzip(std::string_view in) {
  z_stream zs{};
  if (inflateInit2(&zs, kGzipWindowBits) != Z_OK)
    throw std::runtime_error("gunzip: inflateInit2 failed");
  std::string out;
  size_t consumed = 0;
  int rc = Z_OK;
  char buf[1 << 16];
  while (rc != Z_STREAM_END) {
    const size_t chunk = std::min(in.size() - consumed, kMaxChunk);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + consumed));
    zs.avail_in = static_cast<uInt>(chunk);
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      throw std::runtime_error("gunzip: invalid or truncated gzip data");
    }
    consumed += chunk - zs.avail_in;
    out.append(buf, sizeof buf - zs.avail_out);
    if (rc == Z_OK && zs.avail_in == 0 && consumed == in.size() && zs.avail_out != 0) {
      inflateEnd(&zs);
      throw std::runtime_error("gunzip: truncated gzip data");
    }
  }
  inflateEnd(&zs);
  return out;
}

}  // namespace shmetrics::gateway
