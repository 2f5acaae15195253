#include "agent/spans/http_spans.h"

#include <charconv>
#include <string_view>
#include <vector>

#include "agent/spans/trace_context.h"

namespace threadline {

namespace {

void AddString(Span& s, std::string key, std::string_view value) {
  s.attributes.push_back({std::move(key), AttributeValue{std::string(value)}});
}
void AddInt(Span& s, std::string key, int64_t value) {
  s.attributes.push_back({std::move(key), AttributeValue{value}});
}

std::string_view Trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

struct HostPort {
  std::string_view host;
  std::optional<uint16_t> port;
};

// "example.com", "example.com:8080", "[::1]:8080", "[::1]".
std::optional<HostPort> ParseHostHeader(std::string_view v) {
  v = Trim(v);
  if (v.empty()) return std::nullopt;
  HostPort hp;
  std::string_view rest;
  if (v.front() == '[') {
    size_t close = v.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    hp.host = v.substr(1, close - 1);
    rest = v.substr(close + 1);
  } else {
    size_t colon = v.rfind(':');
    hp.host = colon == std::string_view::npos ? v : v.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : v.substr(colon);
  }
  if (!rest.empty()) {
    if (rest.front() != ':') return std::nullopt;
    rest.remove_prefix(1);
    unsigned port = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), port);
    if (ec != std::errc() || p != rest.data() + rest.size() || port == 0 || port > 65535)
      return std::nullopt;
    hp.port = static_cast<uint16_t>(port);
  }
  if (hp.host.empty()) return std::nullopt;
  return hp;
}

struct Target {
  std::string_view path;   // empty for authority-form
  std::string_view query;  // without '?'
  bool has_query = false;
};

// origin-form "/a?b", absolute-form "http://h/a?b", asterisk-form "*", authority-form "h:443".
Target SplitTarget(std::string_view t, std::string_view method) {
  Target out;
  if (method == "CONNECT") return out;
  if (t.starts_with("http://") || t.starts_with("https://")) {
    size_t scheme_end = t.find("://") + 3;
    size_t slash = t.find_first_of("/?", scheme_end);
    t = slash == std::string_view::npos ? std::string_view("/") : t.substr(slash);
  }
  size_t hash = t.find('#');
  if (hash != std::string_view::npos) t = t.substr(0, hash);
  size_t q = t.find('?');
  out.path = q == std::string_view::npos ? t : t.substr(0, q);
  if (q != std::string_view::npos) {
    out.query = t.substr(q + 1);
    out.has_query = true;
  }
  if (out.path.empty()) out.path = "/";
  return out;
}

std::vector<std::string_view> HeaderValues(const http1::HeaderList& h, std::string_view name) {
  std::vector<std::string_view> out;
  for (const auto& f : h.fields())
    if (http1::EqualsIgnoreCase(f.name, name)) out.push_back(f.value);
  return out;
}

bool IsIpv6Literal(std::string_view host) { return host.find(':') != std::string_view::npos; }

}  // namespace

HttpSpanBuilder::HttpSpanBuilder(HttpSpanConfig config, ResourceCache& resources,
                                 const BootClock& clock, SpanSink& out, MetricsRegistry& metrics)
    : config_(std::move(config)),
      sampler_(config_.sampling_ratio),
      resources_(resources),
      clock_(clock),
      out_(out),
      server_spans_(metrics.GetCounter("threadline_spans_created_total", {{"kind", "server"}},
                                       "Spans built, by kind")),
      client_spans_(metrics.GetCounter("threadline_spans_created_total", {{"kind", "client"}})),
      no_request_(metrics.GetCounter("threadline_spans_dropped_total",
                                     {{"reason", "response_without_request"}},
                                     "Spans not exported, by reason")),
      thread_table_full_(metrics.GetCounter("threadline_span_thread_table_full_total", {},
                                            "Server requests not registered for thread parenting")),
      unknown_role_(metrics.GetCounter("threadline_spans_dropped_total",
                                       {{"reason", "unknown_role"}})),
      kernel_ids_used_(metrics.GetCounter("threadline_kernel_trace_ids_total", {{"result", "used"}},
                                          "Trace ids chosen by the kernel (injection), by fate")),
      kernel_ids_unmatched_(metrics.GetCounter("threadline_kernel_trace_ids_total", {{"result", "unmatched"}})),
      kernel_trace_mismatch_(metrics.GetCounter(
          "threadline_kernel_trace_ids_total", {{"result", "header_trace_differs"}})),
      peers_(metrics) {}

