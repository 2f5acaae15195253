// Memory bounds of the HTTP/2 parser (a ProtocolOptions member).
#pragma once

#include <cstddef>

#include "agent/protocols/http2/hpack.h"

namespace threadline::http2 {

struct Http2Limits {
  size_t max_streams = 256;                   // open streams tracked per connection
  size_t max_header_block_bytes = 64 * 1024;  // HEADERS + CONTINUATION payload kept for HPACK
  size_t max_table_bytes = HpackDecoder::kMaxTableBytes;  // per direction
};

}  // namespace threadline::http2
