// Choosing traces from the store for the views: filters of the trace list, the endpoints
// (service + entry span name), and the slowest p% of an endpoint's traces.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "agent/traces/trace_store.h"

namespace threadline {

enum class StatusFilter { kAny, kError, kOk };

struct TraceQuery {
  std::string service;          // some span of the trace belongs to it (exact)
  std::string route;            // substring (case-insensitive) of the entry span's name or http.route
  StatusFilter status = StatusFilter::kAny;
  uint64_t min_duration_ns = 0;
  // An endpoint: the entry span's service and name (both exact); empty: any.
  std::string endpoint_service;
  std::string endpoint_operation;
  double slowest_percent = 100;  // keep only the slowest p% of each endpoint's matches (0 < p <= 100)
};

// The traces matching `q`, slowest first (ties: newest first).
std::vector<CompletedTracePtr> SelectTraces(const std::vector<CompletedTracePtr>& traces, const TraceQuery& q);

// The services of a trace's spans, sorted, distinct.
std::vector<std::string_view> TraceServices(const CompletedTrace& trace);

struct EndpointStats {
  std::string service;
  std::string operation;
  size_t traces = 0;
  size_t errors = 0;  // traces with an error span
  uint64_t p50_ns = 0;
  uint64_t p90_ns = 0;
  uint64_t p99_ns = 0;
  uint64_t max_ns = 0;
  uint64_t total_ns = 0;  // summed durations: what the endpoint costs its callers
};

// Every endpoint of `traces`, the costliest (summed duration) first.
std::vector<EndpointStats> Endpoints(const std::vector<CompletedTracePtr>& traces);

}  // namespace threadline
