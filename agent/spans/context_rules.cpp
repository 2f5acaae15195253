#include "agent/spans/context_rules.h"

#include <algorithm>
#include <array>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "threadline/events.h"

namespace threadline {

namespace {

uint32_t TagKind(const RequestView& r) { return TL_CTX_TAG_KIND(r.edge.first.ctx_tag); }

uint64_t ProcessSeqKey(uint32_t tgid, uint32_t seq) {
  return (static_cast<uint64_t>(tgid) << 32) | seq;
}

bool IsParentKind(uint32_t kind) {
  return kind == TL_CTAG_THREAD || kind == TL_CTAG_GOROUTINE || kind == TL_CTAG_NODE_ASYNC;
}

void ChildOf(const Identity& server, Identity& id) {
  id.trace_id = server.trace_id;
  id.parent_span_id = server.span_id;
  id.flags = server.flags;
  id.trace_state = server.trace_state;
}

// The kernel's verdict (see the header).
class ContextRule final : public ParentRule {
 public:
  ContextRule(InFlightSpans& in_flight, MetricsRegistry& metrics)
      : in_flight_(in_flight),
        unmatched_(metrics.GetCounter(
            "threadline_parent_context_unmatched_total", {},
            "Client requests whose kernel-named parent request was not found among the spans in "
            "flight (its bytes were lost, or it ended first)")),
        table_full_(metrics.GetCounter("threadline_parent_context_table_full_total", {},
                                       "Server requests not registered for the context rule")) {}

  std::string_view name() const override { return "context"; }

  bool Choose(const ParentQuery& q, Identity& id) override {
    if (q.role != Role::kClient) return false;
    const uint32_t kind = TagKind(q.request);
    if (!IsParentKind(kind)) return false;
    auto it = servers_.find(ProcessSeqKey(q.conn.id.tgid, TL_CTX_TAG_SEQ(q.request.edge.first.ctx_tag)));
    // The server span as it stands now (the tuple rule may have completed it since).
    const Identity* server = it == servers_.end() ? nullptr : in_flight_.Find(it->second.conn, it->second.span);
    if (!server) {
      unmatched_.Add();
      return false;
    }
    ChildOf(*server, id);
    id.parent_source = CtxTagKindName(kind);
    return true;
  }

  void OnIdentity(const ParentQuery& q, const Identity& id) override {
    if (q.role != Role::kServer || TagKind(q.request) != TL_CTAG_SERVER) return;
    if (servers_.size() >= kMaxServers) {
      table_full_.Add();
      return;
    }
    const uint32_t seq = TL_CTX_TAG_SEQ(q.request.edge.first.ctx_tag);
    servers_[ProcessSeqKey(q.conn.id.tgid, seq)] = Server{q.conn.id, id.span_id};
    by_conn_[q.conn.id].push_back(seq);
  }

  void OnSpanEnd(const ConnectionInfo& c, Role role, const RequestView& request,
                 const Identity& /*id*/) override {
    if (role != Role::kServer || TagKind(request) != TL_CTAG_SERVER) return;
    const uint32_t seq = TL_CTX_TAG_SEQ(request.edge.first.ctx_tag);
    servers_.erase(ProcessSeqKey(c.id.tgid, seq));
    auto conn = by_conn_.find(c.id);
    if (conn == by_conn_.end()) return;
    auto& seqs = conn->second;
    seqs.erase(std::remove(seqs.begin(), seqs.end(), seq), seqs.end());
    if (seqs.empty()) by_conn_.erase(conn);
  }

  void OnConnectionDone(const ConnectionInfo& c) override {
    auto conn = by_conn_.find(c.id);
    if (conn == by_conn_.end()) return;
    for (uint32_t seq : conn->second) servers_.erase(ProcessSeqKey(c.id.tgid, seq));
    by_conn_.erase(conn);
  }

 private:
  static constexpr size_t kMaxServers = 65536;
  struct Server {
    ConnId conn;
    SpanId span;
  };
  InFlightSpans& in_flight_;
  std::unordered_map<uint64_t, Server> servers_;  // (tgid, kernel request number) -> span
  std::unordered_map<ConnId, std::vector<uint32_t>, ConnIdHash> by_conn_;
  Counter& unmatched_;
  Counter& table_full_;
};

// Headers that carry one request's identity from service to service.

// A target's path (without scheme and authority), split into segments from the end; the query
// stays on the last segment.
struct PathTail {
  std::vector<std::string_view> segments;  // last segment first

