#include "agent/spans/span_builder.h"

#include <algorithm>
#include <utility>

#include "agent/spans/span_buffers.h"

namespace threadline {

namespace {
// Requests of one connection whose identity waits for its span: more than any protocol keeps
// open (HTTP/1 pipelining is capped far lower, HTTP/2 streams per connection too).
constexpr size_t kMaxInFlightPerConnection = 1024;
// Kernel-chosen ids waiting for their request (requests the parser never produced: gaps, a
// protocol we do not parse after all); TCP option contexts likewise.
constexpr size_t kMaxKernelIdsPerConnection = 64;
// Ended connections' states kept for reuse (spare_states_), and the most requests in flight one
// of them may keep room for (a connection that once had a deep pipeline gives its room back).
constexpr size_t kMaxSpareStates = 1024;
constexpr size_t kMaxSpareInFlight = 8;
}  // namespace

SpanBuilder::SpanBuilder(SpanBuilderConfig config, ResourceCache& resources,
                         const BootClock& clock, SpanSink& out, MetricsRegistry& metrics)
    : config_(std::move(config)),
      sampler_(config_.sampling_ratio),
      resources_(resources),
      clock_(clock),
      out_(out),
      conns_(0, ConnIdHash{}, std::equal_to<ConnId>{}, RecyclingAllocatorFor<ConnId, ConnState>(&conn_nodes_)),
      metrics_(metrics),
      server_spans_(metrics.GetCounter("threadline_spans_created_total", {{"kind", "server"}},
                                       "Spans ended (built when their operation ended), by kind")),
      client_spans_(metrics.GetCounter("threadline_spans_created_total", {{"kind", "client"}})),
      server_started_(metrics.GetCounter("threadline_spans_started_total", {{"kind", "server"}},
                                         "Spans started (a request seen whole, its identity fixed), by kind")),
      client_started_(metrics.GetCounter("threadline_spans_started_total", {{"kind", "client"}})),
      lost_abandoned_(metrics.GetCounter("threadline_spans_lost_total", {{"reason", "abandoned"}},
                                         "Spans started that never ended, by reason")),
      lost_connection_closed_(metrics.GetCounter("threadline_spans_lost_total", {{"reason", "connection_closed"}})),
      lost_in_flight_limit_(metrics.GetCounter("threadline_spans_lost_total", {{"reason", "in_flight_limit"}})),
      no_request_(metrics.GetCounter("threadline_spans_dropped_total",
                                     {{"reason", "response_without_request"}},
                                     "Spans not exported, by reason")),
      unknown_role_(metrics.GetCounter("threadline_spans_dropped_total",
                                       {{"reason", "unknown_role"}})),
      kernel_ids_used_(metrics.GetCounter("threadline_kernel_trace_ids_total", {{"result", "used"}},
                                          "Trace ids chosen by the kernel (injection), by fate")),
      kernel_ids_unmatched_(metrics.GetCounter("threadline_kernel_trace_ids_total",
                                               {{"result", "unmatched"}})),
      kernel_trace_mismatch_(metrics.GetCounter("threadline_kernel_trace_ids_total",
                                                {{"result", "header_trace_differs"}})),
      remote_matched_(metrics.GetCounter("threadline_tcp_option_contexts_total", {{"result", "matched"}},
                                         "Contexts read from TCP header options, by fate: matched to the "
                                         "request they mark, unmatched (no request started there), or "
                                         "overridden by a traceparent header")),
      remote_unmatched_(metrics.GetCounter("threadline_tcp_option_contexts_total", {{"result", "unmatched"}})),
      remote_header_wins_(metrics.GetCounter("threadline_tcp_option_contexts_total",
                                             {{"result", "header_wins"}})) {
  rules_ = DefaultParentRules(config_.parents, sampler_, *this, metrics);
  // The outcomes every deployment has, so their series exist from the start (rates and ratios
  // over them are 0, not absent); rules added later get theirs on first use.
  for (Role role : {Role::kServer, Role::kClient})
    for (std::string_view source : {"root", "ambiguous"}) (void)ParentSourceCounter(role, source);
}

Counter& SpanBuilder::ParentSourceCounter(Role role, std::string_view source) {
  for (const SourceCounter& c : parent_sources_)
    if (c.role == role && c.source == source) return *c.counter;
  Counter& c = metrics_.GetCounter(
      "threadline_spans_parent_source_total",
      {{"kind", role == Role::kServer ? "server" : "client"}, {"source", std::string(source)}},
      "Spans ended, by kind and the rule that chose their parent (threadline.parent.source)");
  parent_sources_.push_back({role, std::string(source), &c});
  return c;
}

SpanBuilder::~SpanBuilder() = default;

void SpanBuilder::InsertParentRule(std::unique_ptr<ParentRule> rule, std::string_view before) {
  auto at = std::find_if(rules_.begin(), rules_.end(),
                         [&](const auto& r) { return r->name() == before; });
  rules_.insert(at, std::move(rule));
}

void SpanBuilder::OnKernelTraceContext(const TraceCtxEvent& e) {
  if (e.kind == TL_CTX_REMOTE) {
    RemoteContext r;
    r.pos = e.pos;
    r.len = e.range_len;
    r.trace_flags = e.trace_flags;
    r.trace_id.bytes = e.trace_id;
    r.span_id.bytes = e.span_id;
    auto& remote = StateOf(e.id).remote;
    if (remote.size() >= kMaxKernelIdsPerConnection) {
      remote.erase(remote.begin());
      remote_unmatched_.Add(1);
    }
    remote.push_back(r);
    return;
  }
  KernelIds k;
  k.direction = e.direction;
  k.pos = e.pos;
  k.tid = e.tid;
  k.kind = e.kind;
  k.flags = e.flags;
  k.trace_flags = e.trace_flags;
  k.ctx_tag = e.ctx_tag;
  k.trace_id.bytes = e.trace_id;
  k.span_id.bytes = e.span_id;
  k.parent_span_id.bytes = e.parent_span_id;
  auto& ids = StateOf(e.id).kernel_ids;
  if (ids.size() >= kMaxKernelIdsPerConnection) {
    ids.erase(ids.begin());
    kernel_ids_unmatched_.Add(1);
  }
  ids.push_back(k);
}

std::optional<KernelIds> SpanBuilder::TakeKernelIds(const ConnectionInfo& c, Role role,
                                                    const RequestView& request) {
  auto it = conns_.find(c.id);
  if (it == conns_.end() || it->second.kernel_ids.empty()) return std::nullopt;
  const uint8_t want = role == Role::kServer ? TL_CTX_SERVER : TL_CTX_CLIENT;
  const uint64_t start = request.edge.first.pos;
  auto& ids = it->second.kernel_ids;
  auto match = ids.end();
  for (auto k = ids.begin(); k != ids.end(); ++k) {
    if (k->kind != want) continue;
    if (k->pos == start) {
      match = k;
      break;
    }
    // Ids sent in a TCP option belong to the first request starting at or after the write that
    // carried them (an HTTP/2 HEADERS frame written after the preface): the receiver matches
    // them the same way (TakeRemoteContext), so both ends agree whatever the segmenting.
    if ((k->flags & TL_CTX_F_TCP_OPTION) && !(k->flags & TL_CTX_F_INJECTED) && k->pos < start)
      match = k;
  }
  if (match == ids.end()) return std::nullopt;
  KernelIds out = *match;
  // Older entries were for requests that will not come (a gap swallowed them).
  kernel_ids_unmatched_.Add(static_cast<uint64_t>(match - ids.begin()));
  ids.erase(ids.begin(), match + 1);
  kernel_ids_used_.Add(1);
  return out;
}

std::optional<RemoteContext> SpanBuilder::TakeRemoteContext(const ConnectionInfo& c,
                                                            const RequestView& request) {
  auto it = conns_.find(c.id);
  if (it == conns_.end() || it->second.remote.empty()) return std::nullopt;
  auto& remote = it->second.remote;
  const uint64_t start = request.edge.first.pos;
  // Ranges arrive in stream order: those that end before this request marked none we parsed
  // (counted, never applied to another request: a late or repeated report must not misparent).
  size_t stale = 0;
  while (stale < remote.size() && remote[stale].pos + remote[stale].len <= start) ++stale;
  remote_unmatched_.Add(stale);
  remote.erase(remote.begin(), remote.begin() + static_cast<std::ptrdiff_t>(stale));
  if (remote.empty() || remote.front().pos > start) return std::nullopt;  // for a later request
  RemoteContext out = remote.front();
  remote.erase(remote.begin());
  return out;
}

SpanBuilder::ConnState& SpanBuilder::StateOf(const ConnId& conn) {
  auto [it, made] = conns_.try_emplace(conn);
  if (made && !spare_states_.empty()) {
    it->second = std::move(spare_states_.back());
    spare_states_.pop_back();
  }
  return it->second;
}

Identity* SpanBuilder::Find(const ConnId& conn, const SpanId& span) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return nullptr;
  for (InFlight& f : it->second.in_flight)
    if (f.id.span_id == span) return &f.id;
  return nullptr;
}

