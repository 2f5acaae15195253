// W3C Trace Context (https://www.w3.org/TR/trace-context/, levels 1 and 2): the `traceparent`
// and `tracestate` headers a request may carry. A valid traceparent is the first choice of
// parent for a span (ARCHITECTURE.md, spans); tracestate rides along unchanged.
//
// Parsing is strict about format and lenient about consequences: anything malformed yields
// nullopt, and the caller starts a new trace, exactly as the spec asks ("restart the trace").
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "agent/spans/span.h"

namespace threadline {

// 32 lowercase hex digits -> TraceId; 16 -> SpanId. nullopt on a wrong length, a non-hex or
// uppercase digit (the spec makes ids lowercase so that two producers agree on equality), or an
// all-zero id (invalid by the spec). So a returned id is always valid().
std::optional<TraceId> TraceIdFromHex(std::string_view hex);
std::optional<SpanId> SpanIdFromHex(std::string_view hex);

struct TraceParent {
  TraceId trace_id;
  SpanId parent_id;     // the span id of the caller: our span's parent
  uint8_t flags = 0;    // trace-flags as received (bit 0 sampled, level 2 bit 1 random)
  uint8_t version = 0;  // 0x00..0xfe; a higher version was read by the version-00 rules

  bool sampled() const { return (flags & kTraceFlagSampled) != 0; }
  bool operator==(const TraceParent&) const = default;
};

// Parses one traceparent header value. Leading/trailing spaces and tabs (OWS) are ignored.
// Version 00 must be exactly "00-<32 hex>-<16 hex>-<2 hex>". Version ff is invalid. A higher
// version is accepted when its first 55 characters parse as version 00 and the value ends there
// or continues with '-' (the spec's forward-compatibility rule); what follows is ignored.
std::optional<TraceParent> ParseTraceParent(std::string_view value);

// "00-<trace>-<span>-<flags>", always version 00 (the only one we can vouch for).
std::string FormatTraceParent(const TraceId& trace_id, const SpanId& span_id, uint8_t flags);
std::string FormatTraceParent(const TraceParent& tp);

// Maximum list-members in tracestate (spec: 32).
inline constexpr size_t kMaxTraceStateMembers = 32;

// Validates a (combined) tracestate value against the spec grammar: comma-separated list-members
// `key=value` with optional OWS around each; empty members are allowed and not counted; at most
// 32 members; no duplicate keys; key is simple-key (lcalpha then up to 255 of lcalpha, digit,
// `_-*/`) or multi-tenant `tenant@system` (tenant up to 241 chars starting lcalpha/digit, system
// up to 14 starting lcalpha); value 1-256 printable ASCII chars without ',' or '=', not ending
// in a space.
bool IsValidTraceState(std::string_view value);

// Joins several tracestate header lines into one value with ',' (RFC 9110 field combination),
// skipping empty lines.
std::string CombineTraceState(std::span<const std::string_view> lines);

struct TraceContext {
  TraceParent parent;
  std::string trace_state;  // the raw combined value when valid, else empty
};

// The trace context of a request, from all the values of its traceparent and tracestate headers
// (in the order they appeared). nullopt when there is no traceparent, more than one (the spec
// treats that as invalid), or it does not parse. An invalid tracestate is dropped, never the
// traceparent; tracestate is never kept without a valid traceparent.
std::optional<TraceContext> ExtractTraceContext(std::span<const std::string_view> traceparent_values,
                                                std::span<const std::string_view> tracestate_values);

}  // namespace threadline