void HttpSpanBuilder::OnKernelTraceContext(const TraceCtxEvent& e) {
  KernelIds k;
  k.enter_ts_ns = e.enter_ts_ns;
  k.tid = e.tid;
  k.kind = e.kind;
  k.flags = e.flags;
  k.trace_flags = e.trace_flags;
  k.trace_id.bytes = e.trace_id;
  k.span_id.bytes = e.span_id;
  k.parent_span_id.bytes = e.parent_span_id;
  auto& ids = conns_[e.id].kernel_ids;
  if (ids.size() >= 64) {  // requests the parser never produced (gaps, non-HTTP after all)
    ids.pop_front();
    kernel_ids_unmatched_.Add(1);
  }
  ids.push_back(k);
}

std::optional<HttpSpanBuilder::KernelIds> HttpSpanBuilder::TakeKernelIds(
    const ConnectionInfo& c, Role role, const http1::Message& request) {
  auto it = conns_.find(c.id);
  if (it == conns_.end() || it->second.kernel_ids.empty()) return std::nullopt;
  const uint8_t want = role == Role::kServer ? TL_CTX_SERVER : TL_CTX_CLIENT;
  auto& ids = it->second.kernel_ids;
  for (auto k = ids.begin(); k != ids.end(); ++k) {
    if (k->kind == want && k->enter_ts_ns == request.first_chunk.enter_ts_ns &&
        k->tid == request.first_chunk.tid) {
      KernelIds out = *k;
      // Older entries were for requests that will not come (a gap swallowed them).
      kernel_ids_unmatched_.Add(static_cast<uint64_t>(k - ids.begin()));
      ids.erase(ids.begin(), k + 1);
      kernel_ids_used_.Add(1);
      return out;
    }
  }
  return std::nullopt;
}

HttpSpanBuilder::Identity HttpSpanBuilder::Decide(const ConnectionInfo& c, Role role,
                                                  const http1::Message& request,
                                                  const KernelIds* kernel) const {
  Identity id;
  id.request_ts = request.first_chunk.ts_ns;
  id.request_tid = request.first_chunk.tid;
  id.span_id = SpanId::Random();
  if (kernel && kernel->kind == TL_CTX_CLIENT) {
    // The kernel wrote these ids into the request: the span must be exactly that.
    id.trace_id = kernel->trace_id;
    id.span_id = kernel->span_id;
    id.flags = kernel->trace_flags;
    id.injected = true;
    if (kernel->flags & TL_CTX_F_HAS_PARENT) {
      id.parent_span_id = kernel->parent_span_id;
      id.parent_source = "thread";
    } else {
      id.parent_source = "root";
    }
    return id;
  }
  if (kernel && kernel->kind == TL_CTX_SERVER) {
    // Requests this server sends were (or will be) injected naming this span id.
    id.span_id = kernel->span_id;
  }

  auto parents = HeaderValues(request.headers, "traceparent");
  auto states = HeaderValues(request.headers, "tracestate");
  std::optional<TraceContext> header;
  if (!parents.empty()) header = ExtractTraceContext(parents, states);

  if (role == Role::kServer) {
    if (header) {
      id.trace_id = header->parent.trace_id;
      id.parent_span_id = header->parent.parent_id;
      id.flags = header->parent.flags;
      id.trace_state = header->trace_state;
      id.parent_is_remote = true;
      id.parent_source = "header";
      return id;
    }
    if (kernel) {
      id.trace_id = kernel->trace_id;
      id.flags = kernel->trace_flags;
      id.parent_source = "root";
      return id;
    }
  } else {
    if (header) {
      // The application is instrumented: its own span for this call is the header's parent-id.
      id.trace_id = header->parent.trace_id;
      id.parent_span_id = header->parent.parent_id;
      id.flags = header->parent.flags;
      id.trace_state = header->trace_state;
      id.parent_source = "header";
      SpanLink link;
      link.trace_id = header->parent.trace_id;
      link.span_id = header->parent.parent_id;
      link.trace_state = header->trace_state;
      link.flags = header->parent.flags;
      link.attributes.push_back({"threadline.link.reason", std::string("application_span")});
      id.link = std::move(link);
      return id;
    }
    auto it = active_by_thread_.find(ThreadKey(c.id.tgid, request.first_chunk.tid));
    if (it != active_by_thread_.end() && it->second.since_ts <= request.first_chunk.ts_ns) {
      id.trace_id = it->second.trace_id;
      id.parent_span_id = it->second.span_id;
      id.flags = it->second.flags;
      id.trace_state = it->second.trace_state;
      id.parent_source = "thread";
      return id;
    }
  }
  id.trace_id = TraceId::Random();
  id.flags = sampler_.FlagsFor(id.trace_id);
  id.parent_source = "root";
  return id;
}

