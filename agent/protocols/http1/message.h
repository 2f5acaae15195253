// HTTP/1.x messages and request/response exchanges as the protocols stage hands them to spans.
//
// Plain value types: what was on the wire (start line, headers, sizes, framing) and when (the
// ChunkMeta of the syscalls that carried the first and the last byte). Memory per message is
// bounded: header count and value sizes are capped; the body is measured, never stored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/conn/stream_consumer.h"
#include "agent/protocols/http1/field_name.h"
#include "agent/protocols/outcome.h"

namespace threadline::http1 {

// One stored field: views into its HeaderList's text (valid while the list lives, unchanged).
struct Header {
  std::string_view name;   // as sent (case kept); compare with EqualsIgnoreCase
  std::string_view value;  // OWS trimmed, obs-fold replaced by one SP, capped at kMaxValueBytes
  FieldName field = FieldName::kOther;  // IdentifyField(name)
};

// Header fields (or trailer fields) of one message, bounded: fields past kMaxHeaders and value
// bytes past kMaxValueBytes are dropped and only counted. Framing-relevant fields are read by
// the parser while parsing, so dropping a stored field never changes how a message is framed.
// The fields live back to back in one buffer, each as [name length: 2 bytes][value length:
// 4 bytes][FieldName: 1 byte][name][value], sized for a typical message at the first field: one allocation per
// message with headers, not one per field and per long value.
class HeaderList {
 public:
  static constexpr size_t kMaxHeaders = 64;
  static constexpr size_t kMaxNameBytes = 256;
  static constexpr size_t kMaxValueBytes = 8 * 1024;

  void Add(std::string_view name, std::string_view value);
  // The same, with the name already identified (the parser identifies every field it reads).
  void Add(std::string_view name, std::string_view value, FieldName field);
  // A field that is not stored (StoredFields::kRead): an obs-fold that follows it is not
  // joined to the field stored before it.
  void Skip() { last_dropped_ = true; }
  // Empty again, keeping the buffer's capacity (see MessagePool).
  void Clear() {
    text_.clear();
    last_at_ = 0;
    count_ = 0;
    known_ = 0;
    dropped_fields_ = 0;
    values_truncated_ = false;
    last_dropped_ = false;
  }
  // Empty again, the buffer given back to malloc. (Not `list = HeaderList{}`: a string
  // move-assigned from an empty one keeps its own buffer.)
  void Free() {
    std::string().swap(text_);
    Clear();
  }
  // obs-fold: a continuation line joins the last stored field's value with one SP.
  void AppendToLast(std::string_view continuation);

  // False when no field named `name` is stored, known without looking at the fields when
  // `name` is one of the FieldNames (most lookups are for a known field a request does not
  // carry: a correlation header, traceparent). Inline: with a literal name it is one bit test.
  bool MayHave(std::string_view name) const {
    const FieldName field = IdentifyField(name);
    return field == FieldName::kOther ? count_ > 0 : MayHave(field);
  }
  // Whether a field `field` (not kOther) is stored.
  bool MayHave(FieldName field) const { return (known_ & Bit(field)) != 0; }
  // The first field named `name` (ASCII case-insensitive), or nullopt. A known name is found
  // by its FieldName, stored with each field (no name compared).
  std::optional<Header> Find(std::string_view name) const {
    const FieldName field = IdentifyField(name);
    if (field != FieldName::kOther) {
      if ((known_ & Bit(field)) == 0) return std::nullopt;
      return FindKnown(field);
    }
    if (count_ == 0) return std::nullopt;
    return FindStored(name);
  }
  // Its value, or nullopt.
  std::optional<std::string_view> Get(std::string_view name) const {
    std::optional<Header> h = Find(name);
    if (!h) return std::nullopt;
    return h->value;
  }

  // Iterates the fields in arrival order as Header views: `for (Header h : list.fields())`.
  class Iterator {
   public:
    explicit Iterator(const char* at) : at_(at) {}
    Header operator*() const;
    Iterator& operator++();
    bool operator!=(const Iterator& o) const { return at_ != o.at_; }
    bool operator==(const Iterator& o) const { return at_ == o.at_; }

