// HTTP/2 as a Protocol (protocols/protocol.h): detection by the client connection preface
// (prior knowledge h2c, and h2 inside TLS, where the preface in the plaintext is what ALPN
// agreed on), by the server's SETTINGS, or, for a connection joined mid-way, by a run of
// plausible frames; one Http2Connection per connection (connection.h).
#pragma once

#include <memory>

#include "agent/protocols/protocol.h"

namespace threadline::http2 {

std::unique_ptr<Protocol> CreateProtocol(const ProtocolOptions& options, MetricsRegistry& metrics);

// Whether `bytes` begin like a stream of HTTP/2 frames: at least one whole plausible frame,
// the frames chained to the end of `bytes` (or into a DATA/HEADERS payload cut short there).
bool LooksLikeFrames(std::span<const uint8_t> bytes);

}  // namespace threadline::http2
