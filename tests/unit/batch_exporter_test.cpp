// BatchSpanExporter with a fake transport: batch sizes, the schedule tick, the queue bound
// (newest dropped, counted), retries (backoff, server delay, budget), permanent errors, partial
// success, shutdown within its deadline, and OnSpan() never waiting on a hung transport.
//
// These run beside the ASan fuzzers on a 2-core machine, where a thread can wait a second or
// more for a CPU. So no upper time bound here is tight: each is far from what the code takes
// when it works (milliseconds) and far below what it would take if it were broken (a deadline,
// a delay or a budget the test sets 10x or more beyond the bound), and lower bounds (waited at
// least the backoff) hold however slow the machine is. How fast OnSpan is, is a benchmark's
// question (bench/pipeline_bench runs the exporter against a collector that is down).
#include "exporter/batch_exporter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/spans/span_buffers.h"
#include "exporter/otlp_messages.h"

namespace threadline {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// What the fake saw and how it answers; shared with the test (the exporter owns the transport).
struct FakeState {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<size_t> batch_sizes;         // every attempt
  std::vector<std::string> delivered;      // span names of successful attempts, in order
  std::vector<SteadyClock::time_point> attempt_times;
  std::deque<ExportResult> script;         // answers to give, then Success()
  bool hang = false;                       // block until released or cancelled
  bool in_send = false;
  bool cancelled = false;

  size_t attempts() {
    std::lock_guard l(mu);
    return batch_sizes.size();
  }
  size_t delivered_count() {
    std::lock_guard l(mu);
    return delivered.size();
  }
  void Release() {
    {
      std::lock_guard l(mu);
      hang = false;
    }
    cv.notify_all();
  }
  // Polls (bounded) a condition, evaluated with `mu` held: it may read the fields directly
  // (and metrics), but not call the locking helpers above.
  bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 20s) {
    const auto end = SteadyClock::now() + timeout;
    for (;;) {
      {
        std::lock_guard l(mu);
        if (pred()) return true;
      }
      if (SteadyClock::now() >= end) return false;
      std::this_thread::sleep_for(2ms);
    }
  }
};

class FakeTransport : public OtlpTransport {
 public:
  explicit FakeTransport(std::shared_ptr<FakeState> s) : s_(std::move(s)) {}
  ExportResult Send(std::string_view wire, SteadyClock::time_point /*deadline*/) override {
    otlp_pb::collector::ExportTraceServiceRequest request;
    EXPECT_TRUE(request.ParseFromArray(wire.data(), static_cast<int>(wire.size())));
    std::vector<std::string> names;
    for (const auto& rs : request.resource_spans())
      for (const auto& ss : rs.scope_spans())
        for (const auto& sp : ss.spans()) names.push_back(sp.name());
    std::unique_lock l(s_->mu);
    s_->batch_sizes.push_back(names.size());
    s_->attempt_times.push_back(SteadyClock::now());
    s_->in_send = true;
    s_->cv.notify_all();
    // Hangs until released or cancelled: it ignores the deadline on purpose, as a stuck
    // network call would, so that only Cancel() can cut it short.
    s_->cv.wait(l, [&] { return !s_->hang || s_->cancelled; });
    s_->in_send = false;
    if (s_->cancelled) {
      s_->cv.notify_all();
      return ExportResult::Retryable("cancelled");
    }
    ExportResult r = ExportResult::Success();
    if (!s_->script.empty()) {
      r = s_->script.front();
      s_->script.pop_front();
    }
    if (r.ok) s_->delivered.insert(s_->delivered.end(), names.begin(), names.end());
    s_->cv.notify_all();
    return r;
  }
  std::string Describe() const override { return "fake"; }
  void Cancel() override {
    {
      std::lock_guard l(s_->mu);
      s_->cancelled = true;
    }
    s_->cv.notify_all();
  }

 private:
  std::shared_ptr<FakeState> s_;
};

Span NamedSpan(const std::string& name) {
  Span s;
  s.trace_id = TraceId::Random();
  s.span_id = SpanId::Random();
  s.name = name;
  s.kind = SpanKind::kServer;
  return s;
}

