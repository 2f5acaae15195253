#include "agent/protocols/dispatcher.h"

#include <string>


namespace threadline {

namespace {
// Chunks looked at before an undecided connection is declared "other". More than one: a
// connection we joined mid-message (opened before the agent) shows a body first and a start
// line only at the next message.
constexpr uint32_t kMaxDetectChunks = 8;
}  // namespace

// What one parser call reports, bound to its connection and the role the sink is told. The
// role is read when a result is delivered: a parser may learn the request direction from the
// very bytes of the call.
class ProtocolDispatcher::BoundOutput final : public ParserOutput {
 public:
  BoundOutput(const ConnectionInfo& conn, const ConnectionParser& parser, RecordSink& sink)
      : conn_(conn), parser_(parser), sink_(sink) {}

  void OnRequest(const RequestView& request) override { sink_.OnRequest(conn_, Role(), request); }
  void OnRecord(Record&& record) override { sink_.OnRecord(conn_, Role(), std::move(record)); }

 private:
  threadline::Role Role() const {
    if (conn_.role != Role::kUnknown) return conn_.role;
    const auto dir = parser_.request_direction();
    if (!dir) return Role::kUnknown;
    return *dir == Direction::kIngress ? Role::kServer : Role::kClient;
  }

  const ConnectionInfo& conn_;
  const ConnectionParser& parser_;
  RecordSink& sink_;
};

ProtocolDispatcher::ProtocolDispatcher(const DispatcherConfig& config, RecordSink& out,
                                       MetricsRegistry& metrics)
    : config_(config),
      out_(out),
      conns_(0, ConnIdHash{}, std::equal_to<ConnId>{}, RecyclingAllocatorFor<ConnId, State>(&conn_nodes_)),
      detected_other_(metrics.GetCounter("threadline_protocol_connections_total",
                                         {{"protocol", "other"}},
                                         "Connections by the protocol detected on them")),
      ignored_(metrics.GetCounter("threadline_protocol_connections_ignored_total", {},
                                  "Connections not parsed by rule (the agent's own traffic)")) {
  for (const ProtocolSpec& spec : config_.table) {
    protocols_.push_back(spec.create(config_.protocols, metrics));
    detected_.push_back(&metrics.GetCounter("threadline_protocol_connections_total",
                                            {{"protocol", std::string(spec.name)}}));
    switched_.push_back(&metrics.GetCounter(
        "threadline_protocol_switches_total", {{"protocol", std::string(spec.name)}},
        "Connections handed to a protocol after switching on the wire (HTTP/1.1 Upgrade: h2c)"));
  }
}

ProtocolDispatcher::~ProtocolDispatcher() = default;

void ProtocolDispatcher::OnConnectionOpened(const ConnectionInfo& c) {
  State& s = conns_[c.id];
  if (config_.ignore && config_.ignore(c)) {
    s.decided = true;
    ignored_.Add(1);
    return;
  }
  out_.OnConnectionOpened(c);
}

void ProtocolDispatcher::Decide(State& s, const ConnectionInfo& c, Direction dir,
                                std::span<const uint8_t> bytes) {
  for (size_t i = 0; i < protocols_.size(); ++i) {
    if (protocols_[i]->Detect(bytes, dir, c)) {
      s.decided = true;
      s.parser = protocols_[i]->NewConnection(c, bytes, dir);
      s.maker = protocols_[i].get();
      detected_[i]->Add(1);
      return;
    }
  }
  if (++s.detect_chunks >= kMaxDetectChunks) {
    s.decided = true;
    detected_other_.Add(1);
  }
}

void ProtocolDispatcher::OnStreamData(const ConnectionInfo& c, Direction dir, uint64_t /*pos*/,
                                      std::span<const uint8_t> bytes, const ChunkMeta& meta) {
  State& s = conns_[c.id];
  if (!s.decided) Decide(s, c, dir, bytes);
  if (!s.parser || s.parser->done()) return;
  {
    BoundOutput out(c, *s.parser, out_);
    s.parser->OnData(dir, bytes, meta, out);
  }
  if (s.parser->done()) Switch(s, c, dir, bytes, meta);
}

void ProtocolDispatcher::Switch(State& s, const ConnectionInfo& c, Direction dir,
                                std::span<const uint8_t> bytes, const ChunkMeta& meta) {
  std::optional<Handover> h = s.parser->TakeHandover();
  if (!h) return;
  std::unique_ptr<ConnectionParser> next;
  Protocol* maker = nullptr;
  for (size_t i = 0; i < protocols_.size() && !next; ++i) {
    if (protocols_[i]->id() != h->to) continue;
    next = protocols_[i]->TakeOver(c, *h);
    if (next) {
      switched_[i]->Add(1);
      maker = protocols_[i].get();
    }
  }
  if (!next) return;  // the protocol is not in the table: the connection stays opaque
  s.parser = std::move(next);
  s.maker = maker;
  BoundOutput out(c, *s.parser, out_);
  for (const http1::HeldChunk& held : h->held) {
    if (s.parser->done()) return;
    if (held.gap > 0) s.parser->OnGap(h->request_dir, held.gap, held.reason, held.meta, out);
    else s.parser->OnData(h->request_dir, held.bytes, held.meta, out);
  }
  // The rest of the chunk that carried the switch is the new protocol's first bytes.
  if (dir != h->switch_dir || h->resume_pos < meta.pos || h->resume_pos >= meta.pos + bytes.size())
    return;
  ChunkMeta rest = meta;
  rest.pos = h->resume_pos;
  if (!s.parser->done())
    s.parser->OnData(dir, bytes.subspan(static_cast<size_t>(h->resume_pos - meta.pos)), rest, out);
}

void ProtocolDispatcher::OnStreamGap(const ConnectionInfo& c, Direction dir, uint64_t /*pos*/,
                                     uint64_t len, GapReason reason, const ChunkMeta& meta) {
  State& s = conns_[c.id];
  if (!s.parser || s.parser->done()) return;
  BoundOutput out(c, *s.parser, out_);
  s.parser->OnGap(dir, len, reason, meta, out);
}

void ProtocolDispatcher::OnConnectionClosed(const ConnectionInfo& c, CloseReason reason) {
  auto it = conns_.find(c.id);
  if (it == conns_.end()) return;
  if (it->second.parser) {
    BoundOutput out(c, *it->second.parser, out_);
    // Shed under the CPU budget (bpf/capture/shed_turn.bpf.h) is, like an eviction, the agent
    // letting go of a live connection, at a request boundary: nothing should be open there, and
    // what is (a pipelined request, an HTTP/2 stream crossing the boundary) is abandoned and
    // counted, not reported as closed before its response.
    const bool let_go = reason == CloseReason::kEvicted || reason == CloseReason::kShed;
    it->second.parser->OnClose(c.last_activity_ns, let_go, out);
    if (it->second.maker != nullptr) it->second.maker->Recycle(std::move(it->second.parser));
  }
  conns_.erase(it);
  out_.OnConnectionDone(c);
}

}  // namespace threadline
