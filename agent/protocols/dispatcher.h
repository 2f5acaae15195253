// The protocols stage's entry: a StreamConsumer that decides per connection, from the first
// bytes either direction carries, which protocol of the table (registry.h) it speaks, and feeds
// both streams to that protocol's ConnectionParser, binding what the parser reports to the
// connection and its role for the RecordSink. A connection no protocol claims is left alone
// after detection (counted), so its bytes cost one lookup per chunk and nothing else.
//
// Bounded: one small state per open connection, removed on close; the parsers bound their own
// buffers. A closed connection's parser goes back to the protocol that made it
// (Protocol::Recycle), which may pool it for the next connection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/common/node_recycler.h"
#include "agent/conn/stream_consumer.h"
#include "agent/protocols/protocol.h"
#include "agent/protocols/record.h"
#include "agent/protocols/registry.h"

namespace threadline {

struct DispatcherConfig {
  ProtocolOptions protocols;
  // The protocols asked, in order (tests pass their own).
  std::span<const ProtocolSpec> table = ProtocolTable();
  // Connections to leave alone whatever they carry (e.g. the agent's own exports arriving at a
  // traced collector on this node: tracing them would make spans of span exports, forever).
  std::function<bool(const ConnectionInfo&)> ignore;
};

class ProtocolDispatcher : public StreamConsumer {
 public:
  ProtocolDispatcher(const DispatcherConfig& config, RecordSink& out, MetricsRegistry& metrics);
  ~ProtocolDispatcher() override;

  void OnConnectionOpened(const ConnectionInfo& c) override;
  void OnStreamData(const ConnectionInfo& c, Direction dir, uint64_t pos,
                    std::span<const uint8_t> bytes, const ChunkMeta& meta) override;
  void OnStreamGap(const ConnectionInfo& c, Direction dir, uint64_t pos, uint64_t len,
                   GapReason reason, const ChunkMeta& meta) override;
  void OnConnectionClosed(const ConnectionInfo& c, CloseReason reason) override;

  size_t tracked() const { return conns_.size(); }

 private:
  struct State {
    bool decided = false;  // parser set, or left alone (no protocol, or ignored)
    uint32_t detect_chunks = 0;  // chunks seen while undecided
    std::unique_ptr<ConnectionParser> parser;
    Protocol* maker = nullptr;  // the protocol that made `parser`: it gets it back at the end
  };
  class BoundOutput;

  void Decide(State& s, const ConnectionInfo& c, Direction dir, std::span<const uint8_t> bytes);
  // After a call that left the parser done: hand the connection to the protocol it switched to
  // (ConnectionParser::TakeHandover), feeding the new parser what the old one held and the rest
  // of the chunk `bytes`.
  void Switch(State& s, const ConnectionInfo& c, Direction dir, std::span<const uint8_t> bytes,
              const ChunkMeta& meta);

  DispatcherConfig config_;
  RecordSink& out_;
  std::vector<std::unique_ptr<Protocol>> protocols_;  // ProtocolTable() order
  std::vector<Counter*> detected_;                    // by protocols_ index
  std::vector<Counter*> switched_;                    // by protocols_ index
  // Connections come and go (one entry each): the map's nodes are reused, not allocated per
  // connection.
  NodeRecycler conn_nodes_;  // before conns_: outlives it
  RecyclingMap<ConnId, State, ConnIdHash> conns_;
  Counter& detected_other_;
  Counter& ignored_;
};

}  // namespace threadline