BatchExporterOptions Options() {
  BatchExporterOptions o;
  o.max_queue_size = 100;
  o.max_export_batch_size = 3;
  o.schedule_delay = 10s;  // tests that want the tick set it lower
  o.export_timeout = 5s;
  o.request_timeout = 1s;
  o.retry = RetryPolicy{.initial_backoff = 10ms, .max_backoff = 20ms, .multiplier = 2.0};
  return o;
}

struct Fixture {
  MetricsRegistry metrics;
  std::shared_ptr<FakeState> state = std::make_shared<FakeState>();
  std::unique_ptr<BatchSpanExporter> exporter;

  explicit Fixture(const BatchExporterOptions& o, RetrySchedule::Uniform01 u = [] { return 1.0; }) {
    auto e = BatchSpanExporter::Create(o, std::make_unique<FakeTransport>(state), metrics, std::move(u));
    EXPECT_TRUE(e.ok()) << e.error().message;
    exporter = std::move(e).value();
  }
  uint64_t Dropped(const std::string& reason) {
    return metrics.GetCounter("threadline_spans_dropped_total", {{"reason", reason}}).Value();
  }
  uint64_t Requests(const std::string& result) {
    return metrics.GetCounter("threadline_export_requests_total", {{"result", result}}).Value();
  }
  uint64_t Exported() { return metrics.GetCounter("threadline_spans_exported_total").Value(); }
};

TEST(BatchSpanExporter, RejectsInconsistentOptions) {
  MetricsRegistry m;
  BatchExporterOptions o = Options();
  o.max_export_batch_size = 101;
  auto e = BatchSpanExporter::Create(o, std::make_unique<FakeTransport>(std::make_shared<FakeState>()), m);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().message, "batch exporter: max_export_batch_size (101) exceeds max_queue_size (100)");
  EXPECT_FALSE(BatchSpanExporter::Create(Options(), nullptr, m).ok());
}

TEST(BatchSpanExporter, FullBatchesGoAtOnceAndFlushSendsTheRest) {
  Fixture f(Options());
  for (int i = 0; i < 7; ++i) f.exporter->OnSpan(NamedSpan("s" + std::to_string(i)));
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->delivered.size() == 6; }));
  EXPECT_EQ(f.exporter->queue_depth(), 1u);  // a partial batch waits for the tick or a flush
  f.exporter->Flush();
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->delivered.size() == 7; }));
  EXPECT_EQ(f.state->batch_sizes, (std::vector<size_t>{3, 3, 1}));
  EXPECT_EQ(f.state->delivered, (std::vector<std::string>{"s0", "s1", "s2", "s3", "s4", "s5", "s6"}));
  EXPECT_EQ(f.Exported(), 7u);
  EXPECT_EQ(f.Requests("success"), 3u);
  EXPECT_EQ(f.metrics.GetGauge("threadline_export_queue_depth").Value(), 0);
  auto latency = f.metrics.GetHistogram("threadline_export_latency_seconds", {}, {}).Read();
  EXPECT_EQ(latency.count, 3u);
}

// Spans are built (allocated) on the agent's consumer thread; OnSpan encodes them there and
// gives their buffers back at once; the resource references travel with the encoded bytes and
// the worker leaves them to be dropped there too (at the next OnSpan that reuses the chunk, or
// Flush), where glibc's caches of that thread get any memory back.
TEST(BatchSpanExporter, SpansAreFreedOnTheThreadThatQueuedThem) {
  Fixture f(Options());
  std::mutex mu;
  std::vector<std::thread::id> freed_on;
  auto with_resource = [&](const std::string& name) {
    Span s = NamedSpan(name);
    s.resource = std::shared_ptr<const Resource>(new Resource, [&](const Resource* r) {
      std::lock_guard l(mu);
      freed_on.push_back(std::this_thread::get_id());
      delete r;
    });
    return s;
  };
  for (int i = 0; i < 3; ++i) f.exporter->OnSpan(with_resource("s" + std::to_string(i)));
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->delivered.size() == 3; }));
  {
    std::lock_guard l(mu);
    EXPECT_TRUE(freed_on.empty()) << "the worker freed spans it should have left to the producer";
  }
  f.exporter->Flush();
  std::lock_guard l(mu);
  EXPECT_EQ(freed_on, std::vector<std::thread::id>(3, std::this_thread::get_id()));
}

