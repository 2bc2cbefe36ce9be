// gzip (RFC 1952) through the system zlib, for /metrics bodies. Beast's own deflate_stream writes
// raw deflate for websockets, not gzip, so this is a thin wrapper over deflateInit2(16 +
// MAX_WBITS).
#pragma once

#include <string>
#include <string_view>

namespace shmetrics::gateway {

// Level 1 (zlib's fastest): on exposition text it keeps most of the ratio of level 6 at several
// times the speed (measured in bench/README.md), and a scrape is latency-bound.
inline constexpr int kGzipLevel = 1;

// The gzip member for `in`. Throws std::runtime_error if zlib fails (out of memory).
std::string Gzip(std::string_view in, int level = kGzipLevel);

// The decompressed content of a gzip member (tests, tools). Throws std::runtime_error on bad input.
std::string Gunzip(std::string_view in);

}  // namespace shmetrics::gateway
