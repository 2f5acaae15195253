#include "agent/pipeline/red_metrics.h"

#include <string_view>
#include <variant>

namespace threadline {

// What this stage reads of a span's attributes, found in one pass over them (a FindAttribute
// scan for each, three to five per span, was ~580 instructions per HTTP span). The first
// attribute of a name counts, as FindAttribute's.
struct RedAttributes {
  const AttributeValue* db_system = nullptr;
  const AttributeValue* db_operation = nullptr;
  const AttributeValue* db_collection = nullptr;
  const AttributeValue* error_type = nullptr;
  const AttributeValue* method = nullptr;
  const AttributeValue* status_code = nullptr;
};

namespace {

RedAttributes ReadRedAttributes(const Attributes& attrs) {
  RedAttributes r;
  // The first byte first: names of these lengths that are not asked for (url.scheme,
  // server.address, network.peer.port, network.transport, client.address, user_agent.original)
  // all differ there, so they cost no memcmp call.
  auto take = [](const AttributeValue*& slot, const Attribute& a, std::string_view key, std::string_view name) {
    if (slot == nullptr && key[0] == name[0] && key == name) slot = &a.value;
  };
  for (const Attribute& a : attrs) {
    const std::string_view key = a.key.view();
    switch (key.size()) {  // names of different lengths never compare
      case 10: take(r.error_type, a, key, "error.type"); break;
      case 14: take(r.db_system, a, key, "db.system.name"); break;
      case 17: take(r.db_operation, a, key, "db.operation.name"); break;
      case 18: take(r.db_collection, a, key, "db.collection.name"); break;
      case 19: take(r.method, a, key, "http.request.method"); break;
      case 25: take(r.status_code, a, key, "http.response.status_code"); break;
      default: break;
    }
  }
  return r;
}

std::string_view StringOr(const AttributeValue* v, std::string_view fallback) {
  if (v && std::holds_alternative<std::string>(*v)) return std::get<std::string>(*v);
  return fallback;
}

std::string_view StatusClass(const AttributeValue* v) {
  static constexpr std::string_view kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  if (v && std::holds_alternative<int64_t>(*v)) {
    int64_t code = std::get<int64_t>(*v);
    if (code >= 100 && code < 600) return kClasses[code / 100 - 1];
  }
  return "none";  // no response (connection closed, lost)
}

// The series' label values joined into `key` (reused, so a known series costs no allocation).
void SeriesKey(std::string& key, char family, std::initializer_list<std::string_view> parts) {
  key.clear();
  key += family;
  for (std::string_view part : parts) {
    key += '\x1f';
    key += part;
  }
}

}  // namespace

std::string_view RedMetricsSink::ServiceOf(const Span& span) {
  if (!span.resource) return "unknown_service";
  if (span.resource != service_resource_) {
    service_ = StringOr(FindAttribute(span.resource->attributes, "service.name"), "unknown_service");
    service_resource_ = span.resource;
  }
  return service_;
}

RedMetricsSink::RedMetricsSink(SpanSink& next, MetricsRegistry& metrics, size_t max_series)
    : next_(next),
      metrics_(metrics),
      max_series_(max_series),
      overflow_(metrics.GetCounter("threadline_red_series_overflow_total", {},
                                   "Spans whose RED label set was folded into route=_other")),
      db_overflow_(metrics.GetCounter("threadline_db_red_series_overflow_total", {},
                                      "Database spans whose RED label set was folded into "
                                      "db_collection_name=_other")) {}

Histogram& RedMetricsSink::SeriesFor(const Span& span, const RedAttributes& attrs, bool count_overflow) {
  const bool server = span.kind == SpanKind::kServer;
  const std::string_view service = ServiceOf(span);
  const std::string_view method = StringOr(attrs.method, "_OTHER");
  std::string_view route = RouteOfSpanName(span.name);
  const std::string_view status = StatusClass(attrs.status_code);
  SeriesKey(key_, server ? 's' : 'c', {service, method, route, status});
  auto it = series_.find(key_);
  if (it != series_.end()) return *it->second;
  if (series_.size() >= max_series_) {
    if (count_overflow) overflow_.Add(1);
    route = "_other";
    SeriesKey(key_, server ? 's' : 'c', {service, method, route, status});
    it = series_.find(key_);
    if (it != series_.end()) return *it->second;
  }
  Histogram& h = metrics_.GetHistogram(
      server ? "http_server_request_duration_seconds" : "http_client_request_duration_seconds",
      {{"service_name", std::string(service)},
       {"http_request_method", std::string(method)},
       {"http_route", std::string(route)},
       {"http_response_status_class", std::string(status)}},
      DefaultLatencyBuckets(),
      server ? "Duration of HTTP requests served by traced processes"
             : "Duration of HTTP requests sent by traced processes");
  series_.emplace(key_, &h);
  return h;
}

Histogram& RedMetricsSink::DbSeriesFor(const Span& span, const RedAttributes& attrs, std::string_view system,
                                       bool count_overflow) {
  const std::string_view service = ServiceOf(span);
  const std::string_view operation = StringOr(attrs.db_operation, "");
  std::string_view collection = StringOr(attrs.db_collection, "");
  const std::string_view error = StringOr(attrs.error_type, "");
  SeriesKey(key_, 'd', {service, system, operation, collection, error});
  auto it = db_series_.find(key_);
  if (it != db_series_.end()) return *it->second;
  if (db_series_.size() >= max_series_) {
    if (count_overflow) db_overflow_.Add(1);
    collection = "_other";
    SeriesKey(key_, 'd', {service, system, operation, collection, error});
    it = db_series_.find(key_);
    if (it != db_series_.end()) return *it->second;
  }
  Histogram& h = metrics_.GetHistogram("db_client_operation_duration_seconds",
                                       {{"service_name", std::string(service)},
                                        {"db_system_name", std::string(system)},
                                        {"db_operation_name", std::string(operation)},
                                        {"db_collection_name", std::string(collection)},
                                        {"error_type", std::string(error)}},
                                       DefaultLatencyBuckets(),
                                       "Duration of database operations sent by traced processes");
  db_series_.emplace(key_, &h);
  return h;
}

Histogram* RedMetricsSink::HistogramFor(const Span& span, bool count_overflow) {
  if (span.kind != SpanKind::kServer && span.kind != SpanKind::kClient) return nullptr;
  const RedAttributes attrs = ReadRedAttributes(span.attributes);
  const std::string_view db_system = StringOr(attrs.db_system, "");
  if (!db_system.empty())
    return span.kind == SpanKind::kClient ? &DbSeriesFor(span, attrs, db_system, count_overflow) : nullptr;
  // HTTP requests (HTTP/1 and HTTP/2); gRPC calls have no method or status class to file them
  // under here.
  if (attrs.method != nullptr) return &SeriesFor(span, attrs, count_overflow);
  return nullptr;
}

namespace {
Exemplar ExemplarOf(const Span& span) {
  const double seconds = span.end_unix_ns > span.start_unix_ns
                             ? static_cast<double>(span.end_unix_ns - span.start_unix_ns) / 1e9
                             : 0.0;
  return Exemplar{span.trace_id.bytes, span.span_id.bytes, seconds, span.end_unix_ns};
}
}  // namespace

void RedMetricsSink::OnSpan(Span&& span) {
  if (Histogram* h = HistogramFor(span, /*count_overflow=*/true)) {
    const Exemplar e = ExemplarOf(span);
    // A kept span can stand for its bucket (the exemplar links to a trace that is exported).
    if (span.sampled()) {
      h->ObserveWithExemplar(e);
    } else {
      h->Observe(e.value);
    }
  }
  next_.OnSpan(std::move(span));
}

void RedMetricsSink::SetExemplar(const Span& span) {
  if (Histogram* h = HistogramFor(span, /*count_overflow=*/false)) h->SetExemplar(ExemplarOf(span));
}

}  // namespace threadline