  explicit PathTail(std::string_view target) {
    if (size_t scheme = target.find("://"); scheme != std::string_view::npos && scheme < 8) {
      size_t slash = target.find('/', scheme + 3);
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
    if (size_t hash = target.find('#'); hash != std::string_view::npos) target = target.substr(0, hash);
    while (!target.empty()) {
      size_t slash = target.rfind('/');
      std::string_view seg = slash == std::string_view::npos ? target : target.substr(slash + 1);
      if (!seg.empty()) segments.push_back(seg);
      if (slash == std::string_view::npos) break;
      target = target.substr(0, slash);
    }
  }
  // How many trailing segments the two share.
  size_t Common(const PathTail& o) const {
    size_t k = 0;
    while (k < segments.size() && k < o.segments.size() && segments[k] == o.segments[k]) ++k;
    return k;
  }
  bool Specific(size_t k) const {
    for (size_t i = 0; i < k && i < segments.size(); ++i)
      if (SpecificPathTail(segments[i])) return true;
    return false;
  }
};

// forwarded_header and forwarded_target over the server requests in flight in the process.
class ForwardedRule final : public ParentRule {
 public:
  ForwardedRule(InFlightSpans& in_flight, MetricsRegistry& metrics)
      : in_flight_(in_flight),
        table_full_(metrics.GetCounter("threadline_parent_forwarded_table_full_total", {},
                                       "Server requests not kept as forwarded-evidence candidates")) {}

  std::string_view name() const override { return "forwarded"; }

  bool Choose(const ParentQuery& q, Identity& id) override {
    if (q.role != Role::kClient || IsParentKind(TagKind(q.request))) return false;
    auto proc = by_process_.find(q.conn.id.tgid);
    if (proc == by_process_.end() || proc->second.live == 0) return false;
    const std::span<const Candidate> candidates = proc->second.Live();
    if (const Candidate* c = ByHeader(q.request, candidates)) return Adopt(*c, "forwarded_header", id);
    if (const Candidate* c = ByTarget(q.request, candidates)) return Adopt(*c, "forwarded_target", id);
    return false;
  }

  void OnIdentity(const ParentQuery& q, const Identity& id) override {
    if (q.role != Role::kServer) return;
    if (by_process_.size() >= kSweepProcessesAt) SweepIdleProcesses();
    Slots& slots = by_process_[q.conn.id.tgid];
    if (slots.live >= kMaxPerProcess) {
      table_full_.Add();
      return;
    }
    // A slot left by an ended request is reused with its strings' storage: no allocation per
    // server request once a process has seen as many in flight as it has now.
    if (slots.live == slots.items.size()) slots.items.emplace_back();
    Candidate& c = slots.items[slots.live++];
    c.conn = q.conn.id;
    c.span = id.span_id;
    c.target.assign(q.request.evidence.target);
    // The five headers in one look at the carrier (five Values calls were ~300 instructions per
    // server request), copied only when present: most requests carry none.
    std::array<std::string_view, kCorrelationHeaders.size()> v{};
    if (q.request.carrier) q.request.carrier->FirstValues(kCorrelationHeaders, v);
    for (size_t i = 0; i < kCorrelationHeaders.size(); ++i) {
      if (v[i].empty()) {
        c.headers[i].clear();
      } else {
        c.headers[i].assign(v[i]);
      }
    }
  }

  void OnSpanEnd(const ConnectionInfo& conn, Role role, const RequestView& /*request*/,
                 const Identity& id) override {
    if (role != Role::kServer) return;
    Erase(conn.id.tgid, [&](const Candidate& c) { return c.conn == conn.id && c.span == id.span_id; });
  }

  void OnConnectionDone(const ConnectionInfo& conn) override {
    if (conn.role == Role::kClient) return;
    Erase(conn.id.tgid, [&](const Candidate& c) { return c.conn == conn.id; });
  }

 private:
  static constexpr size_t kMaxPerProcess = 4096;
  // Processes with no request in flight keep their slots until this many processes are known.
  static constexpr size_t kSweepProcessesAt = 256;
  struct Candidate {
    ConnId conn;
    SpanId span;
    std::string target;
    std::array<std::string, kCorrelationHeaders.size()> headers;
  };
  // items[0, live) are the requests in flight; the rest are spare slots kept for reuse.
  struct Slots {
    std::vector<Candidate> items;
    size_t live = 0;
    std::span<const Candidate> Live() const { return {items.data(), live}; }
  };

  void SweepIdleProcesses() {
    std::erase_if(by_process_, [](const auto& p) { return p.second.live == 0; });
  }

  template <typename Pred>
  void Erase(uint32_t tgid, Pred pred) {
    auto proc = by_process_.find(tgid);
    if (proc == by_process_.end()) return;
    // Order among candidates does not matter (a rule picks the one match or none), so an ended
    // request's slot swaps with the last live one and stays allocated behind it.
    Slots& s = proc->second;
    for (size_t i = 0; i < s.live;) {
      if (pred(s.items[i])) {
        // Not with itself: swapping a Candidate moves its six strings three times (~500
        // instructions), and the ended request is the last live one whenever it was the only one.
        if (i != s.live - 1) std::swap(s.items[i], s.items[s.live - 1]);
        --s.live;
      } else {
        ++i;
      }
    }
  }

