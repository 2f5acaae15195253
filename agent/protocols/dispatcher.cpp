#include "agent/protocols/dispatcher.h"

#include "agent/protocols/http1/detect.h"

namespace threadline {

namespace {
// Chunks looked at before an undecided connection is declared "other". More than one: a
// connection we joined mid-message (opened before the agent) shows a body first and a start
// line only at the next message.
constexpr uint32_t kMaxDetectChunks = 8;
}  // namespace

ProtocolDispatcher::ProtocolDispatcher(const DispatcherConfig& config, ExchangeSink& out,
                                       MetricsRegistry& metrics)
    : config_(config),
      out_(out),
      metrics_(metrics),
      detected_http1_(metrics.GetCounter("threadline_protocol_connections_total",
                                         {{"protocol", "http1"}},
                                         "Connections by the protocol detected on them")),
      detected_other_(metrics.GetCounter("threadline_protocol_connections_total",
                                         {{"protocol", "other"}})),
      ignored_(metrics.GetCounter("threadline_protocol_connections_ignored_total", {},
                                  "Connections not parsed by rule (the agent's own traffic)")),
      abandoned_(metrics.GetCounter("threadline_http1_requests_abandoned_total", {},
                                    "Requests whose connection the agent evicted before the response")) {}

ProtocolDispatcher::~ProtocolDispatcher() = default;

ProtocolDispatcher::State& ProtocolDispatcher::StateFor(const ConnectionInfo& c) {
  return conns_[c.id];
}

Role ProtocolDispatcher::RoleOf(const State& s) const {
  if (current_->role != Role::kUnknown) return current_->role;
  auto dir = s.http1 ? s.http1->request_direction() : std::nullopt;
  if (!dir) return Role::kUnknown;
  return *dir == Direction::kIngress ? Role::kServer : Role::kClient;
}

void ProtocolDispatcher::OnConnectionOpened(const ConnectionInfo& c) {
  State& s = StateFor(c);
  if (config_.ignore && config_.ignore(c)) {
    s.protocol = Protocol::kOther;
    ignored_.Add(1);
    return;
  }
  out_.OnConnectionOpened(c);
}

void ProtocolDispatcher::Decide(State& s, const ConnectionInfo& c, Direction dir,
                                std::span<const uint8_t> bytes) {
  if (http1::LooksLikeHttp1Request(bytes) || http1::LooksLikeHttp1Response(bytes)) {
    s.protocol = Protocol::kHttp1;
    s.http1 = std::make_unique<http1::Http1Connection>(
        c.role, config_.http1, metrics_,
        [this](http1::Exchange&& e) {
          out_.OnHttp1Exchange(*current_, RoleOf(*current_state_), std::move(e));
        });
    s.http1->set_on_request([this](const http1::Message& m) {
      out_.OnHttp1Request(*current_, RoleOf(*current_state_), m);
    });
    detected_http1_.Add(1);
    return;
  }
  (void)dir;
  if (++s.detect_chunks >= kMaxDetectChunks) {
    s.protocol = Protocol::kOther;
    detected_other_.Add(1);
  }
}

void ProtocolDispatcher::OnStreamData(const ConnectionInfo& c, Direction dir, uint64_t /*pos*/,
                                      std::span<const uint8_t> bytes, const ChunkMeta& meta) {
  State& s = StateFor(c);
  if (s.protocol == Protocol::kUndecided) Decide(s, c, dir, bytes);
  if (s.protocol != Protocol::kHttp1 || s.http1->done()) return;
  current_ = &c;
  current_state_ = &s;
  s.http1->OnData(dir, bytes, meta);
  current_ = nullptr;
}

void ProtocolDispatcher::OnStreamGap(const ConnectionInfo& c, Direction dir, uint64_t /*pos*/,
                                     uint64_t len, GapReason reason, const ChunkMeta& meta) {
  State& s = StateFor(c);
  if (s.protocol != Protocol::kHttp1 || s.http1->done()) return;
  current_ = &c;
  current_state_ = &s;
  s.http1->OnGap(dir, len, reason, meta);
  current_ = nullptr;
}

void ProtocolDispatcher::OnConnectionClosed(const ConnectionInfo& c, CloseReason reason) {
  auto it = conns_.find(c.id);
  if (it == conns_.end()) return;
  // An eviction is the agent letting go, not the connection ending: requests still waiting
  // are abandoned (counted) rather than reported as closed before their response.
  if (it->second.http1 && reason == CloseReason::kEvicted) {
    abandoned_.Add(it->second.http1->pending_requests());
  } else if (it->second.http1) {
    current_ = &c;
    current_state_ = &it->second;
    it->second.http1->OnClose(c.last_activity_ns);
    current_ = nullptr;
  }
  conns_.erase(it);
  out_.OnConnectionDone(c);
}

}  // namespace threadline
