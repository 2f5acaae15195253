#include "agent/spans/parent_rules.h"

#include <array>
#include <vector>

#include "agent/spans/context_rules.h"
#include "agent/spans/trace_context.h"

namespace threadline {

namespace {

// Every value of `key` in the request's carrier (few: an inline buffer, a vector past it).
class CarrierValues {
 public:
  CarrierValues(const CarrierReader& carrier, std::string_view key) {
    size_t n = carrier.Values(key, inline_);
    if (n <= inline_.size()) {
      values_ = std::span<const std::string_view>(inline_.data(), n);
      return;
    }
    heap_.resize(n);
    carrier.Values(key, heap_);
    values_ = heap_;
  }
  std::span<const std::string_view> values() const { return values_; }

 private:
  std::array<std::string_view, 4> inline_;
  std::vector<std::string_view> heap_;
  std::span<const std::string_view> values_;
};

// Does the request carry a valid traceparent of its own?
bool CarriesTraceparent(const RequestView& request) {
  if (!request.carrier) return false;
  const CarrierValues parents(*request.carrier, "traceparent");
  if (parents.values().empty()) return false;
  const CarrierValues states(*request.carrier, "tracestate");
  return ExtractTraceContext(parents.values(), states.values()).has_value();
}

class KernelRule final : public ParentRule {
 public:
  std::string_view name() const override { return "kernel"; }
  bool Choose(const ParentQuery& q, Identity& id) override {
    if (!q.kernel || q.kernel->kind != TL_CTX_CLIENT) return false;
    // Ids that went out only in a TCP option, on a request with its own traceparent: the
    // receiver takes the header, and the application made its own span for this call, which the
    // header rule joins. (Injected ids are never on such a request: injection skips it.)
    if (!(q.kernel->flags & TL_CTX_F_INJECTED) && CarriesTraceparent(q.request)) return false;
    // The kernel put these ids on the wire (a traceparent it injected, a TCP header option): the
    // span must be exactly that, with the parent the kernel's context rule named (its thread's,
    // goroutine's or Node pairing's server span) or none.
    id.trace_id = q.kernel->trace_id;
    id.span_id = q.kernel->span_id;
    id.flags = q.kernel->trace_flags;
    id.injected = (q.kernel->flags & TL_CTX_F_INJECTED) != 0;
    id.tcp_option_sent = (q.kernel->flags & TL_CTX_F_TCP_OPTION) != 0;
    if (q.kernel->flags & TL_CTX_F_HAS_PARENT) {
      id.parent_span_id = q.kernel->parent_span_id;
      id.parent_source = CtxTagKindName(TL_CTX_TAG_KIND(q.kernel->ctx_tag));
      if (id.parent_source.empty()) id.parent_source = "thread";
    } else {
      id.parent_source = "root";
    }
    return true;
  }
};

class HeaderRule final : public ParentRule {
 public:
  std::string_view name() const override { return "header"; }
  bool Choose(const ParentQuery& q, Identity& id) override {
    if (!q.request.carrier) return false;
    const CarrierValues parents(*q.request.carrier, "traceparent");
    if (parents.values().empty()) return false;
    const CarrierValues states(*q.request.carrier, "tracestate");
    std::optional<TraceContext> header = ExtractTraceContext(parents.values(), states.values());
    if (!header) return false;
    id.trace_id = header->parent.trace_id;
    id.parent_span_id = header->parent.parent_id;
    id.flags = header->parent.flags;
    id.trace_state = header->trace_state;
    if (q.role == Role::kServer) {
      id.parent_is_remote = true;
      return true;
    }
    // The application is instrumented: its own span for this call is the header's parent-id.
    SpanLink link;
    link.trace_id = header->parent.trace_id;
    link.span_id = header->parent.parent_id;
    link.trace_state = header->trace_state;
    link.flags = header->parent.flags;
    link.attributes.push_back({"threadline.link.reason", std::string("application_span")});
    id.link = std::move(link);
    return true;
  }
};

class TcpOptionRule final : public ParentRule {
 public:
  std::string_view name() const override { return "tcp_option"; }
  bool Choose(const ParentQuery& q, Identity& id) override {
    if (q.role != Role::kServer || !q.remote) return false;
    id.trace_id = q.remote->trace_id;
    id.parent_span_id = q.remote->span_id;
    id.flags = q.remote->trace_flags;
    id.parent_is_remote = true;
    return true;
  }
};

class TupleRule final : public ParentRule {
 public:
  TupleRule(bool enabled, InFlightSpans& in_flight, MetricsRegistry& metrics)
      : enabled_(enabled), in_flight_(in_flight), peers_(metrics) {}

  std::string_view name() const override { return "tuple"; }

  bool Choose(const ParentQuery& q, Identity& id) override {
    if (q.role != Role::kServer || !q.conn.tuple_known || !enabled_) return false;
    paired_this_request_ = true;
    PeerLinker::Token wait = 0;
    if (auto call = peers_.OnServerRequest(q.conn.tuple, q.request.stream_id,
                                           q.request.edge.first.ts_ns, &wait)) {
      Adopt(*call, id);
      return true;
    }
    // The client end is traced here but its call was not seen yet: a later rule decides for
    // now, and the call completes this identity when it comes (OnIdentity of the client).
    if (wait != 0) waiting_[wait] = Waiting{q.conn.id, id.span_id, false};
    return false;
  }

