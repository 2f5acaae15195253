// Incremental HTTP/1.x parser for one direction of a connection: bytes and gaps in, messages
// out. Holds at most one line of buffered bytes (bounded by the header-block limit); bodies are
// measured, never buffered.
//
// Gaps: inside a body they only advance it (sizes stay right); inside a start line or header
// block the message is lost — a failure is reported and the parser resynchronises on the next
// line that looks like a message start, so one lost chunk never desyncs a keep-alive stream.
// Chunked framing lost in a gap ends the message as `truncated` and resynchronises likewise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "agent/conn/stream_consumer.h"
#include "agent/protocols/http1/message.h"

namespace threadline::http1 {

struct ParserLimits {
  size_t max_header_bytes = 64 * 1024;  // start line + header block (and, apart, trailers)
  size_t max_start_line = 8 * 1024;
  size_t max_chunk_line = 4 * 1024;  // chunk size + extensions
  // Resynchronisation: a line this long is only kept by its last bytes, and every
  // resync_failure_bytes skipped without finding a message start count as one failure.
  size_t max_resync_line = 8 * 1024;
  size_t resync_failure_bytes = 256 * 1024;
  StoredFields stored_fields = StoredFields::kRead;  // which header fields a Message keeps
};

// Why a message (or a stretch of bytes) could not be parsed; fixed set, used as metric label.
enum class FailureReason : uint8_t {
  kBadStartLine,
  kBadHeader,
  kBadFraming,      // invalid Content-Length, request Transfer-Encoding not ending in chunked
  kHeaderTooLarge,
  kGapInHeaders,    // bytes of a start line or header block were not captured
  kBadChunk,
  kChunkFramingLost,  // a gap swallowed chunk framing: message truncated
  kNoMessageStart,  // resynchronisation skipped resync_failure_bytes without a message start
  kTooManyPipelined,  // (stitcher) pending requests over the limit
  kGaveUp,            // (stitcher) too many consecutive failures: the connection is given up
};
inline constexpr size_t kFailureReasonCount = 10;
std::string_view ToString(FailureReason r);

// What the response parser must know about the request a response answers (RFC 9112 §6.3).
struct RequestContext {
  bool head = false;     // HEAD: the response has no body whatever its headers say
  bool connect = false;  // CONNECT: a 2xx turns the connection into a tunnel
};

class MessageParser {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    // A response's header block is complete: which request does it answer?
    virtual RequestContext ContextForResponse() { return {}; }
    // A request's header block is complete (its body may follow). The Message is still
    // being filled; it is handed over by OnMessage.
    virtual void OnRequestHeaders(const Message&) {}
    // Never null. (By pointer: see MessagePool.)
    virtual void OnMessage(std::unique_ptr<Message>) = 0;
    // `message_lost`: a message was there but is gone (its request/response slot must still
    // be accounted for when pairing). False for garbage that never looked like a message.
    virtual void OnFailure(FailureReason, bool message_lost) = 0;
  };

  // `pool` (optional, must outlive the parser): where new messages take their buffers from.
  MessageParser(MessageKind kind, const ParserLimits& limits, Listener& listener,
                MessagePool* pool = nullptr);

  void Feed(std::span<const uint8_t> bytes, const ChunkMeta& meta);
  void Gap(uint64_t len, GapReason reason, const ChunkMeta& meta);
  // The connection closed: an until-close body ends here; a message cut short is emitted
  // truncated; a partial header block is dropped.
  void Close();

  // Opaque from now on (after 101 / a CONNECT tunnel): bytes are ignored.
  void Stop();
  // Leave the pause that follows a CONNECT request (the CONNECT was refused): resynchronise.
  void Resume();
  // Leave the hold that follows a request asking for an upgrade (it was refused): the next
  // byte fed starts a message again.
  void Release();

  bool stopped() const { return state_ == State::kStopped; }
  // After a request asking for an upgrade (Connection: upgrade + Upgrade), a request parser
  // consumes nothing more until Release() or Stop(): what follows may be another protocol's.
  bool held() const { return state_ == State::kHeld; }
  // Held, or stopped after a message that switched protocols: the stream position of the first
  // byte the parser did not consume (known once a Feed has reached it).
  std::optional<uint64_t> switch_pos() const { return switch_pos_; }
  // Bytes held for an unfinished line (the only buffering the parser does).
  size_t buffered_bytes() const { return line_.size(); }
  size_t buffer_capacity() const { return line_.capacity(); }
  uint64_t messages() const { return messages_; }
  // Inside a message whose start line has begun (used to tell a late request from none).
  bool in_message() const;

