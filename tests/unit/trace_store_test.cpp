// The trace store: grouping by trace, completion after the quiet windows (fake clock), the
// bounds (count, bytes, per trace) with the oldest evicted first, late spans merged, the
// completion hook, unsampled spans kept and marked, the tee in the span pipeline, and readers
// on another thread while the consumer adds and ticks, evicted traces reused only when no reader
// holds them.
#include "agent/traces/trace_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace threadline {
namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kT0 = 1'700'000'000'000'000'000ULL;

TraceId Trace(uint32_t n) {
  TraceId t;
  t.bytes[0] = 0xab;
  t.bytes[12] = static_cast<uint8_t>(n >> 24);
  t.bytes[13] = static_cast<uint8_t>(n >> 16);
  t.bytes[14] = static_cast<uint8_t>(n >> 8);
  t.bytes[15] = static_cast<uint8_t>(n);
  return t;
}
SpanId Id(uint8_t n) {
  SpanId s;
  if (n) s.bytes[7] = n;
  return s;
}

Span MakeSpan(uint32_t trace, uint8_t id, uint8_t parent, uint64_t start_ms, uint64_t dur_ms,
              StatusCode status = StatusCode::kUnset, bool sampled = true) {
  static const auto resource =
      std::make_shared<const Resource>(Resource{.attributes = {{"service.name", std::string("svc")}}});
  Span s;
  s.trace_id = Trace(trace);
  s.span_id = Id(id);
  s.parent_span_id = Id(parent);
  s.name = "GET /x";
  s.kind = parent ? SpanKind::kClient : SpanKind::kServer;
  s.start_unix_ns = kT0 + start_ms * kMs;
  s.end_unix_ns = s.start_unix_ns + dur_ms * kMs;
  s.status = status;
  s.flags = sampled ? kTraceFlagSampled : 0;
  s.resource = resource;
  s.attributes = {{"http.request.method", std::string("GET")}, {"http.response.status_code", int64_t{200}},
                  {"threadline.parent.source", std::string(parent ? "thread" : "root")}};
  return s;
}

struct Fixture {
  explicit Fixture(TraceStoreOptions o = {}) : store(o, metrics, [this] { return now; }) {}
  uint64_t Counter(const std::string& name, const Labels& labels = {}) { return metrics.GetCounter(name, labels).Value(); }
  int64_t Gauge(const std::string& name, const Labels& labels) { return metrics.GetGauge(name, labels).Value(); }

  MetricsRegistry metrics;
  uint64_t now = 1'000 * kMs;
  TraceStore store;
};

TEST(TraceStoreTest, TraceCompletesAfterTheQuietWindowAndKeepsAllItsSpans) {
  Fixture f;
  std::vector<CompletedTracePtr> hooked;
  f.store.AddHook([&](const CompletedTracePtr& t) { hooked.push_back(t); });
  f.store.Add(MakeSpan(1, 2, 1, 10, 5));  // the child first, as a client call ends first
  f.now += 100 * kMs;
  f.store.Tick();
  EXPECT_TRUE(f.store.Take().traces.empty());  // rootless: waits the full second
  f.store.Add(MakeSpan(1, 1, 0, 0, 30, StatusCode::kError));
  f.now += 150 * kMs;
  f.store.Tick();
  EXPECT_TRUE(f.store.Take().traces.empty());
  f.now += 60 * kMs;  // 210 ms since the root arrived
  f.store.Tick();
  const auto snap = f.store.Take();
  ASSERT_EQ(snap.traces.size(), 1u);
  const CompletedTrace& t = *snap.traces[0];
  EXPECT_EQ(t.trace_id, Trace(1));
  ASSERT_EQ(t.spans.size(), 2u);
  EXPECT_EQ(t.root_span().span_id, Id(1));
  EXPECT_EQ(t.duration_ns(), 30 * kMs);
  EXPECT_EQ(t.error_spans, 1u);
  EXPECT_TRUE(t.sampled);
  EXPECT_EQ(t.root_span().StringAttribute("threadline.parent.source"), "root");
  ASSERT_EQ(hooked.size(), 1u);
  EXPECT_EQ(hooked[0], snap.traces[0]);
  EXPECT_EQ(f.Counter("threadline_trace_store_spans_total"), 2u);
  EXPECT_EQ(f.Counter("threadline_trace_store_traces_completed_total", {{"reason", "quiet"}}), 1u);
  EXPECT_EQ(f.Gauge("threadline_trace_store_traces", {{"state", "complete"}}), 1);
  EXPECT_EQ(f.Gauge("threadline_trace_store_traces", {{"state", "open"}}), 0);
  EXPECT_GT(f.Gauge("threadline_trace_store_bytes", {{"state", "complete"}}), 0);
  EXPECT_EQ(f.store.Find(Trace(1)), snap.traces[0]);
  EXPECT_EQ(f.store.Find(Trace(2)), nullptr);
}

