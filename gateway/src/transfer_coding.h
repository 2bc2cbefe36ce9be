// CheckTransferEncoding: what a request's Transfer-Encoding field lines mean for its framing
// (RFC 9112 6.1, 6.3 and 7). The server decodes one transfer coding, chunked, applied once and
// last; everything else is refused before a byte of the body is read, because a body framed by a
// coding the server does not decode cannot be told apart from the next request on the connection
// (request smuggling). Pure and allocation-light, with no Beast and no sockets, so that the
// HTTP front's fuzzer can drive it with arbitrary bytes.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace shmetrics::gateway {

enum class TransferCodingVerdict {
  kNone,         // no Transfer-Encoding field: Content-Length (or nothing) frames the body
  kChunked,      // exactly "chunked": the parser frames and decodes the body
  kUnsupported,  // chunked last, but under a coding (or with a parameter) not decoded here: 501
  kMalformed,    // not a transfer-coding list, chunked not last or twice, or on HTTP/1.0: 400
};

struct TransferCodingCheck {
  TransferCodingVerdict verdict = TransferCodingVerdict::kNone;
  std::string reason;  // for kUnsupported and kMalformed: one sentence for the error body
};

// `field_values`: the value of every Transfer-Encoding field line, in order (several lines form
// one list). `http_version`: 10 or 11, as Beast reports it.
TransferCodingCheck CheckTransferEncoding(std::span<const std::string_view> field_values,
                                          unsigned http_version);

}  // namespace shmetrics::gateway
