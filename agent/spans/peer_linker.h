// Same-node linking: when both ends of a TCP connection are traced by this agent, the CLIENT
// span of the calling process is the parent of the SERVER span of the called one, even though
// no header carried the context. The two ends are found by the 4-tuple (the client's
// local->remote is the server's remote->local) and the calls on one connection pair up in
// order (HTTP/1.x answers requests in order on both ends).
//
// Ordering: the server can read a request before the client's write has returned (the kernel
// delivers the bytes during the write), so the server's request may be seen before the client's.
// The linker therefore works both ways: a client call waits for its server request, and a
// server request on a tuple that a local client connection owns can wait for its client call
// (the caller then completes the server span's identity when it arrives).
//
// Streams: calls on one HTTP/2 connection are multiplexed, and both ends number them the same
// way, so a call with a stream id (non-zero) pairs with the server request of the same stream
// id; stream 0 (one-stream protocols) pairs in order.
//
// Bounded: per-tuple queues are capped and dropped with their connections; everything is
// counted. Single-threaded.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>

#include "agent/common/metrics.h"
#include "agent/ingest/event_types.h"
#include "agent/spans/span.h"

namespace threadline {

class PeerLinker {
 public:
  // The context a client call hands to the server span of the same request.
  struct Call {
    TraceId trace_id;
    SpanId span_id;  // the CLIENT span: the server span's parent
    uint32_t flags = 0;
    std::string trace_state;
    uint64_t ts_ns = 0;  // when the request was written (boot clock)
    uint32_t stream_id = 0;  // HTTP/2 stream; 0: pairs in order
  };
  // A server request waiting for its client call: an opaque token the caller resolves.
  using Token = uint64_t;

  explicit PeerLinker(MetricsRegistry& metrics);

  // A traced client connection with a known tuple exists (or no longer does).
  void OnClientOpened(const Tuple& client_tuple);
  void OnClientClosed(const Tuple& client_tuple);
  // A traced server connection closed: forget what waits on it.
  void OnServerClosed(const Tuple& server_tuple);

  // Client side: a request was written. If a server request already waits for it, returns
  // that server's token (the caller applies `call` to it); else queues the call.
  std::optional<Token> OnClientCall(const Tuple& client_tuple, const Call& call);

  // Server side: a request was read at `ts_ns`. Returns the matching client call if it came
  // first. Else, when a local traced client owns the other end, returns nullopt and sets
  // `*wait` to a token that OnClientCall will hand back; `*wait` stays 0 otherwise (the peer
  // is not traced here: no link possible).
  std::optional<Call> OnServerRequest(const Tuple& server_tuple, uint32_t stream_id,
                                      uint64_t ts_ns, Token* wait);

  // The caller gave up waiting for a token (the server span had to be finished first).
  void Abandon(Token token);

  size_t waiting_calls() const;

 private:
  struct Key {
    IpAddress client_ip;
    IpAddress server_ip;
    uint16_t client_port = 0;
    uint16_t server_port = 0;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept;
  };
  struct Waiting {
    Token token = 0;
    uint32_t stream_id = 0;
  };
  struct Pair {
    bool client_open = false;
    std::deque<Call> calls;       // client calls whose server request was not seen yet
    std::deque<Waiting> waiting;  // server requests waiting for their client call
  };

  static Key FromClient(const Tuple& t);
  static Key FromServer(const Tuple& t);
  void MaybeErase(const Key& k);

  std::unordered_map<Key, Pair, KeyHash> pairs_;
  Token next_token_ = 1;
  Counter& linked_;
  Counter& waited_;
  Counter& unmatched_calls_;
  Counter& abandoned_;
};

}  // namespace threadline
