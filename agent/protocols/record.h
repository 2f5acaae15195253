// What the protocols stage hands to the spans stage, the same for every protocol: one Record per
// operation (an HTTP/1 request and its response, an HTTP/2 stream, a database call), and a
// RequestView as soon as an operation's request is whole (before its response), so the span it
// will become can be named as a parent while it is still in progress.
//
// The neutral part is what identity and parenting use: timing and threads of the first and last
// byte each way (with their stream positions, to which the kernel and TCP options tie context),
// the stream id, the incoming trace carrier and correlation evidence. The protocol's own facts
// (method, status, headers, statement...) ride in `detail`, read only by Describe
// (protocols/describe.h), the one place that knows semantic conventions.
//
// Views (carrier, evidence) point into the protocol's parsed messages: valid during the call
// that hands the view or record over, never kept.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <variant>

#include "agent/conn/stream_consumer.h"
#include "agent/protocols/http1/message.h"
#include "agent/protocols/http2/types.h"
#include "agent/protocols/mysql/types.h"
#include "agent/protocols/outcome.h"
#include "agent/protocols/postgres/types.h"
#include "agent/protocols/redis/types.h"

namespace threadline {

enum class ProtocolId : uint8_t { kHttp1, kPostgres, kRedis, kHttp2, kMySql };
std::string_view ToString(ProtocolId p);  // "http1", "postgres", "redis", "http2", "mysql", as in metric labels

// One direction of one operation: the syscalls that carried its first and its last byte
// (ChunkMeta::pos of `first` is the stream position of the first byte).
struct MessageEdge {
  bool seen = false;
  ChunkMeta first;
  ChunkMeta last;
};

// A request's carrier of trace context, read the way OpenTelemetry propagators read one
// (TextMapGetter): every value of a field, in order, field names ASCII case-insensitive.
class CarrierReader {
 public:
  virtual ~CarrierReader() = default;
  // Stores up to out.size() values of `key` in `out` (in order) and returns how many there are.
  virtual size_t Values(std::string_view key, std::span<std::string_view> out) const = 0;
  // The first value of each of `keys` into out[i] (empty when absent; out.size() >= keys.size()).
  // For a rule that reads several fields of every request (the forwarded rule's five
  // correlation headers): a carrier can answer all in one look at its fields instead of one
  // look (and one call) per key.
  virtual void FirstValues(std::span<const std::string_view> keys, std::span<std::string_view> out) const {
    for (size_t i = 0; i < keys.size(); ++i) {
      std::array<std::string_view, 1> v;
      out[i] = Values(keys[i], v) >= 1 ? v[0] : std::string_view();
    }
  }
};

// What a parenting rule may correlate a request with when no carrier decides: where a request
// came from and what it asked for, as the protocol saw it (empty when absent). The carrier
// reader gives any other field.
struct CorrelationEvidence {
  std::string_view target;         // HTTP request target; a statement for databases
  std::string_view request_id;     // X-Request-Id
  std::string_view forwarded_for;  // X-Forwarded-For (first hop first, as sent)
};

// A request that became whole: its span's identity is fixed now (spans/span_builder.h).
struct RequestView {
  ProtocolId protocol = ProtocolId::kHttp1;
  // The stream within the connection (HTTP/2 stream id); 0 for protocols with one stream.
  uint32_t stream_id = 0;
  MessageEdge edge;                        // the request's first and last byte
  const CarrierReader* carrier = nullptr;  // nullptr: the protocol carries no trace context
  CorrelationEvidence evidence;

  // Identifies the request within its connection and direction, for matching a Record with
  // its RequestView (and with context tied to a stream position).
  bool SameRequest(const RequestView& o) const {
    return stream_id == o.stream_id && edge.first.pos == o.edge.first.pos &&
           edge.first.ts_ns == o.edge.first.ts_ns;
  }
};

// The protocol's own facts, for Describe. One alternative per protocol.
using RecordDetail = std::variant<std::monostate, http1::Exchange, postgres::Operation,
                                  redis::Operation, http2::StreamRecord, mysql::Operation>;

// One operation, ended.
struct Record {
  RequestView request;  // request.edge.seen is false when only a response was seen
  MessageEdge response;
  Outcome outcome = Outcome::kComplete;
  uint64_t closed_ts_ns = 0;  // kClosedBeforeResponse: when the connection closed (boot clock)
  RecordDetail detail;
};

// Where the protocols stage delivers, for every protocol. `role` is the connection's role as the
// protocol saw it: the kernel's or resolver's when known, else the direction requests travel
// (received: server, sent: client).
class RecordSink {
 public:
  virtual ~RecordSink() = default;
  // A connection the protocols stage will see bytes of.
  virtual void OnConnectionOpened(const ConnectionInfo&) {}
  // A request is whole, before its response (every Record with a request had its RequestView
  // first, with the same stream id and first byte).
  virtual void OnRequest(const ConnectionInfo&, Role /*role*/, const RequestView&) {}
  virtual void OnRecord(const ConnectionInfo&, Role role, Record&&) = 0;
  // The connection is gone; no more calls for it.
  virtual void OnConnectionDone(const ConnectionInfo&) {}
};

}  // namespace threadline
