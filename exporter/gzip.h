// gzip (RFC 1952) of a request body, for OTLP/HTTP's Content-Encoding: gzip. zlib does the work.
#pragma once

#include <string>
#include <string_view>

#include "agent/common/result.h"

namespace threadline {

Result<std::string> GzipCompress(std::string_view data);
// For tests: what a receiver does with a Content-Encoding: gzip body.
Result<std::string> GzipDecompress(std::string_view data);

}  // namespace threadline