TEST(TraceStoreTest, RootlessTraceCompletesAfterTheLongerWindow) {
  Fixture f;
  f.store.Add(MakeSpan(1, 2, 7, 0, 5));  // parent 7 is on another host
  f.now += 999 * kMs;
  f.store.Tick();
  EXPECT_TRUE(f.store.Take().traces.empty());
  f.now += 1 * kMs;
  f.store.Tick();
  EXPECT_EQ(f.store.Take().traces.size(), 1u);
}

TEST(TraceStoreTest, OldestTracesAreEvictedPastTheCountBound) {
  Fixture f(TraceStoreOptions{.max_traces = 3});
  for (uint32_t i = 1; i <= 5; ++i) {
    f.store.Add(MakeSpan(i, 1, 0, i, 1));
    f.now += 300 * kMs;
    f.store.Tick();
  }
  const auto snap = f.store.Take();
  ASSERT_EQ(snap.traces.size(), 3u);
  EXPECT_EQ(snap.traces[0]->trace_id, Trace(3));  // oldest first
  EXPECT_EQ(snap.traces[2]->trace_id, Trace(5));
  EXPECT_EQ(f.Counter("threadline_trace_store_traces_evicted_total"), 2u);
  EXPECT_EQ(f.store.Find(Trace(1)), nullptr);
}

TEST(TraceStoreTest, ByteBoundEvictsAndOpenTracesPastItCompleteEarly) {
  Fixture probe;
  probe.store.Add(MakeSpan(1, 1, 0, 0, 1));
  probe.store.CompleteAll();
  const size_t per_trace = probe.store.Take().traces[0]->bytes;
  ASSERT_GT(per_trace, 100u);

  Fixture f(TraceStoreOptions{.max_traces = 1000, .max_bytes = per_trace * 10});
  for (uint32_t i = 1; i <= 30; ++i) f.store.Add(MakeSpan(i, 1, 0, i, 1));
  // More than half the budget open: the oldest open traces were completed early.
  EXPECT_GT(f.Counter("threadline_trace_store_traces_completed_total", {{"reason", "bounds"}}), 0u);
  f.now += 300 * kMs;
  f.store.Tick();
  const auto snap = f.store.Take();
  size_t held = 0;
  for (const auto& t : snap.traces) held += t->bytes;
  EXPECT_LE(held, per_trace * 10);
  EXPECT_GE(snap.traces.size(), 8u);
  EXPECT_EQ(snap.traces.back()->trace_id, Trace(30));  // the newest stay
  EXPECT_EQ(f.Counter("threadline_trace_store_traces_evicted_total") + snap.traces.size(), 30u);
}