void SpanBuilder::Fix(const ConnectionInfo& c, Role role, const RequestView& request) {
  const std::optional<KernelIds> kernel = TakeKernelIds(c, role, request);
  std::optional<RemoteContext> remote =
      role == Role::kServer ? TakeRemoteContext(c, request) : std::nullopt;
  // The kernel chose this server request's ids (and so the trace its outgoing calls carry)
  // without the option: follow it, so the request's children stay in its trace.
  if (remote && kernel && kernel->kind == TL_CTX_SERVER && !(kernel->flags & TL_CTX_F_TCP_OPTION)) {
    remote_unmatched_.Add(1);
    remote.reset();
  }
  if (remote) remote_matched_.Add(1);
  const ParentQuery q{c, role, request, kernel ? &*kernel : nullptr, remote ? &*remote : nullptr};
  Identity id;
  // Requests this server sends were (or will be) injected naming the kernel's span id.
  id.span_id = kernel && kernel->kind == TL_CTX_SERVER ? kernel->span_id : SpanId::Random();
  for (const auto& rule : rules_) {
    if (!rule->Choose(q, id)) continue;
    if (id.parent_source.empty()) id.parent_source = rule->name();
    break;
  }
  if (kernel && kernel->kind == TL_CTX_SERVER && id.parent_source == std::string_view("header") &&
      id.trace_id != kernel->trace_id)
    kernel_trace_mismatch_.Add(1);  // the kernel missed the header: downstream gets its trace
  if (remote && id.parent_source == std::string_view("header")) remote_header_wins_.Add(1);
  for (const auto& rule : rules_) rule->OnIdentity(q, id);

  (role == Role::kServer ? server_started_ : client_started_).Add(1);
  auto& in_flight = StateOf(c.id).in_flight;
  if (in_flight.size() >= kMaxInFlightPerConnection) {
    in_flight.erase(in_flight.begin());
    lost_in_flight_limit_.Add(1);
  }
  in_flight.push_back(InFlight{request.stream_id, request.edge.first.pos,
                               request.edge.first.ts_ns, std::move(id)});
}