  bool Adopt(const Candidate& c, std::string_view source, Identity& id) {
    const Identity* server = in_flight_.Find(c.conn, c.span);
    if (!server) return false;
    ChildOf(*server, id);
    id.parent_source = source;
    return true;
  }

  // The one candidate that arrived with the value this request carries, in the first
  // correlation header the request has that decides.
  static const Candidate* ByHeader(const RequestView& r, std::span<const Candidate> candidates) {
    if (!r.carrier) return nullptr;
    std::array<std::string_view, kCorrelationHeaders.size()> v{};
    r.carrier->FirstValues(kCorrelationHeaders, v);
    for (size_t i = 0; i < kCorrelationHeaders.size(); ++i) {
      if (v[i].empty()) continue;
      const Candidate* found = nullptr;
      size_t matches = 0;
      for (const Candidate& c : candidates) {
        if (c.headers[i] == v[i]) {
          found = &c;
          ++matches;
        }
      }
      if (matches == 1) return found;
    }
    return nullptr;
  }

  // The one candidate whose target shares the longest specific tail with this request's.
  static const Candidate* ByTarget(const RequestView& r, std::span<const Candidate> candidates) {
    if (r.evidence.target.empty()) return nullptr;
    const PathTail mine(r.evidence.target);
    const Candidate* best = nullptr;
    size_t best_k = 0, at_best = 0;
    for (const Candidate& c : candidates) {
      const size_t k = mine.Common(PathTail(c.target));
      if (k == 0) continue;
      if (k > best_k) {
        best_k = k;
        best = &c;
        at_best = 1;
      } else if (k == best_k) {
        ++at_best;
      }
    }
    if (!best || at_best != 1 || !mine.Specific(best_k)) return nullptr;
    return best;
  }

  InFlightSpans& in_flight_;
  std::unordered_map<uint32_t, Slots> by_process_;
  Counter& table_full_;
};

// The kernel saw several requests in flight and nothing decided (see the header).
class AmbiguousRule final : public ParentRule {
 public:
  AmbiguousRule(const TraceIdRatioSampler& sampler, MetricsRegistry& metrics)
      : sampler_(sampler),
        several_(metrics.GetCounter("threadline_parent_ambiguous_total",
                                    {{"reason", "several_in_flight"}},
                                    "Client spans left without a parent because the sender had "
                                    "several requests in flight (or is an event loop, or a Go "
                                    "program whose goroutines are not followed) and nothing decided")),
        untracked_(metrics.GetCounter("threadline_parent_ambiguous_total",
                                      {{"reason", "go_not_followed"}})),
        untagged_(metrics.GetCounter("threadline_parent_context_untagged_total", {},
                                     "Client requests the kernel gave no context verdict (their "
                                     "first bytes were lost, or came with no change of direction)")) {}

  std::string_view name() const override { return "ambiguous"; }

  bool Choose(const ParentQuery& q, Identity& id) override {
    if (q.role != Role::kClient) return false;
    const uint32_t kind = TagKind(q.request);
    if (kind == TL_CTAG_NONE) untagged_.Add();
    if (kind != TL_CTAG_AMBIGUOUS && kind != TL_CTAG_UNTRACKED) return false;
    (kind == TL_CTAG_AMBIGUOUS ? several_ : untracked_).Add();
    id.trace_id = TraceId::Random();
    id.flags = sampler_.FlagsFor(id.trace_id);
    return true;
  }

 private:
  const TraceIdRatioSampler& sampler_;
  Counter& several_;
  Counter& untracked_;
  Counter& untagged_;
};

}  // namespace

bool SpecificPathTail(std::string_view tail) {
  size_t start = 0;
  while (start <= tail.size()) {
    size_t end = tail.find('/', start);
    if (end == std::string_view::npos) end = tail.size();
    std::string_view seg = tail.substr(start, end - start);
    const bool digit = std::any_of(seg.begin(), seg.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    if ((seg.size() >= 6 && digit) || seg.size() >= 20) return true;
    start = end + 1;
  }
  return false;
}

std::vector<std::unique_ptr<ParentRule>> ConcurrencyParentRules(InFlightSpans& in_flight,
                                                                const TraceIdRatioSampler& sampler,
                                                                MetricsRegistry& metrics) {
  std::vector<std::unique_ptr<ParentRule>> rules;
  rules.push_back(std::make_unique<ContextRule>(in_flight, metrics));
  rules.push_back(std::make_unique<ForwardedRule>(in_flight, metrics));
  rules.push_back(std::make_unique<AmbiguousRule>(sampler, metrics));
  return rules;
}

}  // namespace threadline
