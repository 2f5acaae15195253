#include "agent/protocols/http1/protocol.h"

#include <array>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/protocols/http1/detect.h"
#include "agent/protocols/http1/stitcher.h"

namespace threadline::http1 {

namespace {

// Upgrade tokens of protocols the agent parses once a 101 switched to them (RFC 9113 §3.2's
// h2c: HTTP/2 over cleartext TCP).
constexpr std::array<std::string_view, 1> kSwitchTokens = {"h2c"};

MessageEdge EdgeOf(const Message& m) {
  return MessageEdge{.seen = true, .first = m.first_chunk, .last = m.last_chunk};
}

// Hands one call's results of an Http1Connection to the dispatcher's output, as neutral views.
class Bridge final : public Http1Connection::Output {
 public:
  Bridge(ParserOutput& out, MessagePool& pool) : out_(out), pool_(pool) {}

  void OnRequest(const Message& request) override {
    const HeaderCarrier carrier(request.headers);
    out_.OnRequest(ViewOf(request, carrier));
  }

  void OnExchange(Exchange&& e) override {
    Record r;
    r.outcome = e.outcome;
    r.closed_ts_ns = e.closed_ts_ns;
    if (e.response) r.response = EdgeOf(*e.response);
    const Exchange& placed = r.detail.emplace<Exchange>(std::move(e));
    if (placed.request) {
      const HeaderCarrier carrier(placed.request->headers);  // views point into r.detail
      r.request = ViewOf(*placed.request, carrier);
      out_.OnRecord(std::move(r));
    } else {
      out_.OnRecord(std::move(r));
    }
    // The spans stage is done with the record (it keeps no views into it): the messages
    // serve the next messages.
    if (auto* done = std::get_if<Exchange>(&r.detail)) {
      pool_.Give(std::move(done->request));
      pool_.Give(std::move(done->response));
    }
  }

 private:
  ParserOutput& out_;
  MessagePool& pool_;
};

class Http1Parser final : public ConnectionParser {
 public:
  Http1Parser(Role role, const Http1Limits& limits, Http1Metrics& metrics, MessagePool& pool)
      : conn_(role, limits, metrics, kSwitchTokens, &pool), pool_(pool) {}

  void OnData(Direction dir, std::span<const uint8_t> bytes, const ChunkMeta& meta,
              ParserOutput& out) override {
    Bridge bridge(out, pool_);
    conn_.OnData(dir, bytes, meta, bridge);
  }
  void OnGap(Direction dir, uint64_t len, GapReason reason, const ChunkMeta& meta,
             ParserOutput& out) override {
    Bridge bridge(out, pool_);
    conn_.OnGap(dir, len, reason, meta, bridge);
  }
  void OnClose(uint64_t ts_ns, bool evicted, ParserOutput& out) override {
    // An eviction is the agent letting go, not the connection ending: requests still waiting
    // are abandoned (counted) rather than reported as closed before their response.
    if (evicted) {
      conn_.Abandon();
      return;
    }
    Bridge bridge(out, pool_);
    conn_.OnClose(ts_ns, bridge);
  }
  bool done() const override { return conn_.done(); }
  std::optional<Direction> request_direction() const override { return conn_.request_direction(); }

  // For the protocol's pool: whether the parser ended holding nothing (closed with every request
  // reported), and making it a new connection's.
  bool Idle() const { return conn_.pending_requests() == 0 && conn_.buffered_bytes() == 0; }
  void Reset(Role role) { conn_.Reset(role); }

  std::optional<Handover> TakeHandover() override {
    std::optional<Switch> sw = conn_.TakeSwitch();
    const std::optional<Direction> request_dir = conn_.request_direction();
    if (!sw || !request_dir) return std::nullopt;
    Handover h;
    h.to = ProtocolId::kHttp2;  // the one token of kSwitchTokens
    h.request_dir = *request_dir;
    h.request = std::move(sw->request);
    h.switch_dir = *request_dir == Direction::kEgress ? Direction::kIngress : Direction::kEgress;
    h.resume_pos = sw->response_resume_pos;
    h.held = std::move(sw->held);
    return h;
  }

