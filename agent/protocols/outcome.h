// How an operation (a request and its response, an HTTP/2 stream, a database call) ended, as
// every protocol reports it in its Record. A fixed set, used as a metric label.
#pragma once

#include <cstdint>
#include <string_view>

namespace threadline {

enum class Outcome : uint8_t {
  kComplete,                // request and its final response
  kClosedBeforeResponse,    // the connection closed (or the agent gave it up) unanswered
  kResponseWithoutRequest,  // the request was never seen: joined mid-stream or lost in a gap
  kResponseLost,            // a response was there but could not be parsed (e.g. gap in headers)
  kUpgraded,                // 101 Switching Protocols: the connection stopped being HTTP/1
  kTunnel,                  // CONNECT answered 2xx: the connection became a tunnel
  kReset,                   // HTTP/2: the stream was reset (RST_STREAM) before it completed
  kRefused,                 // HTTP/2: GOAWAY said the stream was never processed
};
inline constexpr size_t kOutcomeCount = 8;
std::string_view ToString(Outcome o);

}  // namespace threadline