// OnSpan encodes the span and gives its buffers to this thread's SpanBuffers before it returns
// (nothing of the Span waits in the queue); the request the worker sends holds the spans in
// order, under their resources, across batches and chunk reuse.
TEST(BatchSpanExporter, SpansAreEncodedAndGivenBackInOnSpan) {
  BatchExporterOptions o = Options();
  o.max_export_batch_size = 2;
  o.max_queue_size = 6;
  Fixture f(o);
  SpanBuffers& buffers = SpanBuffers::Local();
  auto resource = [](const std::string& service) {
    return std::make_shared<const Resource>(Resource{.attributes = {{"service.name", service}}});
  };
  const auto a = resource("a"), b = resource("b");
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) {
      Span s = NamedSpan("r" + std::to_string(round) + "s" + std::to_string(i));
      s.attributes = {{"http.route", std::string(100, 'x')}};  // a heap string and vector
      s.resource = i % 2 == 0 ? a : b;
      const size_t vectors = buffers.vectors();
      f.exporter->OnSpan(std::move(s));
      EXPECT_EQ(buffers.vectors(), std::min(vectors + 1, SpanBuffers::kMaxVectors));
    }
    ASSERT_TRUE(f.state->WaitFor([&] { return f.state->delivered.size() == 4u * (round + 1); }));
  }
  std::vector<std::string> want;
  for (int round = 0; round < 3; ++round)
    for (int i = 0; i < 4; ++i) want.push_back("r" + std::to_string(round) + "s" + std::to_string(i));
  // Batches of two: "s0" (a) and "s1" (b) are one request, grouped by resource in order.
  EXPECT_EQ(f.state->delivered, want);
  EXPECT_EQ(f.Exported(), 12u);
  EXPECT_EQ(f.exporter->queue_depth(), 0u);
}

TEST(BatchSpanExporter, ScheduleDelaySendsAPartialBatch) {
  BatchExporterOptions o = Options();
  o.max_export_batch_size = 50;
  o.schedule_delay = 50ms;
  Fixture f(o);
  f.exporter->OnSpan(NamedSpan("a"));
  f.exporter->OnSpan(NamedSpan("b"));
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->delivered.size() == 2; }));
  EXPECT_EQ(f.state->batch_sizes, (std::vector<size_t>{2}));
}

TEST(BatchSpanExporter, FullQueueDropsTheNewestAndCountsThem) {
  BatchExporterOptions o = Options();
  o.max_queue_size = 4;
  o.max_export_batch_size = 2;
  Fixture f(o);
  f.state->hang = true;
  f.exporter->OnSpan(NamedSpan("s0"));
  f.exporter->OnSpan(NamedSpan("s1"));  // a full batch: the worker takes it and hangs
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->in_send; }));
  for (int i = 2; i < 8; ++i) f.exporter->OnSpan(NamedSpan("s" + std::to_string(i)));
  EXPECT_EQ(f.exporter->queue_depth(), 4u);
  EXPECT_EQ(f.Dropped("queue_full"), 2u);
  EXPECT_EQ(f.metrics.GetGauge("threadline_export_queue_depth").Value(), 4);
  f.state->Release();
  f.exporter->Flush();
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->delivered.size() == 6; }));
  // s6 and s7 came last and were dropped; everything older got through, in order.
  EXPECT_EQ(f.state->delivered, (std::vector<std::string>{"s0", "s1", "s2", "s3", "s4", "s5"}));
}

// Proven by structure, not by a stopwatch: 20000 OnSpan calls return while the transport is
// still hung (nothing releases it until they are all done), so none of them waited for it.
TEST(BatchSpanExporter, OnSpanNeverWaitsForAHungTransport) {
  BatchExporterOptions o = Options();
  o.max_queue_size = 1000;
  o.max_export_batch_size = 10;
  Fixture f(o);
  f.state->hang = true;
  for (int i = 0; i < 10; ++i) f.exporter->OnSpan(NamedSpan("warm"));
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->in_send; }));
  std::atomic<bool> done{false};
  std::thread producer([&] {
    for (int i = 0; i < 20000; ++i) f.exporter->OnSpan(NamedSpan("x"));
    done = true;
  });
  // Generous: a loaded machine may be slow, but a producer that waits on the hung transport
  // never finishes; the transport is released afterwards either way so the thread can end.
  const bool finished = f.state->WaitFor([&] { return done.load(); }, 60s);
  bool still_hung;
  {
    std::lock_guard l(f.state->mu);
    still_hung = f.state->in_send && f.state->hang;
  }
  f.state->Release();
  producer.join();
  ASSERT_TRUE(finished) << "OnSpan blocked behind the hung transport";
  EXPECT_TRUE(still_hung) << "test premise: the transport stayed hung while OnSpan ran";
  EXPECT_EQ(f.Dropped("queue_full"), 19000u);
}