void HttpSpanBuilder::OnHttp1Request(const ConnectionInfo& c, Role role,
                                     const http1::Message& request) {
  if (role == Role::kUnknown) return;
  const std::optional<KernelIds> kernel = TakeKernelIds(c, role, request);
  Identity id = Decide(c, role, request, kernel ? &*kernel : nullptr);
  if (kernel && kernel->kind == TL_CTX_SERVER && id.parent_source == std::string_view("header") &&
      id.trace_id != kernel->trace_id)
    kernel_trace_mismatch_.Add(1);  // the kernel missed the header: downstream gets its trace
  PeerLinker::Token wait = 0;
  if (role == Role::kServer && id.parent_source == std::string_view("root") && c.tuple_known &&
      config_.same_node_linking) {
    if (auto call = peers_.OnServerRequest(c.tuple, request.first_chunk.ts_ns, &wait)) {
      id.trace_id = call->trace_id;
      id.parent_span_id = call->span_id;
      id.flags = call->flags;
      id.trace_state = call->trace_state;
      id.parent_source = "tuple";
    }
  }
  if (role == Role::kClient && c.tuple_known && config_.same_node_linking) {
    PeerLinker::Call call{id.trace_id, id.span_id, id.flags, id.trace_state,
                          request.first_chunk.enter_ts_ns ? request.first_chunk.enter_ts_ns
                                                          : request.first_chunk.ts_ns};
    if (auto token = peers_.OnClientCall(c.tuple, call)) ApplyPeer(*token, call);
  }
  if (wait != 0)
    waiting_servers_[wait] = WaitingServer{c.id, id.span_id, ThreadKey(c.id.tgid, request.last_chunk.tid)};
  if (role == Role::kServer) {
    // The thread that read the end of the request handles it until the response is written.
    const uint64_t key = ThreadKey(c.id.tgid, request.last_chunk.tid);
    if (active_by_thread_.size() < config_.max_active_threads || active_by_thread_.count(key)) {
      active_by_thread_[key] = ActiveServer{c.id, id.trace_id, id.span_id, id.flags,
                                            id.trace_state, request.last_chunk.ts_ns};
    } else {
      thread_table_full_.Add(1);
    }
  }
  auto& pending = conns_[c.id].pending;
  if (pending.size() >= 256) pending.pop_front();  // the stitcher bounds pipelining far lower
  pending.push_back(std::move(id));
}

void HttpSpanBuilder::ApplyPeer(PeerLinker::Token token, const PeerLinker::Call& call) {
  auto w = waiting_servers_.find(token);
  if (w == waiting_servers_.end()) return;
  WaitingServer ws = w->second;
  waiting_servers_.erase(w);
  auto conn = conns_.find(ws.conn);
  if (conn == conns_.end()) return;
  for (Identity& id : conn->second.pending) {
    if (id.span_id != ws.span_id) continue;
    id.trace_id = call.trace_id;
    id.parent_span_id = call.span_id;
    id.flags = call.flags;
    id.trace_state = call.trace_state;
    id.parent_source = "tuple";
    // Calls this server makes from now on join the adopted trace.
    auto active = active_by_thread_.find(ws.thread_key);
    if (active != active_by_thread_.end() && active->second.span_id == ws.span_id) {
      active->second.trace_id = call.trace_id;
      active->second.flags = call.flags;
      active->second.trace_state = call.trace_state;
    }
    return;
  }
}

HttpSpanBuilder::Identity HttpSpanBuilder::TakeIdentity(const ConnectionInfo& c, Role role,
                                                        const http1::Message& request) {
  auto it = conns_.find(c.id);
  if (it != conns_.end()) {
    auto& pending = it->second.pending;
    // Exchanges come out in request order; skip identities of requests the stitcher dropped.
    while (!pending.empty()) {
      Identity id = std::move(pending.front());
      pending.pop_front();
      if (id.request_ts == request.first_chunk.ts_ns && id.request_tid == request.first_chunk.tid)
        return id;
    }
  }
  return Decide(c, role, request);
}

