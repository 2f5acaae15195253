#include "agent/protocols/http2/types.h"

#include <array>
#include <cstdio>

namespace threadline::http2 {

bool PlausibleFrameHeader(const FrameHeader& h, uint32_t max_frame_size) {
  if (h.length > max_frame_size) return false;
  switch (static_cast<FrameType>(h.type)) {
    case FrameType::kData:
      return h.stream_id != 0 && (h.flags & ~(kFlagEndStream | kFlagPadded)) == 0;
    case FrameType::kHeaders:
      return h.stream_id != 0 &&
             (h.flags & ~(kFlagEndStream | kFlagEndHeaders | kFlagPadded | kFlagPriority)) == 0;
    case FrameType::kPriority:
      return h.stream_id != 0 && h.length == 5;
    case FrameType::kRstStream:
      return h.stream_id != 0 && h.length == 4;
    case FrameType::kSettings:
      return h.stream_id == 0 && h.length % 6 == 0 && (h.flags & ~kFlagAck) == 0 &&
             (!(h.flags & kFlagAck) || h.length == 0);
    case FrameType::kPushPromise:
      return h.stream_id != 0 && h.length >= 4;
    case FrameType::kPing:
      return h.stream_id == 0 && h.length == 8 && (h.flags & ~kFlagAck) == 0;
    case FrameType::kGoAway:
      return h.stream_id == 0 && h.length >= 8;
    case FrameType::kWindowUpdate:
      return h.length == 4 && h.flags == 0;
    case FrameType::kContinuation:
      return h.stream_id != 0 && (h.flags & ~kFlagEndHeaders) == 0;
  }
  return false;  // extension frame types are legal, but no evidence of HTTP/2
}

std::string ErrorCodeName(uint32_t code) {
  static constexpr std::array<std::string_view, 14> kNames = {
      "NO_ERROR",        "PROTOCOL_ERROR", "INTERNAL_ERROR",     "FLOW_CONTROL_ERROR",
      "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR",   "REFUSED_STREAM",
      "CANCEL",          "COMPRESSION_ERROR", "CONNECT_ERROR",   "ENHANCE_YOUR_CALM",
      "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"};
  if (code < kNames.size()) return std::string(kNames[code]);
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", code);
  return buf;
}

std::string GrpcStatusName(int code) {
  static constexpr std::array<std::string_view, 17> kNames = {
      "OK",        "CANCELLED",         "UNKNOWN",   "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS",    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
      "UNAVAILABLE", "DATA_LOSS",       "UNAUTHENTICATED"};
  if (code >= 0 && static_cast<size_t>(code) < kNames.size()) return std::string(kNames[static_cast<size_t>(code)]);
  return std::to_string(code);
}

}  // namespace threadline::http2