TEST(BatchSpanExporter, RetryableErrorsAreRetriedUntilDelivered) {
  Fixture f(Options());
  f.state->script = {ExportResult::Retryable("UNAVAILABLE"), ExportResult::Retryable("UNAVAILABLE")};
  for (int i = 0; i < 3; ++i) f.exporter->OnSpan(NamedSpan("s"));
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->delivered.size() == 3; }));
  EXPECT_EQ(f.state->batch_sizes, (std::vector<size_t>{3, 3, 3}));
  EXPECT_EQ(f.Requests("retryable_error"), 2u);
  EXPECT_EQ(f.Requests("success"), 1u);
  EXPECT_EQ(f.Exported(), 3u);
  // Backoff windows 10 ms then 20 ms, jitter at the top (uniform 1.0).
  EXPECT_GE(f.state->attempt_times[1] - f.state->attempt_times[0], 10ms);
  EXPECT_GE(f.state->attempt_times[2] - f.state->attempt_times[1], 20ms);
}

TEST(BatchSpanExporter, ServerRetryDelayIsHonoured) {
  Fixture f(Options(), [] { return 0.0; });  // computed backoff would be 0
  f.state->script = {ExportResult::Retryable("HTTP 503", 300ms)};
  for (int i = 0; i < 3; ++i) f.exporter->OnSpan(NamedSpan("s"));
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->delivered.size() == 3; }));
  EXPECT_GE(f.state->attempt_times[1] - f.state->attempt_times[0], 300ms);
}

TEST(BatchSpanExporter, PermanentErrorDropsTheBatchWithoutRetry) {
  Fixture f(Options());
  f.state->script = {ExportResult::Permanent("HTTP 400")};
  for (int i = 0; i < 3; ++i) f.exporter->OnSpan(NamedSpan("bad"));
  ASSERT_TRUE(f.state->WaitFor([&] { return !f.state->in_send && f.state->batch_sizes.size() == 1; }));
  f.exporter->Shutdown(SteadyClock::now() + 2s);
  EXPECT_EQ(f.state->attempts(), 1u);
  EXPECT_EQ(f.Dropped("export_failed"), 3u);
  EXPECT_EQ(f.Requests("permanent_error"), 1u);
  EXPECT_EQ(f.Exported(), 0u);
}

TEST(BatchSpanExporter, GivesUpAfterTheBatchBudget) {
  BatchExporterOptions o = Options();
  o.export_timeout = 150ms;
  Fixture f(o);
  // Without the budget, 2000 failures at 10-20 ms of backoff each would take 20-40 s.
  for (int i = 0; i < 2000; ++i) f.state->script.push_back(ExportResult::Retryable("UNAVAILABLE"));
  for (int i = 0; i < 3; ++i) f.exporter->OnSpan(NamedSpan("s"));
  const auto start = SteadyClock::now();
  ASSERT_TRUE(f.state->WaitFor([&] { return f.Dropped("retries_exhausted") == 3; }, 15s));
  EXPECT_LT(SteadyClock::now() - start, 10s);
  EXPECT_GT(f.state->attempts(), 2u);
  EXPECT_EQ(f.Requests("retryable_error"), f.state->attempts());
  EXPECT_EQ(f.Exported(), 0u);
  // The next batch starts with a fresh budget and gets through.
  {
    std::lock_guard l(f.state->mu);
    f.state->script.clear();
  }
  for (int i = 0; i < 3; ++i) f.exporter->OnSpan(NamedSpan("later"));
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->delivered.size() == 3; }));
}

TEST(BatchSpanExporter, PartialSuccessCountsRejectedSpans) {
  Fixture f(Options());
  f.state->script = {ExportResult::Success(2, "2 spans too large")};
  for (int i = 0; i < 3; ++i) f.exporter->OnSpan(NamedSpan("s"));
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->delivered.size() == 3; }));
  f.exporter->Shutdown(SteadyClock::now() + 1s);
  EXPECT_EQ(f.Exported(), 1u);
  EXPECT_EQ(f.metrics.GetCounter("threadline_export_partial_success_rejected_spans_total").Value(), 2u);
}

