// Describe: a Record as a span's semantic part (name, status, attributes, events), per the
// OpenTelemetry semantic conventions of its protocol. The only place convention names live;
// the span builder adds identity, parent and timing, which know nothing of any protocol.
#pragma once

#include <string>
#include <vector>

#include "agent/conn/stream_consumer.h"
#include "agent/protocols/http/route.h"
#include "agent/protocols/record.h"
#include "agent/spans/redaction.h"
#include "agent/spans/span.h"
#include "agent/spans/span_buffers.h"

namespace threadline {

// Settings of the database conventions (protocols/db/semconv.h).
struct DbDescribeOptions {
  // db.query.text, always sanitised (literals as ?); off: no statement text at all
  // (db.query_text, --db-query-text, THREADLINE_DB_QUERY_TEXT).
  bool query_text = true;
};

// Settings the conventions need (routes and redaction for HTTP, the query text switch for
// databases).
struct DescribeOptions {
  RouteTable routes;           // user route patterns; unmatched paths get an inferred route
  RedactionOptions redaction;  // extra sensitive query keys and header names
  DbDescribeOptions db;
};

// A Record as the conventions name it. Event times are on the boot clock (the kernel's, as in
// ChunkMeta): the span builder converts them; 0 means at the span's end.
struct ExchangeView {
  std::string name;
  StatusCode status = StatusCode::kUnset;
  std::string status_message;
  Attributes attributes;
  std::vector<SpanEvent> events;
};

// For every protocol's conventions, what an outcome adds: closed before the response is an
// ERROR with an `exception` event saying so; a response lost to a gap is
// threadline.response.lost. Other outcomes add nothing here.
void AddOutcome(Outcome outcome, ExchangeView& out);
// The connection's addresses as text, each formatted at most once (on first use) and kept
// here, not in a string: a server span names the peer twice (network.peer.address,
// client.address) and a client span names it in server.address too; formatting and copying a
// std::string for each was ~460 instructions per HTTP server span (callgrind, pipeline_bench).
class AddressText {
 public:
  explicit AddressText(const ConnectionInfo& conn) : conn_(conn) {}
  AddressText(const AddressText&) = delete;
  AddressText& operator=(const AddressText&) = delete;
  std::string_view remote() {
    if (remote_.empty()) remote_ = conn_.tuple.remote.Format(remote_buf_);
    return remote_;
  }
  std::string_view local() {
    if (local_.empty()) local_ = conn_.tuple.local.Format(local_buf_);
    return local_;
  }

 private:
  const ConnectionInfo& conn_;
  std::string_view remote_, local_;
  char remote_buf_[IpAddress::kTextSize];
  char local_buf_[IpAddress::kTextSize];
};

// network.peer.address/port and network.type when the connection's tuple is known, and
// network.transport.
void AddNetworkPeer(const ConnectionInfo& conn, AddressText& text, Attributes& attrs);
inline void AddNetworkPeer(const ConnectionInfo& conn, Attributes& attrs) {
  AddressText text(conn);
  AddNetworkPeer(conn, text, attrs);
}
// Attribute helpers for the protocols' Describe functions (built in place: EmplaceAttribute,
// spans/span.h).
// A long value (url.path) goes into a spent span's string buffer (span_buffers.h).
// The value is made once, inside the attribute in the vector: `InPlaceValue` converts to the
// AttributeValue that initialises the attribute's member (a conversion function's prvalue, so
// no temporary variant is made, moved and destroyed). Emplacing an empty string and assigning
// the value to it was ~190 instructions per string attribute (the variant moved, then the
// generic `_M_replace`), ~12 per HTTP span (callgrind, pipeline_bench).
template <class Make>
struct InPlaceValue {
  Make make;
  operator AttributeValue() const { return make(); }
};
template <class Make>
InPlaceValue(Make) -> InPlaceValue<Make>;

inline void AddString(Attributes& a, AttributeKey key, std::string_view value) {
  if (value.size() <= std::string().capacity()) {  // fits a std::string's own storage
    EmplaceAttribute(a, std::move(key), InPlaceValue{[value] {
                       return AttributeValue(std::in_place_type<std::string>, value.data(), value.size());
                     }});
    return;
  }
  EmplaceAttribute(a, std::move(key), InPlaceValue{[value] {
                     AttributeValue v(std::in_place_type<std::string>, SpanBuffers::Local().TakeString());
                     std::get_if<std::string>(&v)->assign(value);
                     return v;
                   }});
}
inline void AddInt(Attributes& a, AttributeKey key, int64_t value) {
  EmplaceAttribute(a, std::move(key), InPlaceValue{[value] { return AttributeValue(std::in_place_type<int64_t>, value); }});
}

// `role` is kServer or kClient. The record's views must still be valid (the call that handed
// the record over).
void Describe(const Record& record, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out);

}  // namespace threadline