 private:
  enum class State : uint8_t {
    kStartLine,
    kHeaders,
    kBodyLength,
    kBodyUntilClose,
    kChunkSize,
    kChunkData,
    kChunkDataEnd,  // CRLF after chunk data
    kTrailers,
    kResync,
    kPaused,  // after a CONNECT request, until Resume()
    kHeld,    // after a request asking for an upgrade, until Release() or Stop()
    kStopped,
  };

  // Consumes `in` up to and including LF unless that would pass `limit` (overflow, nothing
  // consumed); `complete` when the LF was reached (consumed, not part of the line). Returns the
  // line so far: a view of `in` itself when the whole line is in this chunk and nothing was
  // buffered before it, else of line_, to which the part in `in` is appended. (Copying every
  // line into line_ cost a memcpy per header line, and on a new connection the buffer's
  // growth: 3 allocations per span with a connection per request.)
  std::string_view ConsumeLine(std::string_view& in, size_t limit, bool& complete, bool& overflow);
  void OnStartLine(std::string_view line, size_t wire_bytes);
  void OnHeaderLine(std::string_view line);
  // A field line parsed (not an obs-fold): framing fields interpreted, read fields stored.
  void OnField(std::string_view name, std::string_view value, FieldName field);
  // kHeaders with nothing buffered: reads the header lines whole in `in`, one after another.
  void ReadWholeHeaderLines(std::string_view& in);
  void OnHeadersDone();
  void OnChunkSizeLine(std::string_view line);
  void OnTrailerLine(std::string_view line);
  void OnResyncBytes(std::string_view& in);
  void StartMessage(uint64_t first_byte_pos);
  // Stream position of a byte of the chunk being fed.
  uint64_t PosOf(const char* p) const { return meta_.pos + static_cast<uint64_t>(p - chunk_begin_); }
  void FinishMessage();
  void FinishTruncated(FailureReason reason);
  void Fail(FailureReason reason, bool message_lost);
  void EnterResync(bool keep_line);
  void CountSkipped(uint64_t n);
  // Held or stopped with `rest` (the unconsumed bytes of the chunk being fed) left: note where.
  void NoteSwitchPos(std::string_view rest);

  MessageKind kind_;
  ParserLimits limits_;
  Listener& listener_;
  MessagePool* pool_;
  State state_ = State::kStartLine;
  // kPaused after CONNECT, kHeld after an upgrade request, kStopped after 101
  State next_state_after_message_ = State::kStartLine;
  std::optional<uint64_t> switch_pos_;  // see switch_pos()
  bool switch_pending_ = false;          // held or stopped at a message's end, position not noted

  std::string line_;  // the unfinished line, never over the limit of the current state
  ChunkMeta meta_;    // of the chunk (or gap) being processed
  const char* chunk_begin_ = nullptr;  // first byte of the chunk being fed (positions)
  ChunkMeta line_meta_;  // of the chunk where the resync line began, pos: the line's first byte
  // The message being parsed: from the pool at its start line, handed over whole at its end
  // (null in between: an idle connection holds no Message).
  std::unique_ptr<Message> msg_;
  bool msg_started_ = false;

  // Framing fields, read from every header (stored or not).
  uint64_t content_length_ = 0;
  bool has_content_length_ = false;
  bool content_length_invalid_ = false;
  bool has_transfer_encoding_ = false;
  bool chunked_final_ = false;
  bool saw_keep_alive_ = false;
  bool saw_upgrade_field_ = false;
  bool saw_connection_upgrade_ = false;

  uint64_t header_budget_ = 0;  // bytes left for the header block (or trailer section)
  uint64_t body_remaining_ = 0;
  uint64_t resync_skipped_ = 0;
  uint64_t messages_ = 0;
  uint64_t paused_dropped_ = 0;
};

}  // namespace threadline::http1
