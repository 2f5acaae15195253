// The sampling decision's last stage: which spans go on to the output, and why.
//
// Head decision: a span whose W3C sampled flag is on goes on at once. Its reason (attribute
// threadline.sampling.reason, counter threadline_spans_kept_total{reason}) is "ratio" for a root
// (the ratio rule on its new trace id kept it) and "parent" for the others (they follow their
// parent's sampled flag, agent/spans/sampler.h).
//
// Tail keep (TailKeepOptions, on when sampling.ratio < 1): an unsampled span is not dropped at
// once but held with the rest of its local trace (the spans this agent built for that trace
// id) until the trace store says the local trace is complete (OnLocalTraceComplete, from the
// store's completion hook: quiet for its interval, or early when the store is full). Then the
// whole local trace goes on when one of its spans is an ERROR ("error") or slower than the
// threshold of its route ("slow"; "error" wins when both), and is dropped otherwise
// (threadline_spans_dropped_total{reason="not_sampled"}). Spans of a trace kept that way that
// arrive later (a late part) go on at once with the same reason.
//
// Bounds: at most max_spans spans are held; a new span past that decides the oldest held traces
// now, with what they have. A trace held longer than max_wait_ns is decided the same way
// (Tick). Every decision is counted by what triggered it:
// threadline_tail_traces_total{decision=error|slow|dropped, trigger=complete|buffer_full|max_wait|
// shutdown}; threadline_tail_spans_held is the gauge of what waits.
//
// Why a sink of its own, after RedMetricsSink and the trace store and before the output: the
// RED histograms must count every request, sampled or not (a ratio of 0.1 must not divide the
// request rate by ten), and the store must see every span to tell when a local trace is
// complete; so unsampled spans are built and observed like the others and dropped, or held,
// only here. The wiring (agent/app/agent.cpp) reads as the rule:
// builder -> RED metrics -> trace store -> this filter -> output.
//
// Across nodes: the head decision travels in the trace context (the sampled flag of the
// traceparent or TCP option), tail keep does not: it is taken after the fact, on this node's
// part only. A downstream agent keeps its own failing or slow parts of a trace the root dropped,
// so such a trace can arrive in pieces (docs/sampling.md).
//
// Single-threaded (the consumer thread). With every span sampled it costs one flag test and one
// attribute per span.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/spans/span.h"
#include "agent/traces/trace_store.h"

namespace threadline {

// A literal array, so the key is a view of it (agent/spans/span.h AttributeKey).
inline constexpr char kSamplingReasonAttribute[] = "threadline.sampling.reason";

struct TailKeepOptions {
  bool enabled = false;
  bool keep_errors = true;            // sampling.keep_errors
  uint64_t slow_ns = 1'000'000'000;   // sampling.slow_ms; 0: no span is slow (unless its route says)
  // sampling.slow_routes: route pattern (the span name's route, fnmatch glob) -> threshold,
  // first match wins; 0 means never slow.
  std::vector<std::pair<std::string, uint64_t>> slow_routes;
  size_t max_spans = 10000;                 // sampling.tail_max_spans
  uint64_t max_wait_ns = 10'000'000'000;    // sampling.tail_max_wait_ms
};

class SampledSpanFilter : public SpanSink {
 public:
  using NowFn = std::function<uint64_t()>;  // monotonic ns; tests pass a fake
  // `next` and `metrics` must outlive the filter.
  SampledSpanFilter(SpanSink& next, MetricsRegistry& metrics, TailKeepOptions tail = {},
                    NowFn now = &TraceStore::SteadyNowNs);

  void OnSpan(Span&& span) override;
  void Flush() override { next_.Flush(); }

  // The local trace `id` is complete: decides what is held for it.
  void OnLocalTraceComplete(const TraceId& id);
  // Decides the traces held longer than max_wait_ns.
  void Tick();
  // Decides everything held (shutdown), then nothing is held.
  void DecideAll();
  // Called for each span the tail rule keeps, before it goes on (RED exemplars).
  void SetOnTailKept(std::function<void(const Span&)> f) { on_tail_kept_ = std::move(f); }

  // The threshold for a span of this route (exposed for tests).
  uint64_t SlowThresholdNs(std::string_view route) const;
  size_t held_spans() const { return held_spans_; }

 private:
  enum class Verdict : uint8_t { kNone = 0, kSlow = 1, kError = 2 };
  enum Trigger : uint8_t { kComplete, kBufferFull, kMaxWait, kShutdown, kTriggers };
  struct Held {
    std::vector<Span> spans;
    uint64_t first_ns = 0;
    Verdict verdict = Verdict::kNone;
  };

  void Keep(Span& span, std::string_view reason, Counter& counter);
  Verdict Judge(const Span& span) const;
  void Hold(Span&& span);
  void Decide(std::unordered_map<TraceId, Held, TraceIdHash>::iterator it, Trigger trigger);
  // Pops held_order_'s oldest entry and decides its trace (a bound was reached).
  void DecideOldest(Trigger trigger);
  void Remember(const TraceId& id, Verdict verdict);

  SpanSink& next_;
  TailKeepOptions tail_;
  NowFn now_;
  std::function<void(const Span&)> on_tail_kept_;
  // SlowThresholdNs()'s copy of the route, reused: every unsampled span is judged.
  mutable std::string route_scratch_;

  std::unordered_map<TraceId, Held, TraceIdHash> held_;
  std::deque<std::pair<TraceId, uint64_t>> held_order_;  // (trace, first_ns), oldest first; may be stale
  size_t held_spans_ = 0;
  // Traces kept by the tail rule recently, for their late spans (bounded FIFO).
  std::unordered_map<TraceId, Verdict, TraceIdHash> kept_recently_;
  std::deque<TraceId> kept_order_;

  Counter& not_sampled_;
  Counter& kept_ratio_;
  Counter& kept_parent_;
  Counter& kept_error_;
  Counter& kept_slow_;
  Counter* decisions_[3][kTriggers];  // [kNone (dropped), kSlow, kError][trigger]
  Gauge& held_gauge_;
};

}  // namespace threadline