   private:
    const char* at_;
  };
  struct Range {
    const HeaderList* list;
    Iterator begin() const { return Iterator(list->text_.data()); }
    Iterator end() const { return Iterator(list->text_.data() + list->text_.size()); }
  };
  Range fields() const { return Range{this}; }
  size_t size() const { return count_; }
  size_t capacity() const { return text_.capacity(); }  // bytes of the buffer
  bool holds_buffer() const { return text_.capacity() > std::string().capacity(); }  // on the heap
  bool empty() const { return count_ == 0; }
  uint32_t dropped_fields() const { return dropped_fields_; }  // past kMaxHeaders
  bool values_truncated() const { return values_truncated_; }  // some value or name was capped

 private:
  std::optional<Header> FindStored(std::string_view name) const;  // by comparing every name
  Header FindKnown(FieldName field) const;  // a field known to be stored, by its FieldName

  // name length (2 bytes), value length (4 bytes), FieldName (1 byte)
  static constexpr size_t kFieldHead = 7;
  // The fields the agent reads of a request (StoredFields::kRead: Host, User-Agent,
  // traceparent, ...) fit, so most messages never grow the buffer; with every field stored
  // (kAll) a browser's request grows it once. (768 before only read fields were stored: a
  // request waiting for its response held the difference, 512 B per open connection.)
  static constexpr size_t kInitialBytes = 256;

  std::string text_;
  size_t last_at_ = 0;  // offset of the last stored field's head
  uint32_t count_ = 0;
  uint32_t known_ = 0;  // bit 1 << FieldName of each known field stored
  uint32_t dropped_fields_ = 0;
  bool values_truncated_ = false;
  bool last_dropped_ = false;  // an obs-fold after a dropped field is dropped too
};

// ASCII case-insensitive equality. Inline: look-ups by name compare stored names with it, and
// most comparisons end at the size check (the parser identifies names with IdentifyField).
inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

enum class MessageKind : uint8_t { kRequest, kResponse };

// Which header fields a Message stores (every field is parsed and checked either way, framing
// fields are interpreted either way, and header_bytes counts them all).
//  kRead: only the fields something in the agent reads (IsReadField); the others are counted
//         in header_bytes and skipped. Copying fields nobody reads (a response's Server, Date,
//         ETag, ...) was most of the parser's cost per span. A new reader of a field adds its
//         name to FieldName (field_name.h) and IsReadField (message.cpp), or the field is
//         simply absent.
//  kAll:  every field, as sent (tests; a future capture of arbitrary headers).
enum class StoredFields : uint8_t { kRead, kAll };

// Whether the agent reads field `name` (ASCII case-insensitive) of a `kind` message: the span's
// attributes (Host, User-Agent, X-Forwarded-For; a response's Upgrade), trace context
// (traceparent, tracestate), the correlation evidence of the context rules (X-Request-Id and
// the like) and the h2c handover (Content-Type).
// (A stored field must be one of the FieldNames: HeaderList::MayHave answers "absent" for a
// known name without looking at the fields.)
bool IsReadField(MessageKind kind, std::string_view name);
inline bool IsReadField(MessageKind kind, FieldName field) {
  return ((kind == MessageKind::kRequest ? kReadRequestFields : kReadResponseFields) & Bit(field)) != 0;
}

// How the end of the body was found (RFC 9112 §6.3).
enum class Framing : uint8_t {
  kNone,           // no body: HEAD response, 1xx/204/304, request without length, tunnel
  kContentLength,  // Content-Length
  kChunked,        // Transfer-Encoding: ..., chunked
  kUntilClose,     // response without length (HTTP/1.0 style): ends when the connection closes
};

struct Message {
  MessageKind kind = MessageKind::kRequest;
  uint8_t version_minor = 1;  // HTTP/1.<minor>

