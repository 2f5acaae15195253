// Span model -> OTLP protobuf messages (our own exporter/proto/ definitions). The OTLP gRPC
// and OTLP/HTTP protobuf exporters send what this builds; the JSON-lines output writes the
// same structure by hand (json_lines.h).
//
// Mapping, field by field:
//   ResourceSpans: one per resource (GroupByResource), resource.attributes from
//     Span::resource (left empty when a span has none); one ScopeSpans with scope
//     {kScopeName, kScopeVersion}; schema_url unset.
//   Span: trace_id / span_id as 16 / 8 raw bytes (empty when invalid), parent_span_id empty for
//     a root span, trace_state, name, kind (same numbering), start/end_time_unix_nano,
//     attributes, events, links, status (code + message; left unset when UNSET with no
//     message, which OTLP defines as the same thing).
//   flags = W3C trace flags (Span::flags & 0xff) | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
//     (0x100: we always know) | SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK (0x200) when
//     Span::parent_is_remote.
//   Link.flags = SpanLink::flags unchanged (the span builder decides what it knows).
//   AttributeValue string/int64/double/bool -> AnyValue string/int/double/bool_value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "agent/spans/span.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace threadline {

namespace otlp_pb {
namespace common = ::opentelemetry::proto::common::v1;
namespace trace = ::opentelemetry::proto::trace::v1;
namespace collector = ::opentelemetry::proto::collector::trace::v1;
}  // namespace otlp_pb

// SpanFlags bits of the OTLP specification (trace.proto, enum SpanFlags).
inline constexpr uint32_t kOtlpTraceFlagsMask = 0x000000ff;
inline constexpr uint32_t kOtlpContextHasIsRemote = 0x00000100;
inline constexpr uint32_t kOtlpContextIsRemote = 0x00000200;

// The OTLP Span.flags value for `span` (see the mapping above).
uint32_t OtlpSpanFlags(const Span& span);

// One request holding all `spans`, grouped by resource, in input order within a group.
otlp_pb::collector::ExportTraceServiceRequest ToExportRequest(std::span<const Span> spans);

// Like ToExportRequest, but no request holds more than `max_spans_per_request` spans (0: no
// limit). Consecutive runs of the input go to consecutive requests, so a resource may appear
// in several of them. An empty input gives no requests.
std::vector<otlp_pb::collector::ExportTraceServiceRequest> ToExportRequests(
    std::span<const Span> spans, size_t max_spans_per_request);

// Building blocks, exposed for tests and for encoders that batch differently.
void ToOtlpSpan(const Span& span, otlp_pb::trace::Span* out);
void ToOtlpAttributes(const Attributes& attrs,
                      google::protobuf::RepeatedPtrField<otlp_pb::common::KeyValue>* out);

}  // namespace threadline