TEST(TraceStoreTest, OneTraceMayTakeAQuarterOfTheBudget) {
  Fixture probe;
  probe.store.Add(MakeSpan(1, 1, 0, 0, 1));
  probe.store.CompleteAll();
  const size_t one = probe.store.Take().traces[0]->bytes;

  Fixture f(TraceStoreOptions{.max_traces = 10, .max_bytes = one * 40});  // a quarter: ~10 spans
  for (uint8_t i = 1; i <= 50; ++i) f.store.Add(MakeSpan(1, i, i == 1 ? 0 : 1, i, 1));
  f.store.CompleteAll();
  const auto t = f.store.Find(Trace(1));
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->truncated);
  EXPECT_LT(t->spans.size(), 25u);
  EXPECT_LE(t->bytes, one * 10);
  EXPECT_EQ(f.Counter("threadline_trace_store_spans_dropped_total", {{"reason", "trace_too_large"}}) + t->spans.size(),
            50u);
}

TEST(TraceStoreTest, LateSpansAreMergedIntoTheCompletedTrace) {
  Fixture f;
  std::vector<CompletedTracePtr> hooked;
  f.store.AddHook([&](const CompletedTracePtr& t) { hooked.push_back(t); });
  f.store.Add(MakeSpan(1, 1, 0, 0, 30));
  f.now += 300 * kMs;
  f.store.Tick();
  const CompletedTracePtr first = f.store.Find(Trace(1));
  ASSERT_NE(first, nullptr);
  f.store.Add(MakeSpan(1, 2, 1, 5, 10));  // another process flushed later
  f.now += 1100 * kMs;
  f.store.Tick();
  const auto snap = f.store.Take();
  ASSERT_EQ(snap.traces.size(), 1u);
  EXPECT_EQ(snap.traces[0]->spans.size(), 2u);
  EXPECT_EQ(snap.traces[0]->parts, 2u);
  EXPECT_EQ(first->spans.size(), 1u);  // a reader holding the old one sees it unchanged
  EXPECT_EQ(f.Counter("threadline_trace_store_late_spans_total"), 1u);
  ASSERT_EQ(hooked.size(), 2u);
  EXPECT_EQ(hooked[1]->spans.size(), 2u);
  EXPECT_EQ(f.Gauge("threadline_trace_store_traces", {{"state", "complete"}}), 1);
  EXPECT_EQ(f.Gauge("threadline_trace_store_spans", {{"state", "complete"}}), 2);
}

TEST(TraceStoreTest, LatePartOfAnEvictedTraceStandsAlone) {
  Fixture f(TraceStoreOptions{.max_traces = 1});
  f.store.Add(MakeSpan(1, 1, 0, 0, 30));
  f.now += 300 * kMs;
  f.store.Tick();
  f.store.Add(MakeSpan(1, 2, 1, 5, 10));  // a late part of trace 1 opens...
  f.store.Add(MakeSpan(2, 1, 0, 50, 5));  // ...and trace 2 completes (bounds) and evicts trace 1
  f.now += 300 * kMs;
  f.store.Tick();
  EXPECT_EQ(f.store.Find(Trace(1)), nullptr);
  f.now += 1100 * kMs;
  f.store.Tick();
  const auto late = f.store.Find(Trace(1));
  ASSERT_NE(late, nullptr);
  EXPECT_EQ(late->spans.size(), 1u);
  EXPECT_EQ(late->parts, 1u);
  EXPECT_EQ(f.Gauge("threadline_trace_store_traces", {{"state", "open"}}), 0);
  EXPECT_EQ(f.store.Take().traces.size(), 1u);
}

TEST(TraceStoreTest, UnsampledSpansAreKeptAndMarked) {
  Fixture f;
  f.store.Add(MakeSpan(1, 1, 0, 0, 30, StatusCode::kError, /*sampled=*/false));
  f.store.CompleteAll();
  const auto t = f.store.Find(Trace(1));
  ASSERT_NE(t, nullptr);
  EXPECT_FALSE(t->sampled);
  EXPECT_FALSE(t->spans[0].sampled);
  EXPECT_EQ(f.Counter("threadline_trace_store_traces_completed_total", {{"reason", "flush"}}), 1u);
}

class CollectingSink : public SpanSink {
 public:
  void OnSpan(Span&& span) override { spans.push_back(std::move(span)); }
  std::vector<Span> spans;
};