void SpanBuilder::OnRequest(const ConnectionInfo& c, Role role, const RequestView& request) {
  if (role == Role::kUnknown) return;
  Fix(c, role, request);
}

Identity SpanBuilder::TakeIdentity(const ConnectionInfo& c, Role role, const RequestView& request) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto& in_flight = StateOf(c.id).in_flight;
    auto match = std::find_if(in_flight.begin(), in_flight.end(), [&](const InFlight& f) {
      return f.stream_id == request.stream_id && f.first_pos == request.edge.first.pos &&
             f.first_ts == request.edge.first.ts_ns;
    });
    if (match != in_flight.end()) {
      Identity id = std::move(match->id);
      // A stream's operations end in request order: earlier ones of the same stream still
      // here were dropped by the protocol and will never end.
      auto stale = std::remove_if(in_flight.begin(), match + 1, [&](const InFlight& f) {
        return f.stream_id == request.stream_id;
      });
      lost_abandoned_.Add(static_cast<uint64_t>(match + 1 - stale) - 1);  // all but this one
      in_flight.erase(stale, match + 1);
      return id;
    }
    // Not announced (the protocol promises it is; a bound may have pushed it out): fix it now.
    Fix(c, role, request);
  }
  return Identity{.span_id = SpanId::Random(), .parent_source = "root"};  // unreachable
}