 private:
  Http1Connection conn_;
  MessagePool& pool_;
};

class Http1Protocol final : public Protocol {
 public:
  Http1Protocol(const Http1Limits& limits, MetricsRegistry& metrics)
      : limits_(limits), metrics_(metrics) {}

  ProtocolId id() const override { return ProtocolId::kHttp1; }
  bool Detect(std::span<const uint8_t> bytes, Direction /*dir*/,
              const ConnectionInfo& /*conn*/) const override {
    return LooksLikeHttp1Request(bytes) || LooksLikeHttp1Response(bytes);
  }
  std::unique_ptr<ConnectionParser> NewConnection(const ConnectionInfo& conn,
                                                  std::span<const uint8_t> /*first_bytes*/,
                                                  Direction /*dir*/) override {
    if (spare_.empty()) return std::make_unique<Http1Parser>(conn.role, limits_, metrics_, pool_);
    std::unique_ptr<Http1Parser> p = std::move(spare_.back());
    spare_.pop_back();
    p->Reset(conn.role);
    return p;
  }
  // Only Http1Parsers come back here (this protocol makes no other parser, TakeOver none).
  void Recycle(std::unique_ptr<ConnectionParser> parser) override {
    auto* p = static_cast<Http1Parser*>(parser.get());
    if (spare_.size() >= kMaxSpareParsers || !p->Idle()) return;  // destroyed with `parser`
    spare_.emplace_back(p);
    (void)parser.release();
  }

 private:
  // Parsers of ended connections, kept with their queues' storage for the next connections:
  // with a connection per request, the parser and its request queue were two allocations per
  // request (pipeline_bench --workload close).
  static constexpr size_t kMaxSpareParsers = 256;

  Http1Limits limits_;
  Http1Metrics metrics_;
  MessagePool pool_;  // shared by this protocol's connections (consumer thread)
  std::vector<std::unique_ptr<Http1Parser>> spare_;  // after what its parsers refer to
};

}  // namespace

std::unique_ptr<Protocol> CreateProtocol(const ProtocolOptions& options, MetricsRegistry& metrics) {
  return std::make_unique<Http1Protocol>(options.http1, metrics);
}

size_t HeaderCarrier::Values(std::string_view key, std::span<std::string_view> out) const {
  // Most keys asked for (correlation headers, traceparent) are known fields a request does
  // not carry: answered without looking at the fields.
  const FieldName field = IdentifyField(key);
  if (field == FieldName::kOther ? headers_.empty() : !headers_.MayHave(field)) return 0;
  size_t n = 0;
  for (Header h : headers_.fields()) {
    if (field != FieldName::kOther ? h.field != field : !EqualsIgnoreCase(h.name, key)) continue;
    if (n < out.size()) out[n] = h.value;
    ++n;
  }
  return n;
}

void HeaderCarrier::FirstValues(std::span<const std::string_view> keys, std::span<std::string_view> out) const {
  if (keys.size() > 64) return CarrierReader::FirstValues(keys, out);
  // One walk over the stored fields (only those the agent reads: a few) instead of a Values
  // call per key (~50 instructions each, most of it identifying the key).
  for (size_t i = 0; i < keys.size(); ++i) out[i] = {};
  uint64_t found = 0;  // keys given their first value
  const uint64_t all = keys.size() == 64 ? ~uint64_t{0} : (uint64_t{1} << keys.size()) - 1;
  for (Header h : headers_.fields()) {
    for (size_t i = 0; i < keys.size(); ++i) {
      if ((found >> i) & 1 || !EqualsIgnoreCase(h.name, keys[i])) continue;
      out[i] = h.value;
      found |= uint64_t{1} << i;
    }
    if (found == all) return;
  }
}

RequestView ViewOf(const Message& request, const HeaderCarrier& carrier) {
  RequestView v;
  v.protocol = ProtocolId::kHttp1;
  v.edge = EdgeOf(request);
  v.carrier = &carrier;
  v.evidence.target = request.target;
  if (auto id = request.headers.Get("x-request-id")) v.evidence.request_id = *id;
  if (auto xff = request.headers.Get("x-forwarded-for")) v.evidence.forwarded_for = *xff;
  return v;
}

}  // namespace threadline::http1
