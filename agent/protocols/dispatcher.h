// The protocols stage's entry: a StreamConsumer that decides per connection, from the first
// bytes either direction carries, which protocol it speaks, and hands the streams to that
// protocol's connection parser. Today HTTP/1.x; a connection that is not is left alone after
// detection (counted), so its bytes cost one lookup per chunk and nothing else.
//
// Bounded: one small state per open connection, removed on close; the parsers bound their own
// buffers (see http1/stitcher.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "agent/common/metrics.h"
#include "agent/conn/stream_consumer.h"
#include "agent/protocols/http1/stitcher.h"

namespace threadline {

// What the protocols stage produces, for the spans stage.
class ExchangeSink {
 public:
  virtual ~ExchangeSink() = default;
  // `role` is the connection's role as the protocol saw it: the kernel's or resolver's when
  // known, else the direction requests travel (received: server, sent: client).
  //
  // A whole request was read (server) or written (client), before its response: the span it
  // will become is in progress from now on (used to parent spans by thread).
  virtual void OnHttp1Request(const ConnectionInfo&, Role /*role*/,
                              const http1::Message& /*request*/) {}
  virtual void OnHttp1Exchange(const ConnectionInfo&, Role role, http1::Exchange&&) = 0;
  // A connection the protocols stage will see bytes of.
  virtual void OnConnectionOpened(const ConnectionInfo&) {}
  // The connection is gone; no more calls for it.
  virtual void OnConnectionDone(const ConnectionInfo&) {}
};

struct DispatcherConfig {
  http1::Http1Limits http1;
  // Bytes of a stream inspected before it is declared "not a protocol we parse".
  uint32_t detect_bytes = 16;
  // Connections to leave alone whatever they carry (e.g. the agent's own exports arriving at a
  // traced collector on this node: tracing them would make spans of span exports, forever).
  std::function<bool(const ConnectionInfo&)> ignore;
};

class ProtocolDispatcher : public StreamConsumer {
 public:
  ProtocolDispatcher(const DispatcherConfig& config, ExchangeSink& out, MetricsRegistry& metrics);
  ~ProtocolDispatcher() override;

  void OnConnectionOpened(const ConnectionInfo& c) override;
  void OnStreamData(const ConnectionInfo& c, Direction dir, uint64_t pos,
                    std::span<const uint8_t> bytes, const ChunkMeta& meta) override;
  void OnStreamGap(const ConnectionInfo& c, Direction dir, uint64_t pos, uint64_t len,
                   GapReason reason, const ChunkMeta& meta) override;
  void OnConnectionClosed(const ConnectionInfo& c, CloseReason reason) override;

  size_t tracked() const { return conns_.size(); }

 private:
  enum class Protocol : uint8_t { kUndecided, kHttp1, kOther };
  struct State {
    Protocol protocol = Protocol::kUndecided;
    uint32_t detect_chunks = 0;  // chunks seen while undecided
    std::unique_ptr<http1::Http1Connection> http1;
  };

  State& StateFor(const ConnectionInfo& c);
  Role RoleOf(const State& s) const;
  void Decide(State& s, const ConnectionInfo& c, Direction dir, std::span<const uint8_t> bytes);

  DispatcherConfig config_;
  ExchangeSink& out_;
  MetricsRegistry& metrics_;
  std::unordered_map<ConnId, State, ConnIdHash> conns_;
  // The connection whose bytes are being parsed: exchanges are emitted synchronously from the
  // parser, and their callback reads the ConnectionInfo from here.
  const ConnectionInfo* current_ = nullptr;
  const State* current_state_ = nullptr;
  Counter& detected_http1_;
  Counter& detected_other_;
  Counter& ignored_;
  Counter& abandoned_;
};

}  // namespace threadline
