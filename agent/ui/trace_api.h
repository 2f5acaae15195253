// The web view's JSON API (docs/flame-view.md has the reference), over a TraceStore:
//
//   GET /api/traces?service=&route=&status=error|ok&min_ms=&limit=&since=
//   GET /api/traces/{trace id}[?attributes=0]
//   GET /api/traces/{trace id}/spans/{span id}
//   GET /api/endpoints
//   GET /api/flame?service=&operation=&slowest=P[&format=folded]
//   GET /api/operations?service=&operation=&slowest=P
//
// Every answer is computed from a snapshot of the store taken without holding its lock during
// the work (critical paths are computed per request: nothing is cached, so memory stays what
// the store's bounds say).
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "agent/traces/trace_query.h"
#include "agent/traces/trace_store.h"
#include "exporter/http_server.h"

namespace threadline {

class TraceApi {
 public:
  // `source` says where the traces come from ("live: this agent", "files: a.json b.json").
  TraceApi(const TraceStore& store, std::string source) : store_(store), source_(std::move(source)) {}

  // The answer to an /api/ request; nullopt for other paths.
  std::optional<HttpResponse> Handle(const HttpRequest& request) const;

  // The renderers (tests call them directly).
  std::string TracesJson(const TraceQuery& query, size_t limit, uint64_t since_generation) const;
  std::optional<std::string> TraceJson(const TraceId& id, bool attributes) const;
  // One span's attributes (the page asks for them when a span is clicked).
  std::optional<std::string> SpanJson(const TraceId& trace, const SpanId& span) const;
  std::string EndpointsJson() const;
  std::string FlameJson(const TraceQuery& query) const;
  std::string FlameFolded(const TraceQuery& query) const;
  std::string OperationsJson(const TraceQuery& query) const;

 private:
  const TraceStore& store_;
  std::string source_;
};

// Parses a query's filters (service, route, status, min_ms, operation, slowest); an error
// names the bad parameter.
Result<TraceQuery> ParseTraceQuery(const HttpRequest& request);

// 32 hex digits.
std::optional<TraceId> ParseTraceId(std::string_view hex);

}  // namespace threadline
