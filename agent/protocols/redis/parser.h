// RESP (Redis serialization protocol, versions 2 and 3) for one direction of a connection: bytes
// and gaps in, whole top-level values out, with what pairing and the conventions need: the
// type, an error's prefix, the first elements of an aggregate (a command's name and first
// arguments, a pub/sub message's kind), errors among an aggregate's elements (EXEC's results).
// Clients may also send inline commands (a line of words); the parser of the request direction
// reads those too. https://redis.io/docs/latest/develop/reference/protocol-spec/
//
// Bounded: lines are kept up to a limit, bulk strings only by their first bytes (the rest is
// skipped by length, never buffered), nesting up to max_depth. A gap inside a bulk string only
// marks the value `missing`; elsewhere it loses framing: the reader then waits for Resync() (the
// connection calls it at a boundary it knows) or, for requests, a chunk that starts a command.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "agent/conn/stream_consumer.h"

namespace threadline::redis {

struct Limits {
  size_t max_line_bytes = 1024;  // of a simple string, error or length line kept
  size_t max_depth = 32;         // nesting of aggregates
  size_t max_pending = 4096;     // commands waiting for their reply per connection
};

// A whole top-level value.
struct Value {
  static constexpr size_t kKeptElements = 3;
  static constexpr size_t kMaxElementBytes = 128;
  char type = 0;     // the RESP type byte; 'i' for an inline command
  bool null = false;  // $-1, *-1, _
  std::string error;  // '-' or '!': the error's prefix (its first word)
  uint32_t elements = 0;  // aggregates (maps: keys and values), inline commands: words
  // The first elements when they are strings or numbers (capped), else empty.
  std::array<std::string, kKeptElements> element;
  uint32_t element_errors = 0;     // elements (depth 1) that are errors
  std::string first_element_error;  // the prefix of the first one
  bool missing = false;  // some of its bytes were lost in a gap
  ChunkMeta first;       // the syscall with its first byte (pos: that byte)
  ChunkMeta last;        // the syscall with (or the gap that swallowed) its last byte
};

class RespReader {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void OnValue(const Value& value) = 0;
    virtual void OnFramingLost(const ChunkMeta& meta) = 0;
  };

  // `requests`: the client's direction (inline commands allowed, resynchronises on a command).
  RespReader(bool requests, const Limits& limits, Listener& listener)
      : requests_(requests), limits_(limits), listener_(listener) {}

  void Feed(std::span<const uint8_t> bytes, const ChunkMeta& meta);
  void Gap(uint64_t len, const ChunkMeta& meta);
  // After lost framing: the next byte fed starts a value.
  void Resync();
  void Stop() { state_ = State::kStopped; }

 private:
  enum class State : uint8_t { kType, kLine, kInline, kBulk, kLost, kStopped };
  struct Frame {
    uint32_t remaining = 0;  // elements still to come
    uint32_t index = 0;      // elements seen
    bool attribute = false;  // RESP3 attribute: not an element of its parent
  };

  void StartValue(const ChunkMeta& meta, uint64_t pos);
  void OnLine(const ChunkMeta& meta);
  void OnInline(const ChunkMeta& meta);
  // An element (or the top-level value) is complete; `text` is its string form when kept.
  void Done(char type, std::string_view text, const ChunkMeta& meta);
  void Lose(const ChunkMeta& meta);
  bool Want() const;  // whether the element being read is kept

  bool requests_;
  const Limits& limits_;
  Listener& listener_;
  State state_ = State::kType;
  char type_ = 0;          // of the element being read
  std::string line_;       // the line being read (capped)
  bool line_long_ = false;
  uint64_t bulk_left_ = 0;  // bytes of the bulk string, then its CRLF
  std::string bulk_;        // its kept prefix
  std::vector<Frame> stack_;
  Value value_;
};

// Whether a stream's first bytes are a RESP command (an array of bulk strings whose first is a
// command name): detection.
bool LooksLikeCommand(std::span<const uint8_t> bytes);

}  // namespace threadline::redis