void SpanBuilder::OnRecord(const ConnectionInfo& c, Role role, Record&& r) {
  if (!r.request.edge.seen) {
    no_request_.Add(1);
    return;
  }
  if (role == Role::kUnknown) {
    unknown_role_.Add(1);
    return;
  }
  Identity id = TakeIdentity(c, role, r.request);
  for (const auto& rule : rules_) rule->OnSpanEnd(c, role, r.request, id);
  // Unsampled spans too: the RED metrics downstream count every request (see the header).
  (role == Role::kServer ? server_spans_ : client_spans_).Add(1);
  ParentSourceCounter(role, id.parent_source.empty() ? std::string_view("root") : id.parent_source).Add(1);
  out_.OnSpan(Build(c, role, r, std::move(id)));
}

void SpanBuilder::OnConnectionOpened(const ConnectionInfo& c) {
  for (const auto& rule : rules_) rule->OnConnectionOpened(c);
  // Cache the process's resource while it is alive (processes started before the agent, or
  // whose exec we did not see); spans built after it exited still get it.
  (void)resources_.Get(c.id.tgid);
}

void SpanBuilder::OnConnectionDone(const ConnectionInfo& c) {
  for (const auto& rule : rules_) rule->OnConnectionDone(c);
  auto it = conns_.find(c.id);
  if (it == conns_.end()) return;
  // The protocol flushed what it could at the close; requests still here never became spans.
  lost_connection_closed_.Add(it->second.in_flight.size());
  remote_unmatched_.Add(it->second.remote.size());
  ConnState& state = it->second;
  if (spare_states_.size() < kMaxSpareStates && state.in_flight.capacity() <= kMaxSpareInFlight &&
      state.kernel_ids.capacity() <= kMaxSpareInFlight &&
      state.remote.capacity() <= kMaxSpareInFlight) {
    state.in_flight.clear();
    state.kernel_ids.clear();
    state.remote.clear();
    spare_states_.push_back(std::move(state));
  }
  conns_.erase(it);
}

Span SpanBuilder::Build(const ConnectionInfo& c, Role role, const Record& r, Identity id) const {
  Span span;
  span.trace_id = id.trace_id;
  span.span_id = id.span_id;
  span.parent_span_id = id.parent_span_id;
  span.trace_state = std::move(id.trace_state);
  span.flags = id.flags & 0xff;
  span.parent_is_remote = id.parent_is_remote;
  if (id.link) span.links.push_back(std::move(*id.link));
  span.kind = role == Role::kServer ? SpanKind::kServer : SpanKind::kClient;
  span.pid = c.id.tgid;
  span.resource = resources_.Get(c.id.tgid);

  // Timing (see the header).
  const ChunkMeta& first = r.request.edge.first;
  const uint64_t start =
      role == Role::kServer ? first.ts_ns : (first.enter_ts_ns ? first.enter_ts_ns : first.ts_ns);
  uint64_t end = r.request.edge.last.ts_ns;
  if (r.response.seen) end = r.response.last.ts_ns;
  if (r.closed_ts_ns > end) end = r.closed_ts_ns;  // closed, or the write its end was lost in
  if (end < start) end = start;
  span.start_unix_ns = Epoch(start);
  span.end_unix_ns = Epoch(end);

  // Buffers of exported spans when there are (span_buffers.h): no allocation for the vector
  // and the name.
  ExchangeView view;
  SpanBuffers& buffers = SpanBuffers::Local();
  view.attributes = buffers.TakeAttributes();
  view.name = buffers.TakeString();
  Describe(r, role, c, config_.describe, view);
  span.name = std::move(view.name);
  span.status = view.status;
  span.status_message = std::move(view.status_message);
  span.attributes = std::move(view.attributes);
  span.events = std::move(view.events);
  for (SpanEvent& ev : span.events)  // boot clock from Describe (0: at the end)
    ev.time_unix_ns = ev.time_unix_ns == 0 ? span.end_unix_ns : Epoch(ev.time_unix_ns);
  AddString(span.attributes, "threadline.parent.source", id.parent_source);
  if (id.injected) span.attributes.push_back({"threadline.traceparent.injected", true});
  if (id.tcp_option_sent) span.attributes.push_back({"threadline.tcp_option.sent", true});
  return span;
}

}  // namespace threadline
