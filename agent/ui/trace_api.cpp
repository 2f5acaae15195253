#include "agent/ui/trace_api.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <type_traits>
#include <variant>

#include "agent/traces/critical_path.h"
#include "agent/traces/flame_graph.h"
#include "agent/traces/trace_tree.h"
#include "agent/ui/json_writer.h"

namespace threadline {

namespace {

constexpr size_t kDefaultListLimit = 200;
constexpr size_t kMaxListLimit = 5000;
constexpr std::string_view kJson = "application/json";

const char* StatusName(StatusCode c) {
  switch (c) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kError: return "ERROR";
    default: return "UNSET";
  }
}

HttpResponse JsonResponse(std::string body) {
  // The API answers change with every new trace: never cached.
  return {200, std::string(kJson), std::move(body), {{"Cache-Control", "no-store"}}};
}

HttpResponse BadRequest(const std::string& why) { return HttpResponse::Text(400, why + "\n"); }

Result<double> ParseNumber(const HttpRequest& r, const std::string& key, double lo, double hi, double fallback) {
  const std::string text = r.Query(key);
  if (text.empty()) return fallback;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end == nullptr || *end != '\0' || !std::isfinite(v) || v < lo || v > hi)
    return Error{"bad " + key + "=" + text + " (a number from " + std::to_string(lo) + " to " + std::to_string(hi) + ")"};
  return v;
}

void WriteAttribute(JsonWriter& w, std::string_view key, const AttributeValue& value) {
  w.Key(key);
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) w.String(v);
        else if constexpr (std::is_same_v<T, int64_t>) w.Int(v);
        else if constexpr (std::is_same_v<T, double>) w.Double(v);
        else w.Bool(v);
      },
      value);
}

void WriteStoreInfo(JsonWriter& w, const TraceStore& store, size_t traces, size_t spans) {
  w.Key("store").BeginObject();
  w.Key("traces").Uint(traces).Key("spans").Uint(spans);
  w.Key("max_traces").Uint(store.options().max_traces).Key("max_bytes").Uint(store.options().max_bytes);
  w.EndObject();
}

}  // namespace

namespace {
// 2N hex digits into N bytes.
template <size_t N>
bool ParseHex(std::string_view hex, std::array<uint8_t, N>& out) {
  if (hex.size() != 2 * N) return false;
  auto digit = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
  };
  for (size_t i = 0; i < N; ++i) {
    const int hi = digit(hex[2 * i]), lo = digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return true;
}
}  // namespace

std::optional<TraceId> ParseTraceId(std::string_view hex) {
  TraceId id;
  if (!ParseHex(hex, id.bytes) || !id.valid()) return std::nullopt;
  return id;
}

Result<TraceQuery> ParseTraceQuery(const HttpRequest& r) {
  TraceQuery q;
  q.service = r.Query("service");
  q.route = r.Query("route");
  q.endpoint_service = r.Query("endpoint_service");
  q.endpoint_operation = r.Query("operation");
  const std::string status = r.Query("status");
  if (status == "error") q.status = StatusFilter::kError;
  else if (status == "ok") q.status = StatusFilter::kOk;
  else if (!status.empty() && status != "any") return Error{"bad status=" + status + " (error, ok or any)"};
  ASSIGN_OR_RETURN(double min_ms, ParseNumber(r, "min_ms", 0, 1e9, 0));
  q.min_duration_ns = static_cast<uint64_t>(min_ms * 1e6);
  ASSIGN_OR_RETURN(q.slowest_percent, ParseNumber(r, "slowest", 0.001, 100, 100));
  return q;
}

