// The trace store: recent traces kept in the agent for the built-in view (agent/ui/) and for
// decisions taken per whole trace (tail keep, issue #20).
//
// Two sides, two threads:
//   - The consumer thread (the agent's span pipeline) calls Add() for every span and Tick()
//     periodically. A span goes into its trace's "open" entry: a hash lookup and a push_back,
//     no lock. A trace is complete once it has been quiet for `quiet_ns` (or `root_quiet_ns`
//     once its root, a span without parent, arrived: a root ends last). Tick() completes due
//     traces into immutable CompletedTrace objects, runs the completion hooks, and publishes
//     them to the readers' side with a try_lock: if a reader holds the lock, publishing waits
//     for the next Tick, so the consumer never waits for the UI.
//   - Readers (the UI server's thread) take a Snapshot(): shared pointers to the completed
//     traces, copied under the lock (a few microseconds for thousands of traces); all the
//     work on them (critical paths, JSON) happens after the lock is released.
//
// Bounds: completed traces are kept up to `max_traces` and, with the open ones, `max_bytes`
// (StoredSpan::MemoryBytes plus a per-trace overhead); past either the oldest completed trace
// is evicted. Open traces past the same bounds are completed early. One trace may take at most
// a quarter of `max_bytes`; its later spans are dropped from the store (the output still gets
// them). Everything is counted: threadline_trace_store_* in /metrics.
//
// Late spans: a span for a trace completed already (another process flushed it later) opens
// a new part; when that completes, it is merged with the completed trace (a new object
// replaces the old one, which readers holding it keep seeing unchanged) and the hooks run
// again with the merged trace (CompletedTrace::parts > 1).
//
// Sampling: the store sits before the sampled filter, so it holds every span the agent built,
// exported or not (a trace's `sampled` says whether its spans went to the output). The view
// shows both and says which; tail decisions (#20) need the outcome of every local trace.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/common/node_recycler.h"
#include "agent/spans/span.h"
#include "agent/traces/stored_span.h"

namespace threadline {

struct TraceStoreOptions {
  size_t max_traces = 2000;
  size_t max_bytes = 8u << 20;
  uint64_t quiet_ns = 1'000'000'000;     // since the trace's last span, no root seen
  uint64_t root_quiet_ns = 200'000'000;  // since the trace's last span, once its root arrived
};

struct TraceIdHash {
  size_t operator()(const TraceId& id) const;
};

// A completed trace: immutable once published (readers share it without locks).
struct CompletedTrace {
  TraceId trace_id;
  std::vector<StoredSpan> spans;  // in arrival order
  uint64_t seq = 0;               // publication order; a merged trace gets a new one
  uint64_t start_unix_ns = 0;     // earliest span start
  uint64_t end_unix_ns = 0;       // latest span end
  size_t root = 0;                // index of the entry span: see TraceStore::PickRoot
  size_t error_spans = 0;
  bool sampled = false;           // some span went to the output
  bool truncated = false;         // spans were dropped (per-trace bound)
  uint32_t parts = 1;             // >1: late spans were merged in
  size_t bytes = 0;               // what the byte bound counts

  uint64_t duration_ns() const { return end_unix_ns > start_unix_ns ? end_unix_ns - start_unix_ns : 0; }
  const StoredSpan& root_span() const { return spans[root]; }
};

using CompletedTracePtr = std::shared_ptr<const CompletedTrace>;

class TraceStore {
 public:
  using NowFn = std::function<uint64_t()>;  // monotonic ns; tests pass a fake
  static uint64_t SteadyNowNs();
  // Runs on the consumer thread right after a trace (or a merged part) completes. Must be
  // quick: it delays the span pipeline.
  using CompletionHook = std::function<void(const CompletedTracePtr&)>;

  explicit TraceStore(TraceStoreOptions options = {}, MetricsRegistry& metrics = MetricsRegistry::Global(),
                      NowFn now = &TraceStore::SteadyNowNs);
  ~TraceStore();
  TraceStore(const TraceStore&) = delete;
  TraceStore& operator=(const TraceStore&) = delete;

  // ---- consumer thread ----
  void AddHook(CompletionHook hook) { hooks_.push_back(std::move(hook)); }
  void Add(const Span& span);
  void Add(const TraceId& trace_id, StoredSpan span);
  // Completes the traces whose quiet time has passed, publishes, updates the gauges. Never
  // waits for a reader (see above).
  void Tick();
  // Completes and publishes everything open (shutdown; files read by `threadline view`).
  void CompleteAll();

  // ---- any thread ----
  struct Snapshot {
    std::vector<CompletedTracePtr> traces;  // oldest first
    uint64_t generation = 0;                // changes whenever the set of traces changes
  };
  Snapshot Take() const;
  CompletedTracePtr Find(const TraceId& id) const;
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  const TraceStoreOptions& options() const { return options_; }

  // The entry span: among spans whose parent is not in the trace, the earliest to start
  // (ties: the longest). Exposed for the views, which build trees from the same rule.
  static size_t PickRoot(const std::vector<StoredSpan>& spans);

