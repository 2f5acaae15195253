// RED metrics of the traced services, derived from the spans on their way out:
// http_server_request_duration_seconds and http_client_request_duration_seconds histograms by
// service, method, route and status class (the Prometheus names of the OpenTelemetry
// http.server.request.duration / http.client.request.duration instruments), and for database
// CLIENT spans (those with db.system.name) db_client_operation_duration_seconds by service,
// system, operation, collection and error type (db.client.operation.duration).
//
// Cardinality is bounded: methods are normalised, statuses become classes (2xx ...), routes are
// the low-cardinality span-name routes, database operations and collections come from the
// statement's summary (never its values); past max_series distinct label sets (per family) new
// ones are folded into route="_other" / db_collection_name="_other" (counted). Database spans
// of a server's own side (db.server_spans) are not in these metrics.
//
// Exemplars: a sampled span (one that goes on to the output) becomes the exemplar of the bucket
// it falls in (trace id, span id, duration, end time), so a latency bucket links to a trace; the
// OpenMetrics exposition shows them (exporter/prometheus_text.h). Unsampled spans are counted
// but not exemplars, unless the tail rule keeps them later (SetExemplar).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "agent/common/metrics.h"
#include "agent/spans/span.h"

namespace threadline {

struct RedAttributes;  // what the stage reads of a span (red_metrics.cpp)

class RedMetricsSink : public SpanSink {
 public:
  // Spans go on to `next` unchanged; `next` must outlive this sink.
  RedMetricsSink(SpanSink& next, MetricsRegistry& metrics, size_t max_series = 2000);

  void OnSpan(Span&& span) override;
  // Makes `span`, observed before as unsampled and kept later by the tail rule
  // (agent/pipeline/sampled_filter.h), the exemplar of its bucket. Not counted again.
  void SetExemplar(const Span& span);
  void Flush() override { next_.Flush(); }

 private:
  // The histogram `span` is counted in, or nullptr (database spans of a server's own side).
  // `count_overflow`: a label set folded into _other is counted (once per span, when observed).
  Histogram* HistogramFor(const Span& span, bool count_overflow);
  Histogram& SeriesFor(const Span& span, const RedAttributes& attrs, bool count_overflow);
  Histogram& DbSeriesFor(const Span& span, const RedAttributes& attrs, std::string_view system,
                         bool count_overflow);

  SpanSink& next_;
  MetricsRegistry& metrics_;
  size_t max_series_;
  std::unordered_map<std::string, Histogram*> series_;
  std::unordered_map<std::string, Histogram*> db_series_;
  std::string key_;  // SeriesFor()'s lookup key, kept for its capacity
  // The service name of the last resource seen, a view into it (the resource is kept alive
  // here): a process's spans share one Resource, so its service.name is not searched for in
  // every span (~70 instructions per span; callgrind, pipeline_bench).
  std::string_view ServiceOf(const Span& span);
  std::shared_ptr<const Resource> service_resource_;
  std::string_view service_;
  Counter& overflow_;
  Counter& db_overflow_;
};

}  // namespace threadline
