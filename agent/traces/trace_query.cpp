#include "agent/traces/trace_query.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>

namespace threadline {

namespace {

bool ContainsIgnoreCase(std::string_view haystack, std::string_view needle) {
  if (needle.empty()) return true;
  auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  });
  return it != haystack.end();
}

bool Matches(const CompletedTrace& t, const TraceQuery& q) {
  if (t.spans.empty()) return false;
  const StoredSpan& root = t.root_span();
  if (t.duration_ns() < q.min_duration_ns) return false;
  if (q.status == StatusFilter::kError && t.error_spans == 0) return false;
  if (q.status == StatusFilter::kOk && t.error_spans != 0) return false;
  if (!q.endpoint_service.empty() && root.service() != q.endpoint_service) return false;
  if (!q.endpoint_operation.empty() && root.name != q.endpoint_operation) return false;
  if (!q.route.empty() && !ContainsIgnoreCase(root.name, q.route) &&
      !ContainsIgnoreCase(root.StringAttribute("http.route"), q.route))
    return false;
  if (!q.service.empty() &&
      std::none_of(t.spans.begin(), t.spans.end(), [&](const StoredSpan& s) { return s.service() == q.service; }))
    return false;
  return true;
}

uint64_t Percentile(const std::vector<uint64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

}  // namespace

std::vector<CompletedTracePtr> SelectTraces(const std::vector<CompletedTracePtr>& traces, const TraceQuery& q) {
  std::vector<CompletedTracePtr> out;
  for (const auto& t : traces)
    if (Matches(*t, q)) out.push_back(t);
  auto slowest_first = [](const CompletedTracePtr& a, const CompletedTracePtr& b) {
    if (a->duration_ns() != b->duration_ns()) return a->duration_ns() > b->duration_ns();
    return a->seq > b->seq;
  };
  std::sort(out.begin(), out.end(), slowest_first);
  if (q.slowest_percent > 0 && q.slowest_percent < 100 && !out.empty()) {
    // The tail of each endpoint: a slow endpoint must not crowd the others out.
    std::map<std::pair<std::string_view, std::string_view>, size_t> seen, total;
    for (const auto& t : out) ++total[{t->root_span().service(), t->root_span().name}];
    std::vector<CompletedTracePtr> kept;
    for (const auto& t : out) {
      const std::pair<std::string_view, std::string_view> key{t->root_span().service(), t->root_span().name};
      const size_t keep = std::max<size_t>(
          1, static_cast<size_t>(std::ceil(static_cast<double>(total[key]) * q.slowest_percent / 100.0)));
      if (seen[key]++ < keep) kept.push_back(t);
    }
    out = std::move(kept);
  }
  return out;
}

std::vector<std::string_view> TraceServices(const CompletedTrace& trace) {
  std::vector<std::string_view> out;
  for (const auto& s : trace.spans) {
    const std::string_view name = s.service();
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<EndpointStats> Endpoints(const std::vector<CompletedTracePtr>& traces) {
  struct Acc {
    std::vector<uint64_t> durations;
    size_t errors = 0;
  };
  std::map<std::pair<std::string_view, std::string_view>, Acc> by_endpoint;
  for (const auto& t : traces) {
    if (t->spans.empty()) continue;
    const StoredSpan& root = t->root_span();
    Acc& a = by_endpoint[{root.service(), root.name}];
    a.durations.push_back(t->duration_ns());
    if (t->error_spans) ++a.errors;
  }
  std::vector<EndpointStats> out;
  for (auto& [key, a] : by_endpoint) {
    std::sort(a.durations.begin(), a.durations.end());
    EndpointStats e;
    e.service = key.first;
    e.operation = key.second;
    e.traces = a.durations.size();
    e.errors = a.errors;
    e.p50_ns = Percentile(a.durations, 0.50);
    e.p90_ns = Percentile(a.durations, 0.90);
    e.p99_ns = Percentile(a.durations, 0.99);
    e.max_ns = a.durations.back();
    for (uint64_t d : a.durations) e.total_ns += d;
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const EndpointStats& a, const EndpointStats& b) {
    if (a.total_ns != b.total_ns) return a.total_ns > b.total_ns;
    return std::tie(a.service, a.operation) < std::tie(b.service, b.operation);
  });
  return out;
}

}  // namespace threadline
