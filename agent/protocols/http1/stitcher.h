// One HTTP/1.x connection: both directions' parsers, and the pairing of requests with their
// responses in order (keep-alive, pipelining), emitted as Exchanges.
//
// Results go to the Output passed to each call, at the end of that call: what the parsers
// finish inside a call is held in the pending queue (the finished prefix) until then, so no
// callback ever needs to know which connection or output is "current".
//
// Server connections carry requests on ingress and responses on egress; client connections
// the reverse; Role::kUnknown decides from the first bytes (detect.h). Memory is bounded: one
// unfinished line per direction (<= the header-block limit) and at most max_pending_requests
// requests waiting for responses (more are counted and dropped, their responses skipped so
// pairing stays aligned).
//
// Upgrade (RFC 9110 §7.8): after a request asking for one, the request side holds what follows
// (bounded) until the answer: a 101 stops both parsers (bytes after it belong to the new
// protocol); any other final answer replays the held bytes as HTTP/1. A 101 to a protocol named
// in `switch_tokens` (h2c) is not reported here: TakeSwitch() hands the request and the new
// protocol's first bytes to whoever parses it next.
//
// Not thread-safe; an Output must not call back into the connection.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/conn/stream_consumer.h"
#include "agent/protocols/http1/message.h"
#include "agent/protocols/http1/parser.h"

namespace threadline::http1 {

struct Http1Limits {
  ParserLimits parser;
  size_t max_pending_requests = 64;
  // Failures in a row with no valid message in between before the connection is given up.
  uint32_t max_consecutive_failures = 8;
};

// The HTTP/1 counters, looked up once and shared by every connection.
struct Http1Metrics {
  explicit Http1Metrics(MetricsRegistry& metrics);
  std::array<Counter*, kFailureReasonCount> failures{};  // by FailureReason
  std::array<Counter*, kOutcomeCount> exchanges{};       // by Outcome
  Counter* abandoned = nullptr;  // requests of connections the agent evicted unanswered
};

// Bytes of one direction kept for a later parser: a chunk (meta.pos: its first byte), or a gap
// of `gap` bytes.
struct HeldChunk {
  ChunkMeta meta;
  std::vector<uint8_t> bytes;
  uint64_t gap = 0;
  GapReason reason = GapReason::kLost;
};

// The connection switched, by a 101, to a protocol another parser takes over.
struct Switch {
  std::string token;                 // the 101's Upgrade token, as listed in switch_tokens
  std::unique_ptr<Message> request;  // the request that asked: the new protocol answers it
  // The response-direction stream position where the new protocol's bytes start (the rest of
  // the chunk that carried the 101, or the next chunk).
  uint64_t response_resume_pos = 0;
  // Request-direction bytes that followed the request before the 101 was seen, in order.
  std::vector<HeldChunk> held;
};

class Http1Connection {
 public:
  // Receives what one call finished, at its end: every request that became whole (before its
  // response: a span in progress), then the exchanges that completed, in request order. The
  // same Message comes back later inside its Exchange. OnExchange may leave the messages in
  // the Exchange when it is done with them (or move them back there): with a MessagePool they
  // are recycled once it returns.
  class Output {
   public:
    virtual ~Output() = default;
    virtual void OnRequest(const Message&) {}
    virtual void OnExchange(Exchange&&) = 0;
  };

  // Bytes held after an upgrade request while its answer is awaited; past this the hold ends
  // and they are parsed as HTTP/1 (a client that did not wait for the answer).
  static constexpr size_t kMaxHeldBytes = 64 * 1024;

  // `metrics` must outlive the connection; `switch_tokens` (lower case) too, and `pool`
  // (optional): messages take their buffers from it, and reported ones go back to it.
  Http1Connection(Role role, const Http1Limits& limits, Http1Metrics& metrics,
                  std::span<const std::string_view> switch_tokens = {}, MessagePool* pool = nullptr);
  Http1Connection(const Http1Connection&) = delete;
  Http1Connection& operator=(const Http1Connection&) = delete;