 private:
  // One entry per trace id the store knows: open (receiving spans), or completed (then it only
  // remembers the published trace, for late spans to merge into, until it is evicted). One
  // map for both saves an allocation and a hash insert per trace.
  struct OpenTrace {
    TraceId trace_id;
    bool open = false;
    CompletedTracePtr completed;  // the published trace of this id, if any
    // While open: the object this part will be published as, its spans filled in arrival
    // order (one allocation per trace for both, none when it is a recycled one).
    std::shared_ptr<CompletedTrace> building;
    uint64_t last_arrival_ns = 0;
    size_t bytes = 0;
    bool has_root = false;
    bool truncated = false;
    // Intrusive list of open traces by last arrival, one list per has_root (map nodes are
    // stable, so the links can point into the map).
    OpenTrace* prev = nullptr;
    OpenTrace* next = nullptr;
  };
  struct List {
    OpenTrace* head = nullptr;  // least recently active
    OpenTrace* tail = nullptr;
  };
  enum class Why { kQuiet, kBounds, kFlush };

  void Unlink(OpenTrace* t);
  void PushBack(OpenTrace* t);
  void Complete(OpenTrace* t, Why why);
  void EnforceOpenBounds();
  // Moves pending_ into the published deque; `wait`: take the lock even if a reader holds it.
  void Publish(bool wait);
  void PublishGauges();
  // A trace object to fill: a recycled one (cleared, its span vector's capacity kept) or new.
  std::shared_ptr<CompletedTrace> NewTrace();
  // The open entry of `trace_id` (opened, or taken out of its arrival list) for a span arriving.
  OpenTrace& Arrive(const TraceId& trace_id);
  // After a span was placed at the back of t's spans: counts it, or takes it out again when it
  // would pass the per-trace bound; then the arrival time, the list and the bounds.
  void Settle(OpenTrace& t);
  // Takes back a trace the store no longer holds, when nobody else does (see Recycle in the
  // source): its object and its spans are reused for the next traces.
  void Recycle(CompletedTracePtr trace);

  TraceStoreOptions options_;
  NowFn now_;
  std::vector<CompletionHook> hooks_;

  // Consumer side, no lock.
  NodeRecycler open_nodes_;  // before open_: outlives it
  std::unordered_map<TraceId, OpenTrace, TraceIdHash, std::equal_to<TraceId>,
                     RecyclingAllocator<std::pair<const TraceId, OpenTrace>>>
      open_;  // open and completed entries
  size_t open_count_ = 0;
  List rooted_;    // open traces whose root arrived
  List rootless_;  // the others
  size_t open_bytes_ = 0;
  size_t open_spans_ = 0;
  struct Pending {
    CompletedTracePtr trace;
    uint64_t replaces_seq = 0;  // a merged trace replaces this one
  };
  std::vector<Pending> pending_;  // completed, not published yet
  uint64_t next_seq_ = 1;
  std::vector<uint64_t> id_scratch_;
  // Evicted traces and their spans kept for reuse (bounded; consumer thread only). In steady
  // state a trace evicted for every one completed, so storing a span allocates nothing.
  // Bounded by bytes (an eighth of max_bytes: a Tick's worth of evictions at 1000 spans per
  // Tick), not counted in the store's bytes: it is the allocator's memory, not traces.
  static constexpr size_t kSpareSpanMaxBytes = 2048;  // bigger spans are freed, not kept
  static constexpr size_t kSpareTraceMaxSpans = 8;    // traces with more room are freed
  std::vector<std::shared_ptr<CompletedTrace>> spare_traces_;
  std::vector<StoredSpan> spare_spans_;
  size_t spare_bytes_ = 0;

  // Readers' side, under mu_. completed_[i] has seq == first_seq_ + i; a slot is null once
  // its trace was replaced by a merged one.
  mutable std::mutex mu_;
  std::deque<CompletedTracePtr> completed_;
  uint64_t first_seq_ = 1;
  size_t completed_count_ = 0;
  size_t completed_bytes_ = 0;
  size_t completed_spans_ = 0;
  std::atomic<uint64_t> generation_{0};

  Counter& spans_added_;
  Counter& spans_late_;
  Counter& spans_dropped_trace_bytes_;
  Counter& completed_quiet_;
  Counter& completed_bounds_;
  Counter& completed_flush_;
  Counter& evicted_traces_;
  Counter& evicted_bytes_;
  Counter& publish_deferred_;
  Gauge& open_traces_gauge_;
  Gauge& open_bytes_gauge_;
  Gauge& completed_traces_gauge_;
  Gauge& completed_bytes_gauge_;
  Gauge& completed_spans_gauge_;
  Gauge& open_spans_gauge_;
  Gauge& spare_bytes_gauge_;  // evicted traces' memory kept for reuse (<= max_bytes / 8)
};

// The tee in the span pipeline: every span goes to the store and on to `next` unchanged.
class TraceStoreSink : public SpanSink {
 public:
  TraceStoreSink(TraceStore& store, SpanSink& next) : store_(store), next_(next) {}
  void OnSpan(Span&& span) override {
    store_.Add(span);
    next_.OnSpan(std::move(span));
  }
  void Flush() override { next_.Flush(); }

 private:
  TraceStore& store_;
  SpanSink& next_;
};

}  // namespace threadline
