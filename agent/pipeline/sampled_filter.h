// The end of an unsampled span: spans whose W3C sampled flag is off stop here, counted as
// threadline_spans_dropped_total{reason="not_sampled"}; the others go on unchanged.
//
// Why a sink of its own, after RedMetricsSink and before the output: the RED histograms must
// count every request, sampled or not (a ratio of 0.1 must not divide the request rate by ten),
// so unsampled spans are built and observed like the others and dropped only once the metrics
// have seen them. The builder decides the flag (parent-based, agent/spans/sampler.h) and knows
// nothing of metrics; RedMetricsSink stays an observer that forwards everything; the wiring
// (agent/app/agent.cpp) reads as the rule: builder -> RED metrics -> this filter -> output.
// With every span sampled it costs one flag test per span.
//
// Kept spans are counted by why: threadline_spans_kept_total{reason="ratio"} for roots (the ratio
// rule on a new trace id kept it), {reason="parent"} for the others (they follow their parent's
// sampled flag). Kept + not_sampled = every span built; what is kept is what the output should
// deliver, which the "tracing silence" alert compares with what was exported.
#pragma once

#include "agent/common/metrics.h"
#include "agent/spans/span.h"

namespace threadline {

class SampledSpanFilter : public SpanSink {
 public:
  // `next` and `metrics` must outlive the filter.
  SampledSpanFilter(SpanSink& next, MetricsRegistry& metrics)
      : next_(next),
        not_sampled_(metrics.GetCounter("threadline_spans_dropped_total", {{"reason", "not_sampled"}},
                                        "Spans not exported, by reason")),
        kept_ratio_(metrics.GetCounter("threadline_spans_kept_total", {{"reason", "ratio"}},
                                       "Spans the sampling kept (sent on to the output), by reason")),
        kept_parent_(metrics.GetCounter("threadline_spans_kept_total", {{"reason", "parent"}})) {}

  void OnSpan(Span span) override {
    if (!span.sampled()) {
      not_sampled_.Add(1);
      return;
    }
    (span.parent_span_id.valid() ? kept_parent_ : kept_ratio_).Add(1);
    next_.OnSpan(std::move(span));
  }
  void Flush() override { next_.Flush(); }

 private:
  SpanSink& next_;
  Counter& not_sampled_;
  Counter& kept_ratio_;
  Counter& kept_parent_;
};

}  // namespace threadline