  void OnData(Direction dir, std::span<const uint8_t> bytes, const ChunkMeta& meta, Output& out);
  void OnGap(Direction dir, uint64_t len, GapReason reason, const ChunkMeta& meta, Output& out);
  // Ends until-close bodies, then emits every request still waiting as kClosedBeforeResponse
  // (Exchange::closed_ts_ns = ts_ns). Later calls are ignored.
  void OnClose(uint64_t ts_ns, Output& out);
  // The agent lets go of the connection (evicted): requests still waiting are counted as
  // abandoned, nothing is emitted, later calls are ignored.
  void Abandon();
  // Back to the state of a new connection of `role` (same limits, metrics, tokens and pool),
  // keeping only the storage of the request queue and the held chunks: a connection object
  // pooled by the protocol (protocol.cpp) serves the next connection without allocating.
  void Reset(Role role);

  bool gave_up() const { return gave_up_; }
  bool upgraded() const { return upgraded_; }  // after 101 or a CONNECT tunnel
  bool closed() const { return closed_; }
  // No more parsing will happen on this connection (given up, upgraded, tunnel or closed).
  bool done() const { return gave_up_ || upgraded_ || closed_; }
  size_t pending_requests() const { return pending_.size(); }
  size_t buffered_bytes() const {
    return request_parser_.buffered_bytes() + response_parser_.buffered_bytes() + held_bytes_;
  }
  // Set by the call whose 101 switched to a protocol of switch_tokens; taken once.
  std::optional<Switch> TakeSwitch() { return std::exchange(switch_, std::nullopt); }
  const MessageParser& request_parser() const { return request_parser_; }
  const MessageParser& response_parser() const { return response_parser_; }
  std::optional<Direction> request_direction() const { return request_dir_; }

 private:
  struct Pending {
    enum class Kind : uint8_t { kRequest, kLost, kDropped } kind = Kind::kRequest;
    RequestContext context;             // kRequest: known from its header block
    std::unique_ptr<Message> request;   // kRequest: set when the whole request was parsed
    std::unique_ptr<Message> response;  // the final response
    bool answered = false;            // a final response (or a lost one) was assigned
    uint32_t interim = 0;
    uint32_t dropped = 0;   // kDropped: requests folded into this entry
    uint32_t answers = 0;   // kDropped: responses consumed by it
    Outcome outcome = Outcome::kComplete;
    bool announced = false;  // kRequest: the whole request went to Output::OnRequest
    bool asks_upgrade = false;  // kRequest: Connection: upgrade + Upgrade (not CONNECT)
    bool handed_over = false;   // answered by a switch: the new protocol reports it
  };

  class RequestSide : public MessageParser::Listener {
   public:
    explicit RequestSide(Http1Connection& c) : c_(c) {}
    void OnRequestHeaders(const Message& m) override { c_.OnRequestHeaders(m); }
    void OnMessage(std::unique_ptr<Message> m) override { c_.OnRequest(std::move(m)); }
    void OnFailure(FailureReason r, bool lost) override { c_.OnRequestFailure(r, lost); }

   private:
    Http1Connection& c_;
  };
  class ResponseSide : public MessageParser::Listener {
   public:
    explicit ResponseSide(Http1Connection& c) : c_(c) {}
    RequestContext ContextForResponse() override { return c_.ContextForResponse(); }
    void OnMessage(std::unique_ptr<Message> m) override { c_.OnResponse(std::move(m)); }
    void OnFailure(FailureReason r, bool lost) override { c_.OnResponseFailure(r, lost); }

   private:
    Http1Connection& c_;
  };

  void OnRequestHeaders(const Message& m);
  void OnRequest(std::unique_ptr<Message> m);
  void OnRequestFailure(FailureReason r, bool lost);
  RequestContext ContextForResponse() const;
  void OnResponse(std::unique_ptr<Message> m);
  void OnResponseFailure(FailureReason r, bool lost);