TEST(TraceStoreTest, TeePassesEverySpanOnUnchanged) {
  Fixture f;
  CollectingSink next;
  TraceStoreSink tee(f.store, next);
  Span s = MakeSpan(1, 1, 0, 0, 30);
  s.events.push_back({"exception", kT0, {{"exception.message", std::string("closed early")}}});
  tee.OnSpan(Span(s));  // a copy: s is compared with what came out
  ASSERT_EQ(next.spans.size(), 1u);
  EXPECT_EQ(next.spans[0].attributes, s.attributes);
  f.store.CompleteAll();
  const StoredSpan& kept = f.store.Find(Trace(1))->spans[0];
  std::vector<std::pair<std::string, AttributeValue>> attrs;
  ForEachAttribute(kept.packed_attributes,
                   [&](std::string_view k, const AttributeValue& v) { attrs.emplace_back(std::string(k), v); });
  ASSERT_EQ(attrs.size(), 4u);
  EXPECT_EQ(attrs[1].first, "http.response.status_code");
  EXPECT_EQ(std::get<int64_t>(attrs[1].second), 200);
  EXPECT_EQ(attrs[3].first, "event.exception.exception.message");
  EXPECT_EQ(std::get<std::string>(attrs[3].second), "closed early");
  EXPECT_EQ(kept.service(), "svc");
}

// Packing copies short keys and values with word moves by length class (stored_span.cpp): every
// length from 0 to past 32, for keys, values and event keys (prefix + name), reads back whole.
TEST(TraceStoreTest, PackedAttributesOfEveryLengthReadBackWhole) {
  std::string text;
  for (int i = 0; i < 80; ++i) text += static_cast<char>('a' + i % 26);
  Attributes attrs;
  for (size_t n = 0; n <= 40; ++n) {
    attrs.push_back(Attribute{AttributeKey(text.substr(0, n)), AttributeValue(text.substr(n, 40 - n))});
    attrs.push_back(Attribute{AttributeKey(text.substr(1, n)), AttributeValue(static_cast<int64_t>(n) - 20)});
  }
  attrs.push_back({"d", 2.5});
  attrs.push_back({"b", true});
  std::vector<SpanEvent> events(1);
  events[0].name = "ev";
  for (size_t n = 0; n <= 40; ++n)
    events[0].attributes.push_back(Attribute{AttributeKey(text.substr(2, n)), AttributeValue(text.substr(0, n))});
  std::string packed = "x";  // appends
  PackAttributes(attrs, events, packed);
  ASSERT_EQ(packed[0], 'x');
  std::vector<std::pair<std::string, AttributeValue>> got;
  ForEachAttribute(std::string_view(packed).substr(1),
                   [&](std::string_view k, const AttributeValue& v) { got.emplace_back(std::string(k), v); });
  ASSERT_EQ(got.size(), attrs.size() + events[0].attributes.size());
  for (size_t i = 0; i < attrs.size(); ++i) {
    EXPECT_EQ(got[i].first, attrs[i].key.view()) << i;
    EXPECT_EQ(got[i].second, attrs[i].value) << i;
  }
  for (size_t i = 0; i < events[0].attributes.size(); ++i) {
    const auto& [k, v] = got[attrs.size() + i];
    EXPECT_EQ(k, "event.ev." + std::string(events[0].attributes[i].key.view())) << i;
    EXPECT_EQ(v, events[0].attributes[i].value) << i;
  }
}