void HttpSpanBuilder::OnHttp1Exchange(const ConnectionInfo& c, Role role, http1::Exchange&& e) {
  if (!e.request) {
    no_request_.Add(1);
    return;
  }
  if (role == Role::kUnknown) {
    unknown_role_.Add(1);
    return;
  }
  Identity id = TakeIdentity(c, role, *e.request);
  if (role == Role::kServer) {
    // Still waiting for the client call: the span ends now, with what it has.
    for (auto it = waiting_servers_.begin(); it != waiting_servers_.end(); ++it) {
      if (it->second.span_id == id.span_id) {
        peers_.Abandon(it->first);
        waiting_servers_.erase(it);
        break;
      }
    }
    auto it = active_by_thread_.find(ThreadKey(c.id.tgid, e.request->last_chunk.tid));
    if (it != active_by_thread_.end() && it->second.span_id == id.span_id)
      active_by_thread_.erase(it);
  }
  // Unsampled spans too: the RED metrics downstream count every request (see the header).
  (role == Role::kServer ? server_spans_ : client_spans_).Add(1);
  out_.OnSpan(Build(c, role, e, std::move(id)));
}

void HttpSpanBuilder::OnConnectionOpened(const ConnectionInfo& c) {
  if (c.role == Role::kClient && c.tuple_known) peers_.OnClientOpened(c.tuple);
  // Cache the process's resource while it is alive (processes started before the agent, or
  // whose exec we did not see); spans built after it exited still get it.
  (void)resources_.Get(c.id.tgid);
}

void HttpSpanBuilder::OnConnectionDone(const ConnectionInfo& c) {
  if (c.tuple_known) {
    if (c.role == Role::kClient) peers_.OnClientClosed(c.tuple);
    if (c.role == Role::kServer) peers_.OnServerClosed(c.tuple);
  }
  for (auto it = waiting_servers_.begin(); it != waiting_servers_.end();) {
    if (it->second.conn == c.id) {
      peers_.Abandon(it->first);
      it = waiting_servers_.erase(it);
    } else {
      ++it;
    }
  }
  conns_.erase(c.id);
  for (auto it = active_by_thread_.begin(); it != active_by_thread_.end();) {
    if (it->second.conn == c.id) it = active_by_thread_.erase(it);
    else ++it;
  }
}

Span HttpSpanBuilder::Build(const ConnectionInfo& c, Role role, const http1::Exchange& e,
                            Identity id) const {
  const http1::Message& req = *e.request;
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
  uint64_t start = role == Role::kServer ? req.first_chunk.ts_ns
                                         : (req.first_chunk.enter_ts_ns ? req.first_chunk.enter_ts_ns
                                                                        : req.first_chunk.ts_ns);
  uint64_t end = req.last_chunk.ts_ns;
  if (e.response) end = e.response->last_chunk.ts_ns;
  else if (e.closed_ts_ns) end = e.closed_ts_ns;
  if (end < start) end = start;
  span.start_unix_ns = Epoch(start);
  span.end_unix_ns = Epoch(end);

  Target target = SplitTarget(req.target, req.method);
  ResolvedRoute route = ResolveRoute(config_.routes, target.path.empty() ? req.target : target.path);
  span.attributes.reserve(28);
  span.name = req.method == "CONNECT" ? std::string("CONNECT") : HttpSpanName(req.method, route.route);
  if (route.configured) AddString(span, "http.route", route.route);

  FillAttributes(c, role, e, span);
  AddString(span, "threadline.parent.source", id.parent_source);
  if (id.injected) span.attributes.push_back({"threadline.traceparent.injected", true});
  return span;
}

