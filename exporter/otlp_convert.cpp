#include "exporter/otlp_convert.h"

#include <algorithm>
#include <type_traits>

#include "exporter/resource_groups.h"

namespace threadline {

namespace {

template <size_t N>
void SetId(const std::array<uint8_t, N>& bytes, bool valid, std::string* out) {
  if (valid) out->assign(reinterpret_cast<const char*>(bytes.data()), N);
}

void ToAnyValue(const AttributeValue& v, otlp_pb::common::AnyValue* out) {
  std::visit(
      [out](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          out->set_string_value(x);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          out->set_int_value(x);
        } else if constexpr (std::is_same_v<T, double>) {
          out->set_double_value(x);
        } else {
          static_assert(std::is_same_v<T, bool>);
          out->set_bool_value(x);
        }
      },
      v);
}

void FillRequest(std::span<const Span> spans, otlp_pb::collector::ExportTraceServiceRequest* req) {
  for (const ResourceGroup& group : GroupByResource(spans)) {
    otlp_pb::trace::ResourceSpans* rs = req->add_resource_spans();
    // Always present (empty when unknown), as the Collector writes it.
    auto* resource = rs->mutable_resource();
    if (group.resource != nullptr) ToOtlpAttributes(group.resource->attributes, resource->mutable_attributes());
    otlp_pb::trace::ScopeSpans* ss = rs->add_scope_spans();
    ss->mutable_scope()->set_name(std::string(kScopeName));
    ss->mutable_scope()->set_version(std::string(kScopeVersion));
    ss->mutable_spans()->Reserve(static_cast<int>(group.spans.size()));
    for (const Span* span : group.spans) ToOtlpSpan(*span, ss->add_spans());
  }
}

}  // namespace

uint32_t OtlpSpanFlags(const Span& span) {
  uint32_t flags = (span.flags & kOtlpTraceFlagsMask) | kOtlpContextHasIsRemote;
  if (span.parent_is_remote) flags |= kOtlpContextIsRemote;
  return flags;
}

void ToOtlpAttributes(const Attributes& attrs,
                      google::protobuf::RepeatedPtrField<otlp_pb::common::KeyValue>* out) {
  out->Reserve(out->size() + static_cast<int>(attrs.size()));
  for (const Attribute& a : attrs) {
    otlp_pb::common::KeyValue* kv = out->Add();
    kv->set_key(a.key);
    ToAnyValue(a.value, kv->mutable_value());
  }
}

void ToOtlpSpan(const Span& span, otlp_pb::trace::Span* out) {
  SetId(span.trace_id.bytes, span.trace_id.valid(), out->mutable_trace_id());
  SetId(span.span_id.bytes, span.span_id.valid(), out->mutable_span_id());
  SetId(span.parent_span_id.bytes, span.parent_span_id.valid(), out->mutable_parent_span_id());
  out->set_trace_state(span.trace_state);
  out->set_flags(OtlpSpanFlags(span));
  out->set_name(span.name);
  out->set_kind(static_cast<otlp_pb::trace::Span::SpanKind>(span.kind));
  out->set_start_time_unix_nano(span.start_unix_ns);
  out->set_end_time_unix_nano(span.end_unix_ns);
  ToOtlpAttributes(span.attributes, out->mutable_attributes());

  out->mutable_events()->Reserve(static_cast<int>(span.events.size()));
  for (const SpanEvent& e : span.events) {
    otlp_pb::trace::Span::Event* ev = out->add_events();
    ev->set_time_unix_nano(e.time_unix_ns);
    ev->set_name(e.name);
    ToOtlpAttributes(e.attributes, ev->mutable_attributes());
  }

  out->mutable_links()->Reserve(static_cast<int>(span.links.size()));
  for (const SpanLink& l : span.links) {
    otlp_pb::trace::Span::Link* link = out->add_links();
    SetId(l.trace_id.bytes, l.trace_id.valid(), link->mutable_trace_id());
    SetId(l.span_id.bytes, l.span_id.valid(), link->mutable_span_id());
    link->set_trace_state(l.trace_state);
    ToOtlpAttributes(l.attributes, link->mutable_attributes());
    link->set_flags(l.flags);
  }

  if (span.status != StatusCode::kUnset || !span.status_message.empty()) {
    out->mutable_status()->set_code(static_cast<otlp_pb::trace::Status::StatusCode>(span.status));
    out->mutable_status()->set_message(span.status_message);
  }
}

otlp_pb::collector::ExportTraceServiceRequest ToExportRequest(std::span<const Span> spans) {
  otlp_pb::collector::ExportTraceServiceRequest req;
  FillRequest(spans, &req);
  return req;
}

std::vector<otlp_pb::collector::ExportTraceServiceRequest> ToExportRequests(
    std::span<const Span> spans, size_t max_spans_per_request) {
  std::vector<otlp_pb::collector::ExportTraceServiceRequest> out;
  const size_t step = max_spans_per_request == 0 ? spans.size() : max_spans_per_request;
  for (size_t off = 0; off < spans.size(); off += step) {
    FillRequest(spans.subspan(off, std::min(step, spans.size() - off)), &out.emplace_back());
  }
  return out;
}

}  // namespace threadline