  MessageParser* ParserFor(Direction dir, std::span<const uint8_t> first_bytes);
  Pending* Unanswered();
  size_t CountRequests() const;
  bool AddPlaceholder(Pending::Kind kind);
  void CountFailure(FailureReason r);
  // Extends the finished prefix of pending_ over entries whose exchange is complete.
  void MarkFinished();
  // Hands the new whole requests and the finished exchanges to `out` (end of every call).
  void Deliver(Output& out);
  void SwitchProtocols();
  // A 101 answered `p`: when it names a protocol of switch_tokens_, prepare the Switch.
  void HandOver(Pending& p, const Message& response);
  // The request side is held: keep `bytes` (or a gap) for whoever parses them next.
  void Hold(std::span<const uint8_t> bytes, const ChunkMeta& meta, uint64_t gap = 0,
            GapReason reason = GapReason::kLost);
  // The request parser became held inside this chunk: keep the rest of it.
  void HoldRest(std::span<const uint8_t> bytes, const ChunkMeta& meta);
  // The upgrade was refused (or the hold overflowed): the held bytes are HTTP/1 again.
  void ReleaseHeld();
  void FeedRequestSide(std::span<const uint8_t> bytes, const ChunkMeta& meta);

  Http1Limits limits_;
  Http1Metrics& metrics_;
  std::span<const std::string_view> switch_tokens_;
  MessagePool* pool_;

  RequestSide request_side_{*this};
  ResponseSide response_side_{*this};
  MessageParser request_parser_;
  MessageParser response_parser_;
  std::optional<Direction> request_dir_;

  // A FIFO over a vector whose storage is kept: std::deque allocates a node for every element
  // as large as Pending, i.e. one allocation per request on a keep-alive connection (seen in
  // pipeline_bench's profile). Elements are addressed by position; references are not kept
  // across an emplace_back.
  class PendingQueue {
   public:
    bool empty() const { return head_ == items_.size(); }
    size_t size() const { return items_.size() - head_; }
    Pending& front() { return items_[head_]; }
    Pending& at(size_t i) { return items_[head_ + i]; }
    Pending& back() { return items_.back(); }
    Pending& emplace_back() { return items_.emplace_back(); }
    void pop_front() {
      if (head_ + 1 == items_.size()) {
        clear();  // the usual case: keeps the capacity
        return;
      }
      items_[head_++] = Pending{};  // what it still holds goes now, as a deque's pop would
      if (head_ >= 16 && head_ * 2 >= items_.size()) {
        items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
        head_ = 0;  // a long pipeline that never drains: move the live part down
      }
    }
    void clear() {
      items_.clear();
      head_ = 0;
    }
    auto begin() { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
    auto end() { return items_.end(); }
    auto begin() const { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
    auto end() const { return items_.end(); }
    auto rbegin() { return std::make_reverse_iterator(end()); }
    auto rend() { return std::make_reverse_iterator(begin()); }

   private:
    std::vector<Pending> items_;
    size_t head_ = 0;
  };
  PendingQueue pending_;
  // pending_'s first finished_ entries are complete (or given up): they leave at the end of
  // the call, through Deliver. They no longer count as waiting for anything.
  size_t finished_ = 0;
  uint64_t closed_ts_ns_ = 0;
  bool dropping_request_ = false;  // the request being parsed did not fit in pending_
  uint32_t consecutive_failures_ = 0;
  bool gave_up_ = false;
  bool upgraded_ = false;
  bool closed_ = false;
  std::vector<HeldChunk> held_;  // while request_parser_.held()
  size_t held_bytes_ = 0;
  bool announce_switch_request_ = false;  // switch_->request was handed over unannounced
  bool release_held_ = false;    // the upgrade was refused: release after the current feed
  std::optional<Switch> switch_;
};

}  // namespace threadline::http1
