#include "agent/pipeline/sampled_filter.h"

#include <fnmatch.h>

#include <string>

namespace threadline {

namespace {

// Traces the tail rule kept, remembered for their late spans.
constexpr size_t kKeptRecentlyMax = 4096;

constexpr const char* kTriggerNames[] = {"complete", "buffer_full", "max_wait", "shutdown"};
constexpr const char* kDecisionNames[] = {"dropped", "slow", "error"};

}  // namespace

SampledSpanFilter::SampledSpanFilter(SpanSink& next, MetricsRegistry& metrics, TailKeepOptions tail, NowFn now)
    : next_(next),
      tail_(std::move(tail)),
      now_(std::move(now)),
      not_sampled_(metrics.GetCounter("threadline_spans_dropped_total", {{"reason", "not_sampled"}},
                                      "Spans not exported, by reason")),
      kept_ratio_(metrics.GetCounter("threadline_spans_kept_total", {{"reason", "ratio"}},
                                     "Spans the sampling kept (sent on to the output), by reason")),
      kept_parent_(metrics.GetCounter("threadline_spans_kept_total", {{"reason", "parent"}})),
      kept_error_(metrics.GetCounter("threadline_spans_kept_total", {{"reason", "error"}})),
      kept_slow_(metrics.GetCounter("threadline_spans_kept_total", {{"reason", "slow"}})),
      held_gauge_(metrics.GetGauge("threadline_tail_spans_held", {},
                                   "Unsampled spans held until their local trace is complete (tail keep)")) {
  for (int d = 0; d < 3; ++d)
    for (int t = 0; t < kTriggers; ++t)
      decisions_[d][t] = &metrics.GetCounter(
          "threadline_tail_traces_total", {{"decision", kDecisionNames[d]}, {"trigger", kTriggerNames[t]}},
          "Local traces the head sampling dropped, by the tail decision (kept for an error or a slow "
          "span, or dropped) and what triggered it (the trace completed, or a bound)");
  if (tail_.max_spans == 0) tail_.max_spans = 1;
}

void SampledSpanFilter::Keep(Span& span, std::string_view reason, Counter& counter) {
  // Every protocol's Describe reserves the vector with room to spare (HTTP: 28 for ~20), so
  // this does not grow it.
  EmplaceAttribute(span.attributes, kSamplingReasonAttribute, AttributeValue(std::in_place_type<std::string>, reason));
  counter.Add(1);
  next_.OnSpan(std::move(span));
}

void SampledSpanFilter::OnSpan(Span&& span) {
  if (span.sampled()) {
    const bool root = !span.parent_span_id.valid();
    Keep(span, root ? "ratio" : "parent", root ? kept_ratio_ : kept_parent_);
    return;
  }
  if (!tail_.enabled) {
    not_sampled_.Add(1);
    return;
  }
  // A late span of a trace kept already: its verdict stands.
  if (auto k = kept_recently_.find(span.trace_id); k != kept_recently_.end() && !held_.contains(span.trace_id)) {
    if (on_tail_kept_) on_tail_kept_(span);
    const bool error = k->second == Verdict::kError;
    Keep(span, error ? "error" : "slow", error ? kept_error_ : kept_slow_);
    return;
  }
  Hold(std::move(span));
}

uint64_t SampledSpanFilter::SlowThresholdNs(std::string_view route) const {
  if (!tail_.slow_routes.empty()) {
    route_scratch_.assign(route);  // fnmatch wants a C string; the scratch keeps its capacity
    for (const auto& [pattern, ns] : tail_.slow_routes)
      if (fnmatch(pattern.c_str(), route_scratch_.c_str(), 0) == 0) return ns;
  }
  return tail_.slow_ns;
}

SampledSpanFilter::Verdict SampledSpanFilter::Judge(const Span& span) const {
  if (tail_.keep_errors && span.status == StatusCode::kError) return Verdict::kError;
  const uint64_t threshold = SlowThresholdNs(RouteOfSpanName(span.name));
  const uint64_t duration = span.end_unix_ns > span.start_unix_ns ? span.end_unix_ns - span.start_unix_ns : 0;
  if (threshold != 0 && duration > threshold) return Verdict::kSlow;
  return Verdict::kNone;
}

void SampledSpanFilter::Hold(Span&& span) {
  // Room first: the oldest held traces are decided now, with what they have.
  while (held_spans_ >= tail_.max_spans && !held_order_.empty()) DecideOldest(kBufferFull);
  const Verdict verdict = Judge(span);
  auto [it, inserted] = held_.try_emplace(span.trace_id);
  Held& h = it->second;
  if (inserted) {
    h.first_ns = now_();
    held_order_.emplace_back(span.trace_id, h.first_ns);
  }
  if (verdict > h.verdict) h.verdict = verdict;
  h.spans.push_back(std::move(span));
  ++held_spans_;
  held_gauge_.Set(static_cast<int64_t>(held_spans_));
}

void SampledSpanFilter::Remember(const TraceId& id, Verdict verdict) {
  if (kept_recently_.insert_or_assign(id, verdict).second) kept_order_.push_back(id);
  while (kept_order_.size() > kKeptRecentlyMax) {
    kept_recently_.erase(kept_order_.front());
    kept_order_.pop_front();
  }
}

void SampledSpanFilter::Decide(std::unordered_map<TraceId, Held, TraceIdHash>::iterator it, Trigger trigger) {
  Held h = std::move(it->second);
  const TraceId id = it->first;
  held_.erase(it);
  held_spans_ -= h.spans.size();
  held_gauge_.Set(static_cast<int64_t>(held_spans_));
  decisions_[static_cast<int>(h.verdict)][trigger]->Add(1);
  if (h.verdict == Verdict::kNone) {
    not_sampled_.Add(h.spans.size());
    return;
  }
  Remember(id, h.verdict);
  const bool error = h.verdict == Verdict::kError;
  for (Span& span : h.spans) {
    if (on_tail_kept_) on_tail_kept_(span);
    Keep(span, error ? "error" : "slow", error ? kept_error_ : kept_slow_);
  }
}

void SampledSpanFilter::DecideOldest(Trigger trigger) {
  const auto [id, first_ns] = held_order_.front();
  held_order_.pop_front();
  // A stale entry (its trace was decided since, and maybe held again) decides nothing.
  auto it = held_.find(id);
  if (it != held_.end() && it->second.first_ns == first_ns) Decide(it, trigger);
}

void SampledSpanFilter::OnLocalTraceComplete(const TraceId& id) {
  auto it = held_.find(id);
  if (it != held_.end()) Decide(it, kComplete);
}

void SampledSpanFilter::Tick() {
  if (held_order_.empty()) return;
  const uint64_t now = now_();
  while (!held_order_.empty() && now - held_order_.front().second >= tail_.max_wait_ns) DecideOldest(kMaxWait);
  // Entries of traces decided meanwhile: drop them from the front so the deque stays small.
  while (!held_order_.empty()) {
    auto it = held_.find(held_order_.front().first);
    if (it != held_.end() && it->second.first_ns == held_order_.front().second) break;
    held_order_.pop_front();
  }
}

void SampledSpanFilter::DecideAll() {
  while (!held_.empty()) Decide(held_.begin(), kShutdown);
  held_order_.clear();
}

}  // namespace threadline
