#include "exporter/otlp_protobuf.h"

#include <cstring>
#include <type_traits>
#include <vector>
#include <variant>

#include "exporter/protobuf_writer.h"
#include "exporter/resource_groups.h"
#include "exporter/utf8.h"

namespace threadline {

namespace {

using protobuf::VarintSize;

// Field numbers (exporter/proto/opentelemetry/proto/...).
namespace field {
constexpr uint32_t kRequestResourceSpans = 1;      // ExportTraceServiceRequest
constexpr uint32_t kResourceSpansResource = 1;     // ResourceSpans
constexpr uint32_t kResourceSpansScopeSpans = 2;
constexpr uint32_t kResourceAttributes = 1;        // Resource
constexpr uint32_t kScopeSpansScope = 1;           // ScopeSpans
constexpr uint32_t kScopeSpansSpans = 2;
constexpr uint32_t kScopeName = 1;                 // InstrumentationScope
constexpr uint32_t kScopeVersion = 2;
constexpr uint32_t kKeyValueKey = 1;               // KeyValue
constexpr uint32_t kKeyValueValue = 2;
constexpr uint32_t kAnyString = 1;                 // AnyValue (oneof)
constexpr uint32_t kAnyBool = 2;
constexpr uint32_t kAnyInt = 3;
constexpr uint32_t kAnyDouble = 4;
constexpr uint32_t kSpanTraceId = 1;               // Span
constexpr uint32_t kSpanSpanId = 2;
constexpr uint32_t kSpanTraceState = 3;
constexpr uint32_t kSpanParentSpanId = 4;
constexpr uint32_t kSpanName = 5;
constexpr uint32_t kSpanKind = 6;
constexpr uint32_t kSpanStart = 7;
constexpr uint32_t kSpanEnd = 8;
constexpr uint32_t kSpanAttributes = 9;
constexpr uint32_t kSpanEvents = 11;
constexpr uint32_t kSpanLinks = 13;
constexpr uint32_t kSpanStatus = 15;
constexpr uint32_t kSpanFlags = 16;
constexpr uint32_t kEventTime = 1;                 // Span.Event
constexpr uint32_t kEventName = 2;
constexpr uint32_t kEventAttributes = 3;
constexpr uint32_t kLinkTraceId = 1;               // Span.Link
constexpr uint32_t kLinkSpanId = 2;
constexpr uint32_t kLinkTraceState = 3;
constexpr uint32_t kLinkAttributes = 4;
constexpr uint32_t kLinkFlags = 6;
constexpr uint32_t kStatusMessage = 2;             // Status
constexpr uint32_t kStatusCode = 3;
}  // namespace field

// One-byte tags of the KeyValue and AnyValue members (fields below 16).
constexpr char Tag1(uint32_t field, protobuf::WireType type) {
  return static_cast<char>(protobuf::Tag(field, type));
}
constexpr char kKeyValueKeyTag = Tag1(field::kKeyValueKey, protobuf::WireType::kLengthDelimited);
constexpr char kKeyValueValueTag = Tag1(field::kKeyValueValue, protobuf::WireType::kLengthDelimited);
constexpr char kAnyStringTag = Tag1(field::kAnyString, protobuf::WireType::kLengthDelimited);
constexpr char kAnyBoolTag = Tag1(field::kAnyBool, protobuf::WireType::kVarint);
constexpr char kAnyIntTag = Tag1(field::kAnyInt, protobuf::WireType::kVarint);
constexpr char kAnyDoubleTag = Tag1(field::kAnyDouble, protobuf::WireType::kFixed64);
constexpr size_t kMaxVarint = 10;
constexpr uint64_t kHighBits = 0x8080808080808080ULL;

// The bytes copied, OR-ed into `high`: `high & kHighBits` is then zero iff they are ASCII, which
// is what the encoder needs to know of every key and string value (ValidUtf8's separate pass over
// them was ~13 instructions a string, ~500 per HTTP span).
[[gnu::always_inline]] inline char* CopyAscii(char* p, const char* s, size_t n, uint64_t& high) {
  return raw::PutBytesSeen<true>(p, s, n, high);
}

// Tag (one byte for fields 1..15) + length varint + bytes.
constexpr size_t LengthDelimitedSize(size_t length) { return 1 + VarintSize(length) + length; }

class Encoder {
 public:
  explicit Encoder(ByteBuffer& out) : w_(out) {}