TEST(BatchSpanExporter, ShutdownFlushesTheQueueWithinItsDeadline) {
  BatchExporterOptions o = Options();
  o.schedule_delay = 600s;  // only shutdown sends the partial batch
  Fixture f(o);
  for (int i = 0; i < 5; ++i) f.exporter->OnSpan(NamedSpan("s" + std::to_string(i)));
  const auto start = SteadyClock::now();
  BatchSpanExporter::ShutdownReport r = f.exporter->Shutdown(start + 300s);
  // Returns once flushed: far sooner than the deadline (or the schedule) it could wait for.
  EXPECT_LT(SteadyClock::now() - start, 60s);
  EXPECT_EQ(r.exported, 5u);
  EXPECT_EQ(r.dropped, 0u);
  EXPECT_EQ(f.state->delivered.size(), 5u);
  // After shutdown nothing is accepted; each span is counted.
  f.exporter->OnSpan(NamedSpan("late"));
  EXPECT_EQ(f.Dropped("shutdown"), 1u);
  EXPECT_EQ(f.exporter->Shutdown(SteadyClock::now() + 1s).exported, 5u);  // idempotent
}

// Shutdown returns although nothing ever releases the hung request (the fake only returns when
// released or cancelled): it was cut at the deadline. The upper bound only keeps a broken
// exporter from hanging the test run.
TEST(BatchSpanExporter, ShutdownCutsAHungRequestAtTheDeadline) {
  Fixture f(Options());
  f.state->hang = true;
  for (int i = 0; i < 5; ++i) f.exporter->OnSpan(NamedSpan("s"));  // a batch of 3 hangs, 2 wait
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->in_send; }));
  const auto start = SteadyClock::now();
  auto shutdown = std::async(std::launch::async, [&] { return f.exporter->Shutdown(start + 200ms); });
  if (shutdown.wait_for(60s) != std::future_status::ready) {
    f.state->Release();
    FAIL() << "Shutdown did not cut the hung request";
  }
  BatchSpanExporter::ShutdownReport r = shutdown.get();
  const auto took = SteadyClock::now() - start;
  EXPECT_GE(took, 200ms);
  EXPECT_EQ(r.exported, 0u);
  EXPECT_EQ(r.dropped_at_shutdown, 5u);
  EXPECT_EQ(f.Dropped("shutdown"), 5u);
}

TEST(BatchSpanExporter, ShutdownDoesNotWaitForARetryPastItsDeadline) {
  BatchExporterOptions o = Options();
  o.export_timeout = 3000s;  // the server's delay fits the batch's budget
  Fixture f(o);
  f.state->script = {ExportResult::Retryable("HTTP 503", 1000s)};
  for (int i = 0; i < 3; ++i) f.exporter->OnSpan(NamedSpan("s"));
  ASSERT_TRUE(f.state->WaitFor([&] { return f.state->batch_sizes.size() == 1 && !f.state->in_send; }));
  const auto start = SteadyClock::now();
  BatchSpanExporter::ShutdownReport r = f.exporter->Shutdown(start + 200s);
  // At once: neither the retry (1000 s away) nor the deadline (200 s) is waited for.
  EXPECT_LT(SteadyClock::now() - start, 60s);
  EXPECT_EQ(r.dropped_at_shutdown, 3u);
  EXPECT_EQ(f.Dropped("retries_exhausted"), 0u);
}

TEST(BatchSpanExporter, ServerDelayBeyondTheBudgetGivesUpAtOnce) {
  BatchExporterOptions o = Options();
  o.export_timeout = 120s;
  Fixture f(o);
  f.state->script = {ExportResult::Retryable("HTTP 503", 1000s)};
  for (int i = 0; i < 3; ++i) f.exporter->OnSpan(NamedSpan("s"));
  // At once, not after the 120 s budget (nor the 1000 s delay).
  ASSERT_TRUE(f.state->WaitFor([&] { return f.Dropped("retries_exhausted") == 3; }, 60s));
  EXPECT_EQ(f.state->attempts(), 1u);
}

}  // namespace
}  // namespace threadline
