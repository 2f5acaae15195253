// Tail keep (agent/pipeline/sampled_filter.h): local traces the head sampling dropped are held
// until the trace store says they are complete, then kept whole when a span is an ERROR or slow
// for its route, dropped otherwise; the bounds (held spans, wait) decide early and are counted;
// late spans of a kept trace follow its verdict; every kept span says why. And the wiring with
// the real TraceStore: its completion hook, with a fake clock, is what decides.
#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

#include "agent/pipeline/red_metrics.h"
#include "agent/pipeline/sampled_filter.h"
#include "agent/traces/trace_store.h"

namespace threadline {
namespace {

struct Collect : SpanSink {
  void OnSpan(Span&& s) override { spans.push_back(std::move(s)); }
  std::vector<Span> spans;
};

constexpr uint64_t kMs = 1'000'000;

TraceId Trace(uint8_t n) {
  TraceId id;
  id.bytes.fill(0x11);
  id.bytes[15] = n;
  return id;
}

// A span of trace `t`: `name` "GET /route", `ms` long, unsampled unless `sampled`.
Span MakeSpan(uint8_t t, uint8_t n, const std::string& name, uint64_t ms, bool error = false, bool root = false,
              bool sampled = false) {
  Span s;
  s.trace_id = Trace(t);
  s.span_id.bytes.fill(n);
  if (!root) s.parent_span_id.bytes.fill(0x77);
  s.flags = sampled ? kTraceFlagSampled : 0;
  s.name = name;
  s.kind = SpanKind::kServer;
  s.start_unix_ns = 1'700'000'000'000'000'000ull;
  s.end_unix_ns = s.start_unix_ns + ms * kMs;
  s.status = error ? StatusCode::kError : StatusCode::kUnset;
  s.attributes.push_back({"http.request.method", std::string("GET")});  // what RED files HTTP spans by
  return s;
}

std::string Reason(const Span& s) {
  const AttributeValue* v = FindAttribute(s.attributes, kSamplingReasonAttribute);
  return v ? std::get<std::string>(*v) : "";
}

struct Fixture {
  explicit Fixture(TailKeepOptions t = Options()) : filter(out, metrics, t, [this] { return now; }) {}
  static TailKeepOptions Options() {
    TailKeepOptions t;
    t.enabled = true;
    t.slow_ns = 500 * kMs;
    t.slow_routes = {{"/report", 2000 * kMs}, {"/static/*", 0}};
    t.max_spans = 100;
    t.max_wait_ns = 5000 * kMs;
    return t;
  }
  uint64_t Kept(const char* reason) { return metrics.GetCounter("threadline_spans_kept_total", {{"reason", reason}}).Value(); }
  uint64_t Dropped() { return metrics.GetCounter("threadline_spans_dropped_total", {{"reason", "not_sampled"}}).Value(); }
  uint64_t Decisions(const char* decision, const char* trigger) {
    return metrics.GetCounter("threadline_tail_traces_total", {{"decision", decision}, {"trigger", trigger}}).Value();
  }