std::string TraceApi::TracesJson(const TraceQuery& query, size_t limit, uint64_t since_generation) const {
  TraceStore::Snapshot snap = store_.Take();
  std::string out;
  JsonWriter w(out);
  w.BeginObject();
  w.Key("generation").Uint(snap.generation).Key("source").String(source_);
  if (since_generation != 0 && since_generation == snap.generation) {
    w.Key("unchanged").Bool(true).EndObject();
    return out;
  }
  size_t spans = 0;
  std::vector<std::string_view> services;
  for (const auto& t : snap.traces) {
    spans += t->spans.size();
    for (std::string_view s : TraceServices(*t))
      if (std::find(services.begin(), services.end(), s) == services.end()) services.push_back(s);
  }
  std::sort(services.begin(), services.end());
  WriteStoreInfo(w, store_, snap.traces.size(), spans);
  w.Key("services").BeginArray();
  for (std::string_view s : services) w.String(s);
  w.EndArray();
  std::vector<CompletedTracePtr> matched = SelectTraces(snap.traces, query);
  w.Key("matched").Uint(matched.size());
  w.Key("traces").BeginArray();
  for (size_t i = 0; i < matched.size() && i < limit; ++i) {
    const CompletedTrace& t = *matched[i];
    const StoredSpan& root = t.root_span();
    w.BeginObject();
    w.Key("trace_id").String(t.trace_id.Hex());
    w.Key("service").String(root.service());
    w.Key("operation").String(root.name);
    w.Key("kind").String(ToString(root.kind));
    w.Key("route").String(root.StringAttribute("http.route"));
    w.Key("start_unix_ns").BigUint(t.start_unix_ns);
    w.Key("duration_ns").Uint(t.duration_ns());
    w.Key("status").String(t.error_spans ? "error" : "ok");
    w.Key("error_spans").Uint(t.error_spans);
    w.Key("span_count").Uint(t.spans.size());
    w.Key("services").BeginArray();
    for (std::string_view s : TraceServices(t)) w.String(s);
    w.EndArray();
    w.Key("sampled").Bool(t.sampled);
    w.Key("truncated").Bool(t.truncated);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return out;
}

std::optional<std::string> TraceApi::TraceJson(const TraceId& id, bool attributes) const {
  CompletedTracePtr trace = store_.Find(id);
  if (trace == nullptr) return std::nullopt;
  const CompletedTrace& t = *trace;
  const TraceTree tree = TraceTree::Build(t.spans);
  const CriticalPath path = CriticalPath::Compute(tree);
  const uint64_t origin = tree.nodes[tree.root].start_ns;
  // Relative to the root's start; times from files may be any uint64, so saturate.
  auto rel = [&](uint64_t ns) -> int64_t {
    constexpr uint64_t kMax = static_cast<uint64_t>(INT64_MAX);
    return ns >= origin ? static_cast<int64_t>(std::min(ns - origin, kMax))
                        : -static_cast<int64_t>(std::min(origin - ns, kMax));
  };

  std::string out;
  out.reserve(t.spans.size() * (attributes ? 900 : 400) + 512);
  JsonWriter w(out);
  w.BeginObject();
  w.Key("trace_id").String(t.trace_id.Hex());
  w.Key("source").String(source_);
  w.Key("start_unix_ns").BigUint(origin);
  w.Key("duration_ns").Uint(tree.duration_ns());
  w.Key("root").Uint(tree.root);
  w.Key("critical_path_ns").Uint(path.total_ns);
  w.Key("adopted").Uint(tree.adopted);
  w.Key("shifted").Uint(tree.shifted);
  w.Key("sampled").Bool(t.sampled);
  w.Key("truncated").Bool(t.truncated);
  w.Key("parts").Uint(t.parts);
  w.Key("spans").BeginArray();
  for (size_t i = 0; i < t.spans.size(); ++i) {
    const StoredSpan& s = t.spans[i];
    const TreeNode& n = tree.nodes[i];
    w.BeginObject();
    w.Key("span_id").String(s.span_id.Hex());
    if (s.parent_span_id.valid()) w.Key("parent_span_id").String(s.parent_span_id.Hex());
    w.Key("parent").Int(n.parent);
    w.Key("edge").String(ToString(n.edge));
    w.Key("parent_source").String(s.StringAttribute("threadline.parent.source"));
    w.Key("service").String(s.service());
    w.Key("name").String(s.name);
    w.Key("kind").String(ToString(s.kind));
    w.Key("status").String(StatusName(s.status));
    if (!s.status_message.empty()) w.Key("status_message").String(s.status_message);
    w.Key("start_ns").Int(rel(n.start_ns));
    w.Key("duration_ns").Uint(n.end_ns - n.start_ns);
    w.Key("depth").Uint(n.depth);
    w.Key("self_ns").Uint(n.self_ns);
    w.Key("critical_ns").Uint(path.critical_ns[i]);
    w.Key("on_path").Bool(path.on_path[i] != 0);
    if (n.shift_ns) w.Key("shift_ns").Int(n.shift_ns);
    if (n.has_server_child) {
      w.Key("network_before_ns").Uint(n.network_before_ns);
      w.Key("network_after_ns").Uint(n.network_after_ns);
    }
    if (s.pid) w.Key("pid").Uint(s.pid);
    if (!s.sampled) w.Key("sampled").Bool(false);
    if (attributes) {
      w.Key("attributes").BeginObject();
      ForEachAttribute(s.packed_attributes,
                       [&](std::string_view k, const AttributeValue& v) { WriteAttribute(w, k, v); });
      w.EndObject();
    }
    w.EndObject();
  }
  w.EndArray();
  w.Key("segments").BeginArray();
  for (const auto& seg : path.segments) {
    w.BeginArray().Uint(seg.node).Int(rel(seg.start_ns)).Int(rel(seg.end_ns)).EndArray();
  }
  w.EndArray();
  w.EndObject();
  return out;
}

std::optional<std::string> TraceApi::SpanJson(const TraceId& trace_id, const SpanId& span_id) const {
  CompletedTracePtr trace = store_.Find(trace_id);
  if (trace == nullptr) return std::nullopt;
  for (const StoredSpan& s : trace->spans) {
    if (!(s.span_id == span_id)) continue;
    std::string out;
    JsonWriter w(out);
    w.BeginObject();
    w.Key("span_id").String(s.span_id.Hex());
    if (!s.status_message.empty()) w.Key("status_message").String(s.status_message);
    w.Key("attributes").BeginObject();
    ForEachAttribute(s.packed_attributes, [&](std::string_view k, const AttributeValue& v) { WriteAttribute(w, k, v); });
    w.EndObject();
    w.EndObject();
    return out;
  }
  return std::nullopt;
}

std::string TraceApi::EndpointsJson() const {
  TraceStore::Snapshot snap = store_.Take();
  std::string out;
  JsonWriter w(out);
  w.BeginObject();
  w.Key("generation").Uint(snap.generation).Key("source").String(source_);
  w.Key("endpoints").BeginArray();
  for (const auto& e : Endpoints(snap.traces)) {
    w.BeginObject();
    w.Key("service").String(e.service).Key("operation").String(e.operation);
    w.Key("traces").Uint(e.traces).Key("errors").Uint(e.errors);
    w.Key("p50_ns").Uint(e.p50_ns).Key("p90_ns").Uint(e.p90_ns).Key("p99_ns").Uint(e.p99_ns);
    w.Key("max_ns").Uint(e.max_ns).Key("total_ns").Uint(e.total_ns);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return out;
}

namespace {

struct Selection {
  std::vector<CompletedTracePtr> traces;  // slowest first
  size_t candidates = 0;                  // before the slowest-p% cut
};

Selection Select(const TraceStore& store, const TraceQuery& query) {
  TraceStore::Snapshot snap = store.Take();
  TraceQuery all = query;
  all.slowest_percent = 100;
  Selection s;
  s.traces = SelectTraces(snap.traces, all);
  s.candidates = s.traces.size();
  if (query.slowest_percent < 100) s.traces = SelectTraces(s.traces, query);
  return s;
}

template <typename Aggregate>
void AddAll(const std::vector<CompletedTracePtr>& traces, Aggregate& agg) {
  for (const auto& t : traces) {
    const TraceTree tree = TraceTree::Build(t->spans);
    agg.Add(t->spans, tree, CriticalPath::Compute(tree));
  }
}

// Iterative: a garbled file can nest spans as deep as it likes.
void WriteFlameTree(JsonWriter& w, const FlameGraph& g) {
  struct Item {
    uint32_t node;
    size_t next_child;
  };
  std::vector<Item> stack;
  auto open = [&](uint32_t i) {
    const FlameGraph::Node& n = g.nodes()[i];
    w.BeginObject();
    w.Key("name").String(i == 0 ? std::string_view("all") : std::string_view(g.frames().Name(n.frame)));
    if (i != 0 && g.frames().client(n.frame)) w.Key("client").Bool(true);
    w.Key("self_ns").Uint(n.self_ns).Key("total_ns").Uint(n.total_ns).Key("traces").Uint(n.traces);
    w.Key("children").BeginArray();
    stack.push_back({i, 0});
  };
  open(0);
  while (!stack.empty()) {
    Item& top = stack.back();
    const auto& children = g.nodes()[top.node].children;
    if (top.next_child < children.size()) {
      open(children[top.next_child++]);
      continue;
    }
    w.EndArray().EndObject();
    stack.pop_back();
  }
}

// The head every aggregate answer shares: where from, which traces, their total.
void WriteSelection(JsonWriter& w, const std::string& source, const TraceQuery& q, const Selection& s,
                    uint64_t total_ns) {
  w.Key("source").String(source);
  w.Key("endpoint").BeginObject();
  w.Key("service").String(q.endpoint_service).Key("operation").String(q.endpoint_operation);
  w.EndObject();
  w.Key("slowest_percent").Double(q.slowest_percent);
  w.Key("candidates").Uint(s.candidates);
  w.Key("traces").Uint(s.traces.size());
  // The fastest trace kept: the tail starts there.
  w.Key("threshold_ns").Uint(s.traces.empty() ? 0 : s.traces.back()->duration_ns());
  w.Key("total_ns").Uint(total_ns);
}

}  // namespace

std::string TraceApi::FlameJson(const TraceQuery& query) const {
  const Selection s = Select(store_, query);
  FlameGraph g;
  AddAll(s.traces, g);
  g.Finish();
  std::string out;
  JsonWriter w(out);
  w.BeginObject();
  WriteSelection(w, source_, query, s, g.total_ns());
  w.Key("root");
  WriteFlameTree(w, g);
  w.EndObject();
  return out;
}

std::string TraceApi::FlameFolded(const TraceQuery& query) const {
  FlameGraph g;
  AddAll(Select(store_, query).traces, g);
  g.Finish();
  return g.Folded();
}

std::string TraceApi::OperationsJson(const TraceQuery& query) const {
  const Selection s = Select(store_, query);
  OperationTable table;
  AddAll(s.traces, table);
  std::string out;
  JsonWriter w(out);
  w.BeginObject();
  WriteSelection(w, source_, query, s, table.total_ns());
  w.Key("operations").BeginArray();
  for (const auto& row : table.Rows()) {
    w.BeginObject();
    w.Key("frame").String(row.frame);
    if (row.client) w.Key("client").Bool(true);
    w.Key("critical_ns").Uint(row.critical_ns);
    w.Key("share").Double(table.total_ns() ? static_cast<double>(row.critical_ns) / static_cast<double>(table.total_ns()) : 0);
    w.Key("traces").Uint(row.traces).Key("endpoints").Uint(row.endpoints).Key("max_ns").Uint(row.max_ns);
    w.Key("mean_ns").Uint(row.traces ? row.critical_ns / row.traces : 0);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return out;
}

std::optional<HttpResponse> TraceApi::Handle(const HttpRequest& r) const {
  const std::string_view path = r.path;
  if (path.rfind("/api/", 0) != 0) return std::nullopt;
  auto query = ParseTraceQuery(r);
  if (!query.ok()) return BadRequest(query.error().message);
  // /api/flame and /api/operations name the endpoint as service + operation.
  TraceQuery endpoint_query = *query;
  if (path == "/api/flame" || path == "/api/operations") {
    endpoint_query.endpoint_service = r.Query("service");
    endpoint_query.service.clear();
  }
  if (path == "/api/traces") {
    auto limit = ParseNumber(r, "limit", 1, kMaxListLimit, kDefaultListLimit);
    if (!limit.ok()) return BadRequest(limit.error().message);
    auto since = ParseNumber(r, "since", 0, 1e18, 0);
    if (!since.ok()) return BadRequest(since.error().message);
    return JsonResponse(TracesJson(*query, static_cast<size_t>(*limit), static_cast<uint64_t>(*since)));
  }
  if (path.rfind("/api/traces/", 0) == 0) {
    const auto id = ParseTraceId(path.substr(12, 32));
    if (!id) return BadRequest("bad trace id (32 hex digits)");
    if (path.size() > 12 + 32) {
      const std::string_view rest = path.substr(12 + 32);
      std::optional<SpanId> span;
      if (SpanId s; rest.rfind("/spans/", 0) == 0 && ParseHex(rest.substr(7), s.bytes) && s.valid()) span = s;
      if (!span) return BadRequest("bad path: /api/traces/{trace id}/spans/{span id (16 hex digits)}");
      auto body = SpanJson(*id, *span);
      if (!body) return HttpResponse::Text(404, "span not in the store\n");
      return JsonResponse(std::move(*body));
    }
    auto body = TraceJson(*id, r.Query("attributes") != "0");
    if (!body) return HttpResponse::Text(404, "trace not in the store (evicted, or never seen)\n");
    return JsonResponse(std::move(*body));
  }
  if (path == "/api/endpoints") return JsonResponse(EndpointsJson());
  if (path == "/api/flame") {
    if (r.Query("format") == "folded") return HttpResponse::Text(200, FlameFolded(endpoint_query));
    return JsonResponse(FlameJson(endpoint_query));
  }
  if (path == "/api/operations") return JsonResponse(OperationsJson(endpoint_query));
  return HttpResponse::Text(404, "no such API; see docs/flame-view.md\n");
}

}  // namespace threadline
