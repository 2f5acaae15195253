// HTTP/2 (RFC 9113) values shared by the frame reader, the connection and Describe: frame types
// and flags, error codes, and the StreamRecord a finished stream leaves for Describe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace threadline::http2 {

inline constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
inline constexpr size_t kFrameHeaderBytes = 9;
inline constexpr uint32_t kDefaultMaxFrameSize = 16384;
inline constexpr uint32_t kLargestMaxFrameSize = (1u << 24) - 1;

enum class FrameType : uint8_t {
  kData = 0x0,
  kHeaders = 0x1,
  kPriority = 0x2,
  kRstStream = 0x3,
  kSettings = 0x4,
  kPushPromise = 0x5,
  kPing = 0x6,
  kGoAway = 0x7,
  kWindowUpdate = 0x8,
  kContinuation = 0x9,
};

inline constexpr uint8_t kFlagEndStream = 0x1;
inline constexpr uint8_t kFlagAck = 0x1;
inline constexpr uint8_t kFlagEndHeaders = 0x4;
inline constexpr uint8_t kFlagPadded = 0x8;
inline constexpr uint8_t kFlagPriority = 0x20;

struct FrameHeader {
  uint32_t length = 0;
  uint8_t type = 0;
  uint8_t flags = 0;
  uint32_t stream_id = 0;
};

// Decodes 9 bytes (RFC 9113 §4.1); the reserved bit is dropped.
inline FrameHeader ParseFrameHeader(const uint8_t* b) {
  FrameHeader h;
  h.length = (static_cast<uint32_t>(b[0]) << 16) | (static_cast<uint32_t>(b[1]) << 8) | b[2];
  h.type = b[3];
  h.flags = b[4];
  h.stream_id = ((static_cast<uint32_t>(b[5]) & 0x7f) << 24) | (static_cast<uint32_t>(b[6]) << 16) |
                (static_cast<uint32_t>(b[7]) << 8) | b[8];
  return h;
}

// Whether a frame header is one a real peer could send (used to join a connection mid-way and
// to find frames again after lost bytes): a known type with its stream-id rule and length bound.
bool PlausibleFrameHeader(const FrameHeader& h, uint32_t max_frame_size);

// RFC 9113 §7 error code name ("CANCEL"), or "0x..." for codes it does not define.
std::string ErrorCodeName(uint32_t code);

// gRPC status code name ("UNAVAILABLE"), or the number for codes gRPC does not define.
std::string GrpcStatusName(int code);

// One gRPC message seen on a stream (for rpc.message events).
struct GrpcMessage {
  uint64_t ts_ns = 0;  // boot clock: the syscall that carried its first byte
  uint32_t size = 0;   // compressed size (the length prefix)
  bool compressed = false;
};

// What threadline keeps of one direction of a stream.
struct StreamHalf {
  bool headers_seen = false;
  bool incomplete = false;  // a field could not be decoded or bytes were lost
  uint64_t body_bytes = 0;  // DATA payload, padding excluded
  bool body_bytes_lost = false;
  // gRPC length-prefixed messages in the DATA payload.
  uint32_t messages = 0;
  bool messages_lost = false;  // a prefix fell in lost bytes: the count is a lower bound
  std::vector<GrpcMessage> first_messages;  // the first kMaxMessageEvents
  static constexpr size_t kMaxMessageEvents = 16;
};

// A finished stream, for Describe (the RecordDetail alternative of HTTP/2).
struct StreamRecord {
  uint32_t stream_id = 0;
  // Request pseudo-headers and the few fields the conventions read.
  std::string method;
  std::string path;
  std::string authority;
  std::string scheme;
  std::string content_type;
  std::string user_agent;
  std::string forwarded_for;
  StreamHalf request;
  // Response (response.headers_seen: its header block came; status 0: :status not decodable).
  uint16_t status = 0;
  StreamHalf response;
  std::optional<int> grpc_status;  // from trailers, or headers of a Trailers-Only response
  std::string grpc_message;
  std::optional<uint32_t> reset_code;  // RST_STREAM's error code (or GOAWAY's for refused)
  bool reset_by_client = false;        // the RST_STREAM came in the request direction
  bool joined_mid_connection = false;  // the connection's HPACK past was unknown
};

}  // namespace threadline::http2