// Evicted traces and their spans are reused for the next ones (no allocation per stored span in
// steady state), but never one a reader still holds, and a reused span keeps nothing of the
// span it stored before.
TEST(TraceStoreTest, EvictedTracesAreReusedOnlyWhenNobodyHoldsThem) {
  Fixture f(TraceStoreOptions{.max_traces = 2});
  auto add = [&](uint32_t trace, std::string name, bool with_error) {
    Span s = MakeSpan(trace, 1, 0, trace, 1);
    s.name = std::move(name);
    if (with_error) {
      s.status = StatusCode::kError;
      s.status_message = "connection closed before the response, long enough to be on the heap";
      s.events.push_back(SpanEvent{.name = "exception", .time_unix_ns = s.end_unix_ns,
                                   .attributes = {{"exception.type", std::string("Closed")}}});
    }
    f.store.Add(s);
    f.now += 300 * kMs;
    f.store.Tick();
  };
  add(1, "GET /first/trace/held/by/a/reader", true);
  const CompletedTracePtr held = f.store.Find(Trace(1));
  ASSERT_NE(held, nullptr);
  add(2, "GET /second/trace/evicted/and/reused", true);
  for (uint32_t i = 3; i <= 20; ++i) add(i, "GET /items/" + std::to_string(i) + "/of/many/more", false);
  EXPECT_EQ(f.Counter("threadline_trace_store_traces_evicted_total"), 18u);
  // What it keeps for reuse is on /metrics, outside the byte bound and within an eighth of it.
  const int64_t spare = f.Gauge("threadline_trace_store_bytes", {{"state", "spare"}});
  EXPECT_GT(spare, 0);
  EXPECT_LE(spare, static_cast<int64_t>(TraceStoreOptions{}.max_bytes / 8));

  // The held trace is as it was published.
  ASSERT_EQ(held->trace_id, Trace(1));
  ASSERT_EQ(held->spans.size(), 1u);
  EXPECT_EQ(held->spans[0].name, "GET /first/trace/held/by/a/reader");
  EXPECT_EQ(held->spans[0].status, StatusCode::kError);
  EXPECT_EQ(held->spans[0].StringAttribute("event.exception.exception.type"), "Closed");
  EXPECT_NE(held->spans[0].resource, nullptr);

  // The latest traces (stored in reused spans) hold exactly their own span.
  const auto snap = f.store.Take();
  ASSERT_EQ(snap.traces.size(), 2u);
  for (uint32_t i = 0; i < 2; ++i) {
    const CompletedTrace& t = *snap.traces[i];
    EXPECT_EQ(t.trace_id, Trace(19 + i));
    ASSERT_EQ(t.spans.size(), 1u);
    const StoredSpan& s = t.spans[0];
    EXPECT_EQ(s.name, "GET /items/" + std::to_string(19 + i) + "/of/many/more");
    EXPECT_EQ(s.status, StatusCode::kUnset);
    EXPECT_TRUE(s.status_message.empty());
    EXPECT_EQ(s.StringAttribute("event.exception.exception.type"), "");
    EXPECT_EQ(s.StringAttribute("threadline.parent.source"), "root");
    EXPECT_EQ(t.error_spans, 0u);
    EXPECT_EQ(t.parts, 1u);
    EXPECT_FALSE(t.truncated);
    EXPECT_EQ(t.start_unix_ns, kT0 + (19 + i) * kMs);
  }
}

TEST(TraceStoreTest, ReadersOnAnotherThreadSeeConsistentTraces) {
  Fixture f(TraceStoreOptions{.max_traces = 200});
  std::atomic<bool> done{false};
  std::atomic<size_t> reads{0};
  std::thread reader([&] {
    while (!done.load()) {
      for (const auto& t : f.store.Take().traces) {
        ASSERT_FALSE(t->spans.empty());
        ASSERT_LT(t->root, t->spans.size());
      }
      ++reads;
    }
  });
  for (uint32_t i = 1; i <= 20'000; ++i) {
    f.store.Add(MakeSpan(i, 1, 0, 0, 1));
    f.store.Add(MakeSpan(i, 2, 1, 0, 1));
    if (i % 50 == 0) {
      f.now += 250 * kMs;
      f.store.Tick();
    }
  }
  f.store.CompleteAll();
  done = true;
  reader.join();
  EXPECT_GT(reads.load(), 0u);
  EXPECT_EQ(f.store.Take().traces.size(), 200u);
  EXPECT_EQ(f.Counter("threadline_trace_store_traces_evicted_total") + 200, 20'000u);
}

}  // namespace
}  // namespace threadline