void HttpSpanBuilder::FillAttributes(const ConnectionInfo& c, Role role, const http1::Exchange& e,
                                     Span& span) const {
  const http1::Message& req = *e.request;
  const bool server = role == Role::kServer;

  std::string_view method = NormalizeHttpMethod(req.method);
  AddString(span, "http.request.method", method);
  if (method != req.method) AddString(span, "http.request.method_original", req.method);

  Target target = SplitTarget(req.target, req.method);
  std::string query = target.has_query ? RedactQuery(target.query, config_.redaction) : std::string();
  std::string_view scheme = c.tls ? "https" : "http";  // tls: plaintext taken at the TLS library
  if (!target.path.empty()) AddString(span, "url.path", target.path);
  if (target.has_query && !query.empty()) AddString(span, "url.query", query);
  AddString(span, "url.scheme", scheme);

  // Where the request was addressed: the Host header, else the socket.
  std::optional<HostPort> host;
  if (auto h = req.headers.Get("host")) host = ParseHostHeader(*h);
  const IpAddress& server_ip = server ? c.tuple.local : c.tuple.remote;
  const uint16_t server_port = server ? c.tuple.local_port : c.tuple.remote_port;
  std::string server_address = host ? std::string(host->host) : server_ip.ToString();
  uint16_t port = host && host->port ? *host->port : (host ? (c.tls ? 443 : 80) : server_port);
  AddString(span, "server.address", server_address);
  AddInt(span, "server.port", port);

  if (!server) {
    std::string authority = IsIpv6Literal(server_address) ? "[" + server_address + "]" : server_address;
    if (port != (c.tls ? 443 : 80)) authority += ":" + std::to_string(port);
    std::string full = std::string(scheme) + "://" + authority + std::string(target.path);
    if (target.has_query) full += "?" + query;
    AddString(span, "url.full", req.method == "CONNECT" ? req.target : full);
  }

  const std::string peer_address = c.tuple_known ? c.tuple.remote.ToString() : std::string();
  if (c.tuple_known) {
    AddString(span, "network.peer.address", peer_address);
    AddInt(span, "network.peer.port", c.tuple.remote_port);
    AddString(span, "network.type", c.tuple.remote.is_v4 ? "ipv4" : "ipv6");
  }
  AddString(span, "network.transport", "tcp");
  AddString(span, "network.protocol.name", "http");
  AddString(span, "network.protocol.version", req.version_minor == 0 ? "1.0" : "1.1");

  if (server) {
    // The original client when a proxy says so, else the socket peer.
    std::string client;
    if (auto xff = req.headers.Get("x-forwarded-for")) {
      std::string_view first = *xff;
      size_t comma = first.find(',');
      if (comma != std::string_view::npos) first = first.substr(0, comma);
      client = std::string(Trim(first));
    }
    if (client.empty() && c.tuple_known) {
      client = peer_address;
      AddInt(span, "client.port", c.tuple.remote_port);
    }
    if (!client.empty()) AddString(span, "client.address", client);
  }
  if (auto ua = req.headers.Get("user-agent")) AddString(span, "user_agent.original", *ua);
  if (req.body_bytes > 0) AddInt(span, "http.request.body.size", static_cast<int64_t>(req.body_bytes));

  if (e.response) {
    const http1::Message& resp = *e.response;
    AddInt(span, "http.response.status_code", resp.status_code);
    if (resp.framing != http1::Framing::kNone || resp.body_bytes > 0)
      AddInt(span, "http.response.body.size", static_cast<int64_t>(resp.body_bytes));
    const bool error = server ? resp.status_code >= 500 : resp.status_code >= 400;
    if (error) {
      span.status = StatusCode::kError;
      AddString(span, "error.type", std::to_string(resp.status_code));
    }
    if (resp.missing_bytes()) span.attributes.push_back({"threadline.response.incomplete", true});
  }
  if (req.missing_bytes()) span.attributes.push_back({"threadline.request.incomplete", true});

  switch (e.outcome) {
    case http1::Outcome::kClosedBeforeResponse: {
      span.status = StatusCode::kError;
      span.status_message = "connection closed before the response";
      AddString(span, "error.type", "connection_closed");
      SpanEvent ev;
      ev.name = "exception";
      ev.time_unix_ns = span.end_unix_ns;
      ev.attributes.push_back({"exception.type", std::string("ConnectionClosedBeforeResponse")});
      ev.attributes.push_back({"exception.message", std::string(span.status_message)});
      span.events.push_back(std::move(ev));
      break;
    }
    case http1::Outcome::kResponseLost:
      span.attributes.push_back({"threadline.response.lost", true});
      break;
    case http1::Outcome::kUpgraded:
      if (auto up = e.response ? e.response->headers.Get("upgrade") : std::nullopt)
        AddString(span, "threadline.http.upgrade", *up);
      break;
    default:
      break;
  }
}

}  // namespace threadline
