// Span model -> OTLP protobuf bytes: a serialized ExportTraceServiceRequest (the project's own
// exporter/proto/ definitions, field numbers from the OTLP specification), written straight
// from our structs into a reused buffer. Both OTLP transports send these bytes as they are.
//
// Why not protobuf's generated classes: building one message object per span, attribute and
// value, then serializing it, cost ~87 heap allocations and ~54,000 instructions per span
// (pipeline_bench, keep-alive); writing the wire format directly costs neither the objects nor
// the copies of every string into them. The bytes are the same: the unit tests decode them with
// the generated classes and check that re-serializing gives back exactly our bytes (canonical
// field order, minimal varints, proto3 defaults omitted).
//
// Mapping, field by field:
//   ResourceSpans: one per resource (GroupByResource), resource.attributes from
//     Span::resource (the Resource message is always present, empty when a span has none), so a
//     resource's attributes are written once per request; one ScopeSpans with scope
//     {kScopeName, kScopeVersion}; schema_url unset.
//   Span: trace_id / span_id as 16 / 8 raw bytes (omitted when invalid), parent_span_id omitted
//     for a root span, trace_state, name, kind (same numbering), start/end_time_unix_nano,
//     attributes, events, links, status (code + message; omitted when UNSET with no message,
//     which OTLP defines as the same thing).
//   flags = W3C trace flags (Span::flags & 0xff) | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
//     (0x100: we always know) | SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK (0x200) when
//     Span::parent_is_remote.
//   Link.flags = SpanLink::flags unchanged (the span builder decides what it knows).
//   AttributeValue string/int64/double/bool -> AnyValue string/int/double/bool_value.
//   Strings that are not valid UTF-8 (a raw byte in a URL path) have each offending byte
//   replaced by U+FFFD, as our JSON writer does: protobuf `string` fields must be UTF-8, and
//   receivers written in Go reject the whole request otherwise.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "agent/spans/span.h"
#include "exporter/byte_writer.h"

namespace threadline {

// SpanFlags bits of the OTLP specification (trace.proto, enum SpanFlags).
inline constexpr uint32_t kOtlpTraceFlagsMask = 0x000000ff;
inline constexpr uint32_t kOtlpContextHasIsRemote = 0x00000100;
inline constexpr uint32_t kOtlpContextIsRemote = 0x00000200;

// The OTLP Span.flags value for `span` (see the mapping above).
uint32_t OtlpSpanFlags(const Span& span);

// Appends one ExportTraceServiceRequest holding all `spans`, grouped by resource, in input
// order within a group. An empty input appends nothing (the empty request). The same bytes as
// AppendOtlpSpan for each span and then AppendOtlpRequest over them.
void AppendOtlpProtobuf(std::span<const Span> spans, ByteBuffer& out);

// A span encoded ahead of its request (BatchSpanExporter encodes each span on the thread that
// built it, while it is still in cache, and sends the bytes a batch later): where its framed
// bytes are in a buffer, and its resource (which the request writes once per group).
struct EncodedSpan {
  std::shared_ptr<const Resource> resource;  // may be null: the group without a resource
  uint32_t offset = 0;                       // in the buffer given to AppendOtlpRequest
  uint32_t size = 0;
};

// Appends `span` as one framed ScopeSpans.spans field (tag, length, Span message), the bytes
// AppendOtlpRequest concatenates. Returns the number of bytes appended.
size_t AppendOtlpSpan(const Span& span, ByteBuffer& out);

// Appends one ExportTraceServiceRequest holding the spans encoded in `encoded` (AppendOtlpSpan's
// bytes, located by `spans`), grouped by resource as GroupByResource groups spans: by pointer,
// groups with equal attributes merged, in order of first appearance, input order within a
// group. An empty `spans` appends nothing.
void AppendOtlpRequest(std::string_view encoded, std::span<const EncodedSpan> spans, ByteBuffer& out);

}  // namespace threadline
