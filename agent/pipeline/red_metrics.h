// RED metrics of the traced services, derived from the spans on their way out:
// http_server_request_duration_seconds and http_client_request_duration_seconds histograms by
// service, method, route and status class (the Prometheus names of the OpenTelemetry
// http.server.request.duration / http.client.request.duration instruments).
//
// Cardinality is bounded: methods are normalised, statuses become classes (2xx ...), routes are
// the low-cardinality span-name routes, and past max_series distinct label sets new ones are
// folded into route="_other" (counted).
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>

#include "agent/common/metrics.h"
#include "agent/spans/span.h"

namespace threadline {

class RedMetricsSink : public SpanSink {
 public:
  // Spans go on to `next` unchanged; `next` must outlive this sink.
  RedMetricsSink(SpanSink& next, MetricsRegistry& metrics, size_t max_series = 2000);

  void OnSpan(Span span) override;
  void Flush() override { next_.Flush(); }

 private:
  Histogram& SeriesFor(const Span& span);

  SpanSink& next_;
  MetricsRegistry& metrics_;
  size_t max_series_;
  std::unordered_map<std::string, Histogram*> series_;
  std::string key_;  // SeriesFor()'s lookup key, kept for its capacity
  Counter& overflow_;
};

}  // namespace threadline