  // One ResourceSpans per group; `write_spans(group)` appends the group's framed spans.
  template <typename Groups, typename WriteSpans>
  void Request(const Groups& groups, WriteSpans&& write_spans) {
    for (const auto& group : groups) {
      // A request of 512 spans is a few hundred KiB: three length bytes.
      const size_t rs = w_.BeginMessage(field::kRequestResourceSpans, 3);
      const size_t resource = w_.BeginMessage(field::kResourceSpansResource, 2);
      if (group.resource != nullptr) WriteAttributes(field::kResourceAttributes, group.resource->attributes);
      w_.EndMessage(resource);
      const size_t ss = w_.BeginMessage(field::kResourceSpansScopeSpans, 3);
      w_.LengthPrefix(field::kScopeSpansScope, LengthDelimitedSize(kScopeName.size()) +
                                                   LengthDelimitedSize(kScopeVersion.size()));
      w_.BytesField(field::kScopeName, kScopeName);
      w_.BytesField(field::kScopeVersion, kScopeVersion);
      write_spans(group);
      w_.EndMessage(ss);
      w_.EndMessage(rs);
    }
  }

  void Request(std::span<const Span> spans) {
    Request(GroupByResource(spans), [&](const ResourceGroup& group) {
      for (const Span* span : group.spans) WriteSpan(*span);
    });
  }

  void Request(std::string_view encoded, std::span<const EncodedSpan> spans) {
    std::vector<const Resource*> resources;
    resources.reserve(spans.size());
    for (const EncodedSpan& e : spans) resources.push_back(e.resource.get());
    Request(GroupIndicesByResource(resources), [&](const ResourceIndexGroup& group) {
      for (uint32_t i : group.items) {
        const EncodedSpan& e = spans[i];
        char* p = w_.BeginRaw(e.size);
        std::memcpy(p, encoded.data() + e.offset, e.size);
        w_.EndRaw(p + e.size);
      }
    });
  }

  // The span as a ScopeSpans.spans field.
  void WriteSpan(const Span& s) { WriteSpanBody(s); }
 private:
  // A proto3 string field: omitted when empty, made valid UTF-8 when it is not.
  void String(uint32_t field, std::string_view s) {
    if (!s.empty()) w_.BytesField(field, ValidUtf8(s, scratch_));
  }

  template <size_t N>
  void Id(uint32_t field, const std::array<uint8_t, N>& bytes, bool valid) {
    if (valid) w_.BytesField(field, {reinterpret_cast<const char*>(bytes.data()), N});
  }

  // Every KeyValue's size is known before it is written: no length to patch, and its bytes
  // (tag, length, key, AnyValue header and member; ~20 per attribute, ~19 attributes per HTTP
  // span) go through one room check and a local pointer. The key and a string value are checked
  // for UTF-8 as they are copied (CopyAscii: the words the copy loads anyway); only when one is
  // not ASCII is the KeyValue written again through ValidUtf8, over the same bytes.
  void WriteAttributes(uint32_t field, const Attributes& attrs) {
    for (const Attribute& a : attrs) {
      uint64_t high = 0;
      char* p = PutKeyValue<false>(field, a.key.view(), a.value, high);
      if ((high & kHighBits) == 0) [[likely]] {
        w_.EndRaw(p);
        continue;
      }
      // Not ASCII: written again over the same bytes (nothing was committed), made valid.
      p = PutKeyValue<true>(field, ValidUtf8(a.key.view(), key_scratch_), a.value, high);
      w_.EndRaw(p);
    }
  }

  // Writes one KeyValue past the writer's position and returns the pointer past it (the caller
  // commits it with EndRaw). The key's and a string value's bytes are ORed into `high`.
  // kMakeValid: the string value goes through ValidUtf8 first (the key is the caller's).
  static_assert(std::is_same_v<std::variant_alternative_t<0, AttributeValue>, std::string> &&
                std::is_same_v<std::variant_alternative_t<1, AttributeValue>, int64_t> &&
                std::is_same_v<std::variant_alternative_t<2, AttributeValue>, double> &&
                std::is_same_v<std::variant_alternative_t<3, AttributeValue>, bool>);
  template <bool kMakeValid>
  [[gnu::always_inline]] char* PutKeyValue(uint32_t field, std::string_view key, const AttributeValue& value,
                                           uint64_t& high) {
    char* p;
    switch (value.index()) {
      case 0: {
        std::string_view v = std::get<0>(value);
        if constexpr (kMakeValid) v = ValidUtf8(v, scratch_);
        p = KeyValueHeader(field, key, LengthDelimitedSize(v.size()), high);
        *p++ = kAnyStringTag;
        p = protobuf::PutVarint(p, v.size());
        return CopyAscii(p, v.data(), v.size(), high);
      }
      case 1: {
        const uint64_t u = static_cast<uint64_t>(std::get<1>(value));  // negative: ten bytes, as protobuf writes
        p = KeyValueHeader(field, key, 1 + VarintSize(u), high);
        *p++ = kAnyIntTag;
        return protobuf::PutVarint(p, u);
      }
      case 2: {
        uint64_t bits;
        std::memcpy(&bits, &std::get<2>(value), sizeof bits);
        p = KeyValueHeader(field, key, 1 + 8, high);
        *p++ = kAnyDoubleTag;
        return protobuf::PutLittle(p, bits);
      }
      default:
        p = KeyValueHeader(field, key, 1 + 1, high);
        *p++ = kAnyBoolTag;
        *p++ = std::get<3>(value) ? 1 : 0;
        return p;
    }
  }

