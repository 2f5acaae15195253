#include "agent/pipeline/red_metrics.h"

#include <variant>

namespace threadline {

namespace {
std::string StringAttr(const Attributes& attrs, std::string_view key, std::string_view fallback) {
  const AttributeValue* v = FindAttribute(attrs, key);
  if (v && std::holds_alternative<std::string>(*v)) return std::get<std::string>(*v);
  return std::string(fallback);
}

std::string StatusClass(const Span& span) {
  const AttributeValue* v = FindAttribute(span.attributes, "http.response.status_code");
  if (v && std::holds_alternative<int64_t>(*v)) {
    int64_t code = std::get<int64_t>(*v);
    if (code >= 100 && code < 600) return std::to_string(code / 100) + "xx";
  }
  return "none";  // no response (connection closed, lost)
}

// The route part of "GET /items/{id}".
std::string RouteOf(const Span& span) {
  size_t sp = span.name.find(' ');
  return sp == std::string::npos ? std::string("/") : span.name.substr(sp + 1);
}
}  // namespace

RedMetricsSink::RedMetricsSink(SpanSink& next, MetricsRegistry& metrics, size_t max_series)
    : next_(next),
      metrics_(metrics),
      max_series_(max_series),
      overflow_(metrics.GetCounter("threadline_red_series_overflow_total", {},
                                   "Spans whose RED label set was folded into route=_other")) {}

Histogram& RedMetricsSink::SeriesFor(const Span& span) {
  const bool server = span.kind == SpanKind::kServer;
  std::string service = span.resource ? StringAttr(span.resource->attributes, "service.name", "unknown_service")
                                      : std::string("unknown_service");
  std::string method = StringAttr(span.attributes, "http.request.method", "_OTHER");
  std::string route = RouteOf(span);
  std::string status = StatusClass(span);
  std::string key = std::string(server ? "s" : "c") + '\x1f' + service + '\x1f' + method + '\x1f' +
                    route + '\x1f' + status;
  auto it = series_.find(key);
  if (it != series_.end()) return *it->second;
  if (series_.size() >= max_series_) {
    overflow_.Add(1);
    route = "_other";
    key = std::string(server ? "s" : "c") + '\x1f' + service + '\x1f' + method + '\x1f' + route +
          '\x1f' + status;
    it = series_.find(key);
    if (it != series_.end()) return *it->second;
  }
  Histogram& h = metrics_.GetHistogram(
      server ? "http_server_request_duration_seconds" : "http_client_request_duration_seconds",
      {{"service_name", service},
       {"http_request_method", method},
       {"http_route", route},
       {"http_response_status_class", status}},
      DefaultLatencyBuckets(),
      server ? "Duration of HTTP requests served by traced processes"
             : "Duration of HTTP requests sent by traced processes");
  series_.emplace(std::move(key), &h);
  return h;
}

void RedMetricsSink::OnSpan(Span span) {
  if (span.kind == SpanKind::kServer || span.kind == SpanKind::kClient) {
    double seconds = span.end_unix_ns > span.start_unix_ns
                         ? static_cast<double>(span.end_unix_ns - span.start_unix_ns) / 1e9
                         : 0.0;
    SeriesFor(span).Observe(seconds);
  }
  next_.OnSpan(std::move(span));
}

}  // namespace threadline
