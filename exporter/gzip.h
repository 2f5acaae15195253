// gzip (RFC 1952) of a request body, for OTLP/HTTP's Content-Encoding: gzip. zlib does the work.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "agent/common/result.h"

namespace threadline {

// Keeps zlib's compression state (~270 KiB, five allocations to set up) and the output buffer
// between requests, so compressing a request allocates nothing once the buffer has grown.
class GzipCompressor {
 public:
  GzipCompressor();
  ~GzipCompressor();
  GzipCompressor(const GzipCompressor&) = delete;
  GzipCompressor& operator=(const GzipCompressor&) = delete;

  // `data` compressed; the view stays valid until the next call.
  Result<std::string_view> Compress(std::string_view data);

 private:
  struct State;
  std::unique_ptr<State> state_;
  std::string out_;
};

// One-off compression (a GzipCompressor used once).
Result<std::string> GzipCompress(std::string_view data);
// For tests: what a receiver does with a Content-Encoding: gzip body.
Result<std::string> GzipDecompress(std::string_view data);

}  // namespace threadline