  // Ensures room for the whole KeyValue (`any_size` bytes of AnyValue) and writes the
  // KeyValue's tag and length, its key, and the AnyValue's tag and length. Returns where the
  // AnyValue's one member goes; the caller writes it and ends the raw run. The key's bytes are
  // ORed into `high` (CopyAscii). Inlined into each value type's branch (GCC left it a call:
  // -16% of the encoder's instructions inlined).
  [[gnu::always_inline]] char* KeyValueHeader(uint32_t field, std::string_view key, size_t any_size,
                                               uint64_t& high) {
    const size_t key_size = key.empty() ? 0 : LengthDelimitedSize(key.size());
    const size_t kv_size = key_size + LengthDelimitedSize(any_size);
    char* p = w_.BeginRaw(kMaxVarint * 2 + kv_size);
    p = protobuf::PutVarint(p, protobuf::Tag(field, protobuf::WireType::kLengthDelimited));
    p = protobuf::PutVarint(p, kv_size);
    if (!key.empty()) {
      *p++ = kKeyValueKeyTag;
      p = protobuf::PutVarint(p, key.size());
      p = CopyAscii(p, key.data(), key.size(), high);
    }
    *p++ = kKeyValueValueTag;
    return protobuf::PutVarint(p, any_size);
  }

  void WriteSpanBody(const Span& s) {
    // A span with its attributes takes a few hundred bytes: two length bytes.
    const size_t mark = w_.BeginMessage(field::kScopeSpansSpans, 2);
    Id(field::kSpanTraceId, s.trace_id.bytes, s.trace_id.valid());
    Id(field::kSpanSpanId, s.span_id.bytes, s.span_id.valid());
    String(field::kSpanTraceState, s.trace_state);
    Id(field::kSpanParentSpanId, s.parent_span_id.bytes, s.parent_span_id.valid());
    String(field::kSpanName, s.name);
    if (s.kind != SpanKind::kUnspecified) w_.VarintField(field::kSpanKind, static_cast<uint64_t>(s.kind));
    if (s.start_unix_ns != 0) w_.Fixed64Field(field::kSpanStart, s.start_unix_ns);
    if (s.end_unix_ns != 0) w_.Fixed64Field(field::kSpanEnd, s.end_unix_ns);
    WriteAttributes(field::kSpanAttributes, s.attributes);
    for (const SpanEvent& e : s.events) {
      const size_t ev = w_.BeginMessage(field::kSpanEvents, 1);
      if (e.time_unix_ns != 0) w_.Fixed64Field(field::kEventTime, e.time_unix_ns);
      String(field::kEventName, e.name);
      WriteAttributes(field::kEventAttributes, e.attributes);
      w_.EndMessage(ev);
    }
    for (const SpanLink& l : s.links) {
      const size_t link = w_.BeginMessage(field::kSpanLinks, 1);
      Id(field::kLinkTraceId, l.trace_id.bytes, l.trace_id.valid());
      Id(field::kLinkSpanId, l.span_id.bytes, l.span_id.valid());
      String(field::kLinkTraceState, l.trace_state);
      WriteAttributes(field::kLinkAttributes, l.attributes);
      if (l.flags != 0) w_.Fixed32Field(field::kLinkFlags, l.flags);
      w_.EndMessage(link);
    }
    if (s.status != StatusCode::kUnset || !s.status_message.empty()) {
      const size_t status = w_.BeginMessage(field::kSpanStatus, 1);
      String(field::kStatusMessage, s.status_message);
      if (s.status != StatusCode::kUnset) w_.VarintField(field::kStatusCode, static_cast<uint64_t>(s.status));
      w_.EndMessage(status);
    }
    if (const uint32_t flags = OtlpSpanFlags(s)) w_.Fixed32Field(field::kSpanFlags, flags);
    w_.EndMessage(mark);
  }

  protobuf::Writer w_;
  std::string scratch_;      // a string value that had to be made valid UTF-8
  std::string key_scratch_;  // the same for its key (both are needed at once)
};

}  // namespace

uint32_t OtlpSpanFlags(const Span& span) {
  uint32_t flags = (span.flags & kOtlpTraceFlagsMask) | kOtlpContextHasIsRemote;
  if (span.parent_is_remote) flags |= kOtlpContextIsRemote;
  return flags;
}

void AppendOtlpProtobuf(std::span<const Span> spans, ByteBuffer& out) {
  Encoder(out).Request(spans);
}

size_t AppendOtlpSpan(const Span& span, ByteBuffer& out) {
  const size_t before = out.size();
  Encoder(out).WriteSpan(span);  // the writer commits the size when the encoder goes away
  return out.size() - before;
}

void AppendOtlpRequest(std::string_view encoded, std::span<const EncodedSpan> spans, ByteBuffer& out) {
  Encoder(out).Request(encoded, spans);
}

}  // namespace threadline