  void OnIdentity(const ParentQuery& q, const Identity& id) override {
    if (q.role == Role::kServer) {
      // An earlier rule (header, tcp_option) chose this server request's parent: its client
      // call on the tuple is still this request's, so take it out of the pairing order. Left
      // queued, the connection's NEXT request would pair with it: a wrong parent, and every
      // later request on the connection one off (test_parenting's nginx front, tcp option on).
      if (!paired_this_request_ && q.conn.tuple_known && enabled_) {
        PeerLinker::Token wait = 0;
        if (!peers_.OnServerRequest(q.conn.tuple, q.request.stream_id,
                                    q.request.edge.first.ts_ns, &wait) &&
            wait != 0)
          waiting_[wait] = Waiting{q.conn.id, id.span_id, true};  // swallow it when it comes
      }
      paired_this_request_ = false;
      return;
    }
    if (q.role != Role::kClient || !q.conn.tuple_known || !enabled_) return;
    const ChunkMeta& first = q.request.edge.first;
    PeerLinker::Call call{id.trace_id, id.span_id, id.flags, id.trace_state,
                          first.enter_ts_ns ? first.enter_ts_ns : first.ts_ns,
                          q.request.stream_id};
    auto token = peers_.OnClientCall(q.conn.tuple, call);
    if (!token) return;
    auto w = waiting_.find(*token);
    if (w == waiting_.end()) return;
    const Waiting waiting = w->second;
    waiting_.erase(w);
    if (waiting.decided) return;
    if (Identity* server = in_flight_.Find(waiting.conn, waiting.span_id)) Adopt(call, *server);
  }

  void OnSpanEnd(const ConnectionInfo& /*conn*/, Role role, const RequestView& /*request*/,
                 const Identity& id) override {
    if (role != Role::kServer) return;
    // Still waiting for the client call: the span ended with what it had.
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
      // A request whose parent another rule chose keeps its place until its call comes.
      if (it->second.span_id == id.span_id && !it->second.decided) {
        peers_.Abandon(it->first);
        waiting_.erase(it);
        return;
      }
    }
  }

  void OnConnectionOpened(const ConnectionInfo& c) override {
    if (c.role == Role::kClient && c.tuple_known) peers_.OnClientOpened(c.tuple);
  }

  void OnConnectionDone(const ConnectionInfo& c) override {
    if (c.tuple_known) {
      if (c.role == Role::kClient) peers_.OnClientClosed(c.tuple);
      if (c.role == Role::kServer) peers_.OnServerClosed(c.tuple);
    }
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (it->second.conn == c.id) {
        peers_.Abandon(it->first);
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }

 private:
  // A server request whose client end is traced here but whose client call was not seen yet.
  struct Waiting {
    ConnId conn;
    SpanId span_id;
    bool decided;  // another rule chose the parent: the call only leaves the pairing order
  };

  void Adopt(const PeerLinker::Call& call, Identity& id) const {
    id.trace_id = call.trace_id;
    id.parent_span_id = call.span_id;
    id.flags = call.flags;
    id.trace_state = call.trace_state;
    id.parent_source = name();
  }

  bool enabled_;
  InFlightSpans& in_flight_;
  PeerLinker peers_;
  std::unordered_map<PeerLinker::Token, Waiting> waiting_;
  // Choose ran for the request being fixed (OnIdentity follows in the same SpanBuilder::Fix).
  bool paired_this_request_ = false;
};

class RootRule final : public ParentRule {
 public:
  explicit RootRule(const TraceIdRatioSampler& sampler) : sampler_(sampler) {}
  std::string_view name() const override { return "root"; }
  bool Choose(const ParentQuery& q, Identity& id) override {
    if (q.kernel && q.kernel->kind == TL_CTX_SERVER) {
      // The kernel started this trace (and injects it downstream): the same trace id and flags.
      id.trace_id = q.kernel->trace_id;
      id.flags = q.kernel->trace_flags;
      return true;
    }
    id.trace_id = TraceId::Random();
    id.flags = sampler_.FlagsFor(id.trace_id);
    return true;
  }

 private:
  const TraceIdRatioSampler& sampler_;
};

}  // namespace

std::vector<std::unique_ptr<ParentRule>> DefaultParentRules(const ParentRulesConfig& config,
                                                            const TraceIdRatioSampler& sampler,
                                                            InFlightSpans& in_flight,
                                                            MetricsRegistry& metrics) {
  std::vector<std::unique_ptr<ParentRule>> rules;
  rules.push_back(std::make_unique<KernelRule>());
  rules.push_back(std::make_unique<HeaderRule>());
  rules.push_back(std::make_unique<TcpOptionRule>());
  rules.push_back(std::make_unique<TupleRule>(config.same_node_linking, in_flight, metrics));
  for (auto& rule : ConcurrencyParentRules(in_flight, sampler, metrics)) rules.push_back(std::move(rule));
  rules.push_back(std::make_unique<RootRule>(sampler));
  return rules;
}

}  // namespace threadline
