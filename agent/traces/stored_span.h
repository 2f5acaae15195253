// A span as the trace store keeps it: the fields the views need as plain members, every
// attribute (and the span's events, flattened) packed into one byte string.
//
// Why not keep the Span itself: the store sits beside the output (a tee), so it needs its own
// copy of every span, and copying a Span allocates once per attribute key and value (15-20
// allocations for an HTTP span). Packing the attributes costs one allocation and about half
// the memory; the views unpack them only for the one trace a person opens.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "agent/spans/span.h"

namespace threadline {

struct StoredSpan {
  SpanId span_id;
  SpanId parent_span_id;  // invalid: a root
  uint64_t start_unix_ns = 0;
  uint64_t end_unix_ns = 0;
  SpanKind kind = SpanKind::kUnspecified;
  StatusCode status = StatusCode::kUnset;
  bool sampled = true;
  uint32_t pid = 0;
  std::shared_ptr<const Resource> resource;  // service.name and the rest; may be null
  std::string name;
  std::string status_message;
  // The attributes, then each event's attributes as "event.<event name>.<key>"; see
  // PackAttributes. Read with ForEachAttribute.
  std::string packed_attributes;

  static StoredSpan From(const Span& span);
  // Makes this the stored form of `span`, reusing the strings' buffers (the trace store hands
  // in spans of evicted traces, so a span stored in steady state allocates nothing).
  void Assign(const Span& span);

  uint64_t duration_ns() const { return end_unix_ns > start_unix_ns ? end_unix_ns - start_unix_ns : 0; }
  // service.name of the resource, else "unknown_service" (what OpenTelemetry SDKs default to).
  std::string_view service() const;
  // The string attribute `key`, or empty.
  std::string_view StringAttribute(std::string_view key) const;
  // Heap and inline bytes this span holds (what the store's byte bound counts); the resource
  // is shared by a process's spans and owned by the resource cache, so it is not counted.
  size_t MemoryBytes() const;
};

// Packs `attrs` (and the events' attributes) into `out`, appending.
void PackAttributes(const Attributes& attrs, const std::vector<SpanEvent>& events, std::string& out);

// Calls fn(key, value) for each packed attribute, in order. A truncated or garbled buffer
// stops the walk (never reads past the end).
template <typename Fn>
void ForEachAttribute(std::string_view packed, Fn&& fn);

// ---- implementation of the template ----
namespace packed_detail {
enum Tag : uint8_t { kString = 's', kInt = 'i', kDouble = 'd', kBool = 'b' };
bool ReadLength(std::string_view& in, size_t& len);
bool Next(std::string_view& in, std::string_view& key, AttributeValue& value);
}  // namespace packed_detail

template <typename Fn>
void ForEachAttribute(std::string_view packed, Fn&& fn) {
  std::string_view key;
  AttributeValue value;
  while (!packed.empty() && packed_detail::Next(packed, key, value)) fn(key, value);
}

}  // namespace threadline
