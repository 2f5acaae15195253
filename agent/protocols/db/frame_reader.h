// One direction of a length-prefixed binary protocol (PostgreSQL messages, MySQL packets) cut
// into frames: bytes and gaps in, frames out. The protocol's FrameRules say how long a header is,
// what it declares, how much of a body is worth keeping, and where a frame plausibly starts
// after framing was lost.
//
// Bounded: a frame's body is kept only up to KeepBytes() (a statement's text, an error's code);
// the rest, a huge result row or COPY data, is skipped while counted, never buffered. A gap
// inside a body only marks the frame `missing` (its length is known, framing holds); a gap over
// a header loses framing: bytes are then skipped until FindFrameStart() finds a frame again.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "agent/conn/stream_consumer.h"

namespace threadline::db {

struct Frame {
  uint8_t type = 0;     // what the rules read from the header (PostgreSQL: the message type)
  uint8_t seq = 0;      // MySQL: the packet's sequence id
  uint64_t length = 0;  // body bytes on the wire
  // The first KeepBytes() bytes of the body (fewer when `missing` cut them short).
  std::span<const uint8_t> body;
  bool missing = false;  // some body bytes were lost in a gap
  ChunkMeta first;       // the syscall that carried the header's first byte (pos: that byte)
  ChunkMeta last;        // the syscall that carried (or the gap that swallowed) the last byte
  bool kept_all() const { return !missing && body.size() == length; }
};

class FrameRules {
 public:
  virtual ~FrameRules() = default;
  virtual size_t HeaderSize() const = 0;  // of the next frame (<= kMaxHeader), may depend on state
  // False when the bytes cannot be a header here (framing is lost).
  virtual bool ParseHeader(std::span<const uint8_t> header, Frame& frame) const = 0;
  virtual size_t KeepBytes(const Frame& frame) const = 0;
  // Resynchronisation: where in `bytes` a frame plausibly starts, or npos.
  virtual size_t FindFrameStart(std::span<const uint8_t> bytes) const = 0;
  static constexpr size_t kMaxHeader = 8;
};

class FrameReader {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void OnFrame(const Frame& frame) = 0;
    // Framing was lost at `meta`: by a gap over a header, or by bytes that are no header.
    virtual void OnFramingLost(const ChunkMeta& meta, bool by_gap) = 0;
  };

  // `rules` and `listener` must outlive the reader.
  FrameReader(const FrameRules& rules, Listener& listener) : rules_(rules), listener_(listener) {}

  void Feed(std::span<const uint8_t> bytes, const ChunkMeta& meta);
  void Gap(uint64_t len, const ChunkMeta& meta);
  // No more frames (the stream became TLS, or the connection is given up). Bytes are ignored.
  void Stop() { state_ = State::kStopped; }
  // Skip bytes until a frame start is found (the caller knows framing is lost).
  void Resync() { EnterResync(); }

 private:
  enum class State : uint8_t { kHeader, kBody, kResync, kStopped };

  void Emit(const ChunkMeta& last);
  void EnterResync();

  const FrameRules& rules_;
  Listener& listener_;
  State state_ = State::kHeader;
  std::array<uint8_t, FrameRules::kMaxHeader> header_{};
  size_t header_len_ = 0;
  Frame frame_;             // the frame being read (body set at Emit)
  std::string body_;        // its kept bytes
  size_t keep_ = 0;
  uint64_t remaining_ = 0;  // body bytes still to come
};

}  // namespace threadline::db
