// The output of the conn stage: per-connection lifecycle plus, per direction, an in-order
// byte stream with explicit gaps. The protocol layer (and --output=events) consume this.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "agent/ingest/event_types.h"

namespace threadline {

struct ConnectionInfo {
  ConnId id;
  Tuple tuple;
  bool tuple_known = false;  // false until an open event or the resolver gave it
  Role role = Role::kUnknown;
  ConnSource source = ConnSource::kFirstIo;
  std::string comm;
  uint64_t open_ts_ns = 0;  // boot clock
  uint64_t last_activity_ns = 0;
  uint64_t bytes[2] = {0, 0};  // stream bytes delivered or skipped, by Direction
  // The streams are TLS plaintext taken at the TLS library (uprobes): the bytes on the wire
  // were encrypted (url.scheme https).
  bool tls = false;
};

// Metadata of the syscall that produced a chunk of stream bytes.
struct ChunkMeta {
  uint64_t ts_ns = 0;        // syscall exit, boot clock
  uint64_t enter_ts_ns = 0;  // syscall entry, boot clock
  uint32_t tid = 0;
  uint8_t syscall = 0;  // enum tl_syscall
  // Stream position (in this direction) of the first byte this metadata describes: the
  // chunk's first byte as the conn stage delivers it; a message's first byte in a protocol's
  // Message::first_chunk. Context the kernel or a TCP option ties to a request is matched by it.
  uint64_t pos = 0;
  // The kernel's verdict on who the request starting in this chunk is for (DataEvent::ctx_tag).
  uint32_t ctx_tag = 0;
};

enum class GapReason : uint8_t {
  kNotCaptured,  // the syscall moved more bytes than were captured (size known, bytes not)
  kLost,         // bytes whose event never arrived (ring full, mmsg limit, ...)
  kBufferLimit,  // out-of-order bytes given up on to keep memory bounded
};
std::string_view ToString(GapReason r);

class StreamConsumer {
 public:
  virtual ~StreamConsumer() = default;
  virtual void OnConnectionOpened(const ConnectionInfo&) {}
  // Bytes at stream position `pos`, in order: pos is always the end of the previous data/gap.
  virtual void OnStreamData(const ConnectionInfo&, Direction, uint64_t /*pos*/,
                            std::span<const uint8_t> /*bytes*/, const ChunkMeta&) {}
  // `len` bytes at `pos` that will never be seen.
  virtual void OnStreamGap(const ConnectionInfo&, Direction, uint64_t /*pos*/, uint64_t /*len*/,
                           GapReason, const ChunkMeta&) {}
  virtual void OnConnectionClosed(const ConnectionInfo&, CloseReason) {}
};

}  // namespace threadline