  uint64_t now = 1'000 * kMs;
  MetricsRegistry metrics;
  Collect out;
  SampledSpanFilter filter;
};

TEST(TailKeepTest, HeadKeptSpansGoOnAtOnceWithRatioOrParent) {
  Fixture f;
  f.filter.OnSpan(MakeSpan(1, 1, "GET /a", 1, false, /*root=*/true, /*sampled=*/true));
  f.filter.OnSpan(MakeSpan(1, 2, "GET /b", 1, false, /*root=*/false, /*sampled=*/true));
  ASSERT_EQ(f.out.spans.size(), 2u);
  EXPECT_EQ(Reason(f.out.spans[0]), "ratio");
  EXPECT_EQ(Reason(f.out.spans[1]), "parent");
  EXPECT_EQ(f.filter.held_spans(), 0u);
}

TEST(TailKeepTest, AnErrorKeepsTheWholeLocalTraceWhenItCompletes) {
  Fixture f;
  f.filter.OnSpan(MakeSpan(2, 1, "GET /leaf", 3));                       // fine child
  f.filter.OnSpan(MakeSpan(2, 2, "GET /front", 40, /*error=*/true, /*root=*/true));
  f.filter.OnSpan(MakeSpan(3, 1, "GET /front", 40));                      // another trace, fine
  EXPECT_TRUE(f.out.spans.empty()) << "nothing decided before the trace completes";
  EXPECT_EQ(f.filter.held_spans(), 3u);
  f.filter.OnLocalTraceComplete(Trace(2));
  ASSERT_EQ(f.out.spans.size(), 2u);
  for (const Span& s : f.out.spans) {
    EXPECT_EQ(s.trace_id, Trace(2));
    EXPECT_EQ(Reason(s), "error");
    EXPECT_FALSE(s.sampled()) << "the flag stays what the context said";
  }
  f.filter.OnLocalTraceComplete(Trace(3));
  EXPECT_EQ(f.out.spans.size(), 2u);
  EXPECT_EQ(f.Kept("error"), 2u);
  EXPECT_EQ(f.Dropped(), 1u);
  EXPECT_EQ(f.Decisions("error", "complete"), 1u);
  EXPECT_EQ(f.Decisions("dropped", "complete"), 1u);
  EXPECT_EQ(f.filter.held_spans(), 0u);
  EXPECT_EQ(f.metrics.GetGauge("threadline_tail_spans_held").Value(), 0);
}

TEST(TailKeepTest, SlowIsPerRouteFirstMatchAndErrorWinsOverSlow) {
  Fixture f;
  EXPECT_EQ(f.filter.SlowThresholdNs("/report"), 2000 * kMs);
  EXPECT_EQ(f.filter.SlowThresholdNs("/static/app.js"), 0u);
  EXPECT_EQ(f.filter.SlowThresholdNs("/items/{id}"), 500 * kMs);
  f.filter.OnSpan(MakeSpan(4, 1, "GET /items/{id}", 600));   // over the global 500 ms: slow
  f.filter.OnSpan(MakeSpan(5, 1, "GET /report", 1500));      // under its own 2000 ms
  f.filter.OnSpan(MakeSpan(6, 1, "GET /static/big.iso", 9000));  // 0: never slow
  f.filter.OnSpan(MakeSpan(7, 1, "GET /report", 2500));      // over 2000 ms
  f.filter.OnSpan(MakeSpan(7, 2, "GET /items/{id}", 10, /*error=*/true));
  for (uint8_t t : {4, 5, 6, 7}) f.filter.OnLocalTraceComplete(Trace(t));
  ASSERT_EQ(f.out.spans.size(), 3u);
  EXPECT_EQ(f.out.spans[0].trace_id, Trace(4));
  EXPECT_EQ(Reason(f.out.spans[0]), "slow");
  EXPECT_EQ(Reason(f.out.spans[1]), "error");  // trace 7: slow and error: error
  EXPECT_EQ(Reason(f.out.spans[2]), "error");
  EXPECT_EQ(f.Kept("slow"), 1u);
  EXPECT_EQ(f.Kept("error"), 2u);
  EXPECT_EQ(f.Dropped(), 2u);
}

TEST(TailKeepTest, KeepErrorsOffAndNoThresholdKeepNothing) {
  TailKeepOptions t = Fixture::Options();
  t.keep_errors = false;
  t.slow_ns = 0;
  t.slow_routes.clear();
  Fixture f(t);
  f.filter.OnSpan(MakeSpan(1, 1, "GET /x", 9000, /*error=*/true));
  f.filter.OnLocalTraceComplete(Trace(1));
  EXPECT_TRUE(f.out.spans.empty());
  EXPECT_EQ(f.Dropped(), 1u);
}

TEST(TailKeepTest, LateSpansOfAKeptTraceFollowItsVerdict) {
  Fixture f;
  f.filter.OnSpan(MakeSpan(8, 1, "GET /a", 10, /*error=*/true));
  f.filter.OnLocalTraceComplete(Trace(8));
  ASSERT_EQ(f.out.spans.size(), 1u);
  f.filter.OnSpan(MakeSpan(8, 2, "GET /late", 10));  // a late part: kept at once, same reason
  ASSERT_EQ(f.out.spans.size(), 2u);
  EXPECT_EQ(Reason(f.out.spans[1]), "error");
  EXPECT_EQ(f.filter.held_spans(), 0u);
  // A late part of a dropped trace is held and decided on its own.
  f.filter.OnSpan(MakeSpan(9, 1, "GET /a", 10));
  f.filter.OnLocalTraceComplete(Trace(9));
  f.filter.OnSpan(MakeSpan(9, 2, "GET /a", 10, /*error=*/true));
  EXPECT_EQ(f.filter.held_spans(), 1u);
  f.filter.OnLocalTraceComplete(Trace(9));
  ASSERT_EQ(f.out.spans.size(), 3u);
  EXPECT_EQ(f.out.spans[2].span_id, MakeSpan(9, 2, "", 0).span_id);
}

TEST(TailKeepTest, BoundsDecideEarlyAndAreCounted) {
  TailKeepOptions t = Fixture::Options();
  t.max_spans = 3;
  Fixture f(t);
  f.filter.OnSpan(MakeSpan(1, 1, "GET /a", 10, /*error=*/true));  // oldest, interesting
  f.filter.OnSpan(MakeSpan(2, 1, "GET /a", 10));
  f.filter.OnSpan(MakeSpan(2, 2, "GET /a", 10));
  EXPECT_TRUE(f.out.spans.empty());
  f.filter.OnSpan(MakeSpan(3, 1, "GET /a", 10));  // full: trace 1 is decided now, and kept
  ASSERT_EQ(f.out.spans.size(), 1u);
  EXPECT_EQ(Reason(f.out.spans[0]), "error");
  EXPECT_EQ(f.Decisions("error", "buffer_full"), 1u);
  EXPECT_EQ(f.filter.held_spans(), 3u);
  // Held past max_wait: decided by Tick with what it has.
  f.now += 4000 * kMs;
  f.filter.Tick();
  EXPECT_EQ(f.filter.held_spans(), 3u);
  f.now += 1000 * kMs;
  f.filter.Tick();
  EXPECT_EQ(f.filter.held_spans(), 0u);
  EXPECT_EQ(f.Decisions("dropped", "max_wait"), 2u);
  EXPECT_EQ(f.Dropped(), 3u);
  // Shutdown decides everything still held.
  f.filter.OnSpan(MakeSpan(4, 1, "GET /a", 900));
  f.filter.DecideAll();
  EXPECT_EQ(f.Decisions("slow", "shutdown"), 1u);
  EXPECT_EQ(f.out.spans.size(), 2u);
}

TEST(TailKeepTest, OffUnsampledSpansAreDroppedAtOnce) {
  TailKeepOptions t;
  t.enabled = false;
  Fixture f(t);
  f.filter.OnSpan(MakeSpan(1, 1, "GET /a", 9000, /*error=*/true));
  EXPECT_TRUE(f.out.spans.empty());
  EXPECT_EQ(f.filter.held_spans(), 0u);
  EXPECT_EQ(f.Dropped(), 1u);
}

// The agent's wiring: RED metrics -> trace store -> filter, the store's completion hook deciding;
// RED counts every span, and a tail-kept span becomes its bucket's exemplar.
TEST(TailKeepTest, TheTraceStoresCompletionDecides) {
  MetricsRegistry metrics;
  Collect out;
  uint64_t now = 1'000'000'000;
  SampledSpanFilter filter(out, metrics, Fixture::Options(), [&] { return now; });
  TraceStore store({}, metrics, [&] { return now; });
  store.AddHook([&](const CompletedTracePtr& t) { filter.OnLocalTraceComplete(t->trace_id); });
  TraceStoreSink tee(store, filter);
  RedMetricsSink red(tee, metrics);
  filter.SetOnTailKept([&](const Span& s) { red.SetExemplar(s); });

  red.OnSpan(MakeSpan(1, 1, "GET /leaf", 5));
  red.OnSpan(MakeSpan(1, 2, "GET /front", 700, false, /*root=*/true));  // slow root
  red.OnSpan(MakeSpan(2, 1, "GET /front", 5, false, /*root=*/true));
  store.Tick();
  EXPECT_TRUE(out.spans.empty()) << "the store has not completed them yet";
  now += 300'000'000;  // past the store's quiet time once the root is in (200 ms)
  store.Tick();
  ASSERT_EQ(out.spans.size(), 2u);
  EXPECT_EQ(Reason(out.spans[0]), "slow");
  EXPECT_EQ(Reason(out.spans[1]), "slow");
  EXPECT_EQ(filter.held_spans(), 0u);
  uint64_t counted = 0;
  bool exemplar_of_kept_root = false;
  for (const auto& h : metrics.SnapshotAll().histograms) {
    if (h.name != "http_server_request_duration_seconds") continue;
    counted += h.data.count;
    for (const Exemplar& e : h.data.exemplars)
      if (e.time_unix_ns != 0) {
        EXPECT_EQ(e.trace_id, Trace(1).bytes) << "only the kept trace is an exemplar";
        if (e.span_id == MakeSpan(1, 2, "", 0).span_id.bytes) exemplar_of_kept_root = true;
      }
  }
  EXPECT_EQ(counted, 3u) << "RED counts every span, kept or not";
  EXPECT_TRUE(exemplar_of_kept_root);
}

}  // namespace
}  // namespace threadline