  // Request line (kind == kRequest).
  std::string method;  // case-sensitive token, e.g. "GET"
  std::string target;  // request-target as sent, capped at the start-line limit
  // Status line (kind == kResponse).
  uint16_t status_code = 0;
  std::string reason;  // reason phrase, capped at 256 bytes

  HeaderList headers;
  uint64_t header_bytes = 0;  // start line + header fields + the empty line, on the wire

  Framing framing = Framing::kNone;
  uint64_t body_bytes = 0;       // content bytes (decoded length for chunked)
  uint64_t body_wire_bytes = 0;  // bytes after the header block: chunk lines and trailers included
  uint64_t body_bytes_not_captured = 0;  // part of body_wire_bytes we only know the size of (gaps)
  // The end of the message was never seen: chunk framing lost in a gap, a bad chunk line, or
  // the connection closed before the declared length. Sizes are then lower bounds.
  bool truncated = false;
  HeaderList trailers;  // chunked trailer fields

  // Derived from headers while parsing (all fields are scanned, even ones not stored).
  bool connection_close = false;    // "Connection: close", or HTTP/1.0 without keep-alive
  bool upgrade_requested = false;   // request with "Connection: upgrade" and an Upgrade field
  bool expect_continue = false;     // request with "Expect: 100-continue"
  bool te_and_cl = false;           // both Transfer-Encoding and Content-Length (TE wins)

  // Syscalls that carried the first byte of the start line and the last byte of the message
  // (a gap's meta when the message ended inside bytes that were not captured).
  ChunkMeta first_chunk;
  ChunkMeta last_chunk;

  bool is_request() const { return kind == MessageKind::kRequest; }
  bool is_interim() const { return kind == MessageKind::kResponse && status_code / 100 == 1; }
  // Any byte of this message was not seen (size known or not).
  bool missing_bytes() const { return truncated || body_bytes_not_captured > 0; }
  // Back to a default Message, keeping the capacity of the strings and of the header text
  // (member by member: destroying and rebuilding the whole Message, its strings and field
  // lists, was ~130 instructions per message).
  void Reset();
};

// Messages whose exchange was reported, kept (with their buffers: request target, header text)
// for the next messages of any connection: in steady state a keep-alive request and its
// response allocate nothing here. Messages travel by pointer from the parser to the pairing,
// the Exchange and back here, never moved by value: a Message move (its strings, two field
// lists, metadata) cost more than the malloc/free pair a buffer pool saved, and a Message held
// inline by each parser and in each pending request slot was ~1.4 KiB of every open
// connection. One per protocol instance, used on the consumer thread only. Bounded:
// kMaxMessages, a buffer kept only up to kMaxRetainedBytes (a message with a huge header
// block gives it back to malloc).
class MessagePool {
 public:
  static constexpr size_t kMaxMessages = 64;
  static constexpr size_t kMaxRetainedBytes = 4096;

  MessagePool() { free_.reserve(kMaxMessages); }
  // A default Message (a returned one, reset, when there is one).
  std::unique_ptr<Message> New();
  // `m` is done with (its exchange was reported): keep it, unless full.
  void Give(std::unique_ptr<Message> m);
  size_t size() const { return free_.size(); }

 private:
  std::vector<std::unique_ptr<Message>> free_;
};

// A new message from `pool`, or from the heap without one.
inline std::unique_ptr<Message> NewMessage(MessagePool* pool) {
  return pool != nullptr ? pool->New() : std::make_unique<Message>();
}

using threadline::Outcome;
std::string_view ToString(Framing f);

struct Exchange {
  std::unique_ptr<Message> request;   // null for kResponseWithoutRequest
  std::unique_ptr<Message> response;  // the final (non-1xx) response; null when none was seen
  uint32_t interim_responses = 0;   // 1xx responses before the final one (100 Continue, 103)
  Outcome outcome = Outcome::kComplete;
  uint64_t closed_ts_ns = 0;  // kClosedBeforeResponse: when the connection was closed
};

}  // namespace threadline::http1
