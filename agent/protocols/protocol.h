// The shape every protocol has (one folder per protocol under agent/protocols/): a Protocol that
// recognises the protocol from a stream's first bytes and makes one ConnectionParser per
// connection; the parser is fed bytes and gaps of both directions, never kernel events, and
// reports RequestViews and Records (record.h) to the ParserOutput passed to each call. So a
// protocol is unit- and fuzz-testable alone, and the dispatcher knows none of them by name: it
// walks the kProtocols table (registry.h). docs/protocols.md says how to add one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/conn/stream_consumer.h"
#include "agent/protocols/http1/stitcher.h"
#include "agent/protocols/mysql/parser.h"
#include "agent/protocols/postgres/parser.h"
#include "agent/protocols/redis/parser.h"
#include "agent/protocols/http2/limits.h"
#include "agent/protocols/record.h"

namespace threadline {

// Where a connection parser reports, for the call in progress (the dispatcher binds it to the
// connection and its role). Views are valid during the call only.
class ParserOutput {
 public:
  virtual ~ParserOutput() = default;
  virtual void OnRequest(const RequestView&) = 0;
  virtual void OnRecord(Record&&) = 0;
};

// A connection switching protocols on the wire (HTTP/1.1 "Upgrade: h2c" answered by 101): what
// the parser that saw the switch leaves to the protocol that takes the connection over.
struct Handover {
  ProtocolId to = ProtocolId::kHttp1;
  Direction request_dir = Direction::kEgress;
  // The request that asked for the switch, answered in the new protocol (HTTP/2: on stream 1).
  // It was announced as an HTTP/1 request (stream id 0): its Record keeps that identity.
  std::unique_ptr<http1::Message> request;
  // Where the new protocol starts in the direction whose chunk carried the switch (the
  // dispatcher feeds the rest of that chunk to the new parser).
  Direction switch_dir = Direction::kIngress;
  uint64_t resume_pos = 0;
  // Bytes of the request direction that came before the switch was seen, in order.
  std::vector<http1::HeldChunk> held;
};

// One connection of one protocol: both directions in, operations out.
class ConnectionParser {
 public:
  virtual ~ConnectionParser() = default;
  // In-order bytes of one direction (ChunkMeta::pos: the position of bytes[0]).
  virtual void OnData(Direction dir, std::span<const uint8_t> bytes, const ChunkMeta& meta,
                      ParserOutput& out) = 0;
  // `len` bytes that will never be seen.
  virtual void OnGap(Direction dir, uint64_t len, GapReason reason, const ChunkMeta& meta,
                     ParserOutput& out) = 0;
  // The connection ended: operations still open are reported as they stand. When `evicted`,
  // the agent let go of a live connection: nothing is reported, what was open is counted as
  // abandoned.
  virtual void OnClose(uint64_t ts_ns, bool evicted, ParserOutput& out) = 0;
  // No more parsing will happen (given up, upgraded to something else, closed).
  virtual bool done() const = 0;
  // The direction requests travel, once the parser knows it (for connections whose role the
  // kernel did not know).
  virtual std::optional<Direction> request_direction() const = 0;
  // Once done(): whether the connection switched to another protocol the dispatcher should
  // hand it to (taken once).
  virtual std::optional<Handover> TakeHandover() { return std::nullopt; }
};

// Settings of every protocol (one struct, so the dispatcher passes them without knowing them).
struct ProtocolOptions {
  http1::Http1Limits http1;
  postgres::Limits postgres;
  redis::Limits redis;
  mysql::Limits mysql;
  // Database protocols seen from the database server's side (the server process is traced):
  // parsed into SERVER spans only when on (db.server_spans; docs/protocols.md says why not by
  // default).
  bool db_server_spans = false;
  http2::Http2Limits http2;
};

// One protocol for one dispatcher: its settings and counters, shared by its connections.
class Protocol {
 public:
  virtual ~Protocol() = default;
  virtual ProtocolId id() const = 0;
  // Whether a chunk of a connection nobody claimed yet starts this protocol. Asked with each of
  // the connection's first chunks (either direction) until a protocol says yes or the dispatcher
  // gives up; a connection joined mid-stream starts anywhere, so a protocol that can
  // resynchronise may claim what it finds there.
  virtual bool Detect(std::span<const uint8_t> bytes, Direction dir,
                      const ConnectionInfo& conn) const = 0;
  // The parser of a connection this protocol claimed; `first_bytes` (direction `dir`) are the
  // bytes Detect said yes to, fed to the parser next.
  virtual std::unique_ptr<ConnectionParser> NewConnection(const ConnectionInfo& conn,
                                                          std::span<const uint8_t> first_bytes,
                                                          Direction dir) = 0;
  // The parser of a connection another protocol's parser hands over (Handover); nullptr when
  // this protocol cannot take one over. The dispatcher then feeds it `handover.held` and the
  // rest of the chunk that carried the switch.
  virtual std::unique_ptr<ConnectionParser> TakeOver(const ConnectionInfo& /*conn*/,
                                                     Handover& /*handover*/) {
    return nullptr;
  }
  // A parser this protocol made (NewConnection or TakeOver) whose connection ended (closed
  // through OnClose, or evicted): the protocol may keep it for a later NewConnection rather
  // than destroy it (a connection per request would otherwise allocate one per request).
  virtual void Recycle(std::unique_ptr<ConnectionParser> /*parser*/) {}
};

// A row of the protocol table: how to make a Protocol.
struct ProtocolSpec {
  std::string_view name;
  std::unique_ptr<Protocol> (*create)(const ProtocolOptions& options, MetricsRegistry& metrics);
};

}  // namespace threadline
