#include "agent/traces/trace_store.h"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace threadline {

namespace {

// What a trace costs beside its spans: the open entry (map node, list links) or the completed
// object, its shared_ptr control block and its slot.
constexpr size_t kTraceOverheadBytes = 192;

uint64_t IdKey(const SpanId& id) {
  uint64_t k;
  std::memcpy(&k, id.bytes.data(), sizeof(k));
  return k;
}

}  // namespace

size_t TraceIdHash::operator()(const TraceId& id) const {
  // Trace ids are random (W3C asks for it, and ours are): any 8 of the bytes hash well.
  uint64_t a, b;
  std::memcpy(&a, id.bytes.data(), 8);
  std::memcpy(&b, id.bytes.data() + 8, 8);
  return static_cast<size_t>(a ^ (b * 0x9e3779b97f4a7c15ull));
}

uint64_t TraceStore::SteadyNowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

TraceStore::TraceStore(TraceStoreOptions options, MetricsRegistry& metrics, NowFn now)
    : options_(options),
      now_(std::move(now)),
      open_(0, TraceIdHash{}, std::equal_to<TraceId>{},
            RecyclingAllocator<std::pair<const TraceId, OpenTrace>>(&open_nodes_)),
      spans_added_(metrics.GetCounter("threadline_trace_store_spans_total", {},
                                      "Spans added to the trace store (every span built, sampled or not)")),
      spans_late_(metrics.GetCounter("threadline_trace_store_late_spans_total", {},
                                     "Spans that arrived after their trace completed (merged into it)")),
      spans_dropped_trace_bytes_(metrics.GetCounter(
          "threadline_trace_store_spans_dropped_total", {{"reason", "trace_too_large"}},
          "Spans not kept by the trace store, by reason (the output still gets them)")),
      completed_quiet_(metrics.GetCounter("threadline_trace_store_traces_completed_total", {{"reason", "quiet"}},
                                          "Traces completed, by reason: quiet (no span for the quiet interval), "
                                          "bounds (early, the store was full), flush (shutdown)")),
      completed_bounds_(metrics.GetCounter("threadline_trace_store_traces_completed_total", {{"reason", "bounds"}})),
      completed_flush_(metrics.GetCounter("threadline_trace_store_traces_completed_total", {{"reason", "flush"}})),
      evicted_traces_(metrics.GetCounter("threadline_trace_store_traces_evicted_total", {},
                                         "Completed traces evicted (oldest first) to stay within the bounds")),
      evicted_bytes_(metrics.GetCounter("threadline_trace_store_evicted_bytes_total", {},
                                        "Bytes of the evicted traces")),
      publish_deferred_(metrics.GetCounter("threadline_trace_store_publish_deferred_total", {},
                                           "Times the consumer found a reader holding the store and "
                                           "published completed traces one tick later instead of waiting")),
      open_traces_gauge_(metrics.GetGauge("threadline_trace_store_traces", {{"state", "open"}},
                                          "Traces held, open (still receiving spans) or complete")),
      open_bytes_gauge_(metrics.GetGauge("threadline_trace_store_bytes", {{"state", "open"}},
                                         "Bytes held by the trace store (what its byte bound counts)")),
      completed_traces_gauge_(metrics.GetGauge("threadline_trace_store_traces", {{"state", "complete"}})),
      completed_bytes_gauge_(metrics.GetGauge("threadline_trace_store_bytes", {{"state", "complete"}})),
      completed_spans_gauge_(metrics.GetGauge("threadline_trace_store_spans", {{"state", "complete"}},
                                              "Spans held by the trace store, in open or complete traces")),
      open_spans_gauge_(metrics.GetGauge("threadline_trace_store_spans", {{"state", "open"}})),
      // Outside the byte bound: memory of evicted traces kept to build the next ones (Recycle).
      spare_bytes_gauge_(metrics.GetGauge("threadline_trace_store_bytes", {{"state", "spare"}})) {
  if (options_.max_traces == 0) options_.max_traces = 1;
}

TraceStore::~TraceStore() = default;

void TraceStore::Unlink(OpenTrace* t) {
  List& l = t->has_root ? rooted_ : rootless_;
  (t->prev ? t->prev->next : l.head) = t->next;
  (t->next ? t->next->prev : l.tail) = t->prev;
  t->prev = t->next = nullptr;
}

void TraceStore::PushBack(OpenTrace* t) {
  List& l = t->has_root ? rooted_ : rootless_;
  t->prev = l.tail;
  t->next = nullptr;
  (l.tail ? l.tail->next : l.head) = t;
  l.tail = t;
}

void TraceStore::Add(const Span& span) {
  // The stored form is made in its place at the back of the trace's span vector, from a spare
  // span's buffers when there is one: no StoredSpan is moved on the way (three moves and a
  // second MemoryBytes before, ~200 instructions per span).
  OpenTrace& t = Arrive(span.trace_id);
  std::vector<StoredSpan>& spans = t.building->spans;
  if (spare_spans_.empty()) {
    spans.emplace_back();
  } else {
    spare_bytes_ -= spare_spans_.back().MemoryBytes();
    spans.push_back(std::move(spare_spans_.back()));
    spare_spans_.pop_back();
  }
  spans.back().Assign(span);
  Settle(t);
}

std::shared_ptr<CompletedTrace> TraceStore::NewTrace() {
  if (spare_traces_.empty()) return std::make_shared<CompletedTrace>();
  std::shared_ptr<CompletedTrace> t = std::move(spare_traces_.back());
  spare_traces_.pop_back();
  spare_bytes_ -= sizeof(CompletedTrace) + t->spans.capacity() * sizeof(StoredSpan);
  return t;
}

void TraceStore::Recycle(CompletedTracePtr trace) {
  // Only when the store holds the last reference. The store lists it nowhere any more, so
  // nobody can copy it from now on; a reader (Take, Find) or a completion hook still holding
  // it frees it when done. The acquire fence pairs with the release in the last other holder's
  // reference drop: its reads happen before this thread reuses the memory.
  if (trace == nullptr || trace.use_count() != 1) return;
  std::atomic_thread_fence(std::memory_order_acquire);
  // The store made it (NewTrace) as a mutable object; readers only ever saw it const.
  auto t = std::const_pointer_cast<CompletedTrace>(std::move(trace));
  const size_t budget = options_.max_bytes / 8;
  for (StoredSpan& s : t->spans) {
    const size_t bytes = s.MemoryBytes();
    if (bytes > kSpareSpanMaxBytes || spare_bytes_ + bytes > budget) continue;
    s.resource = nullptr;  // the process's resource is the cache's to free
    spare_bytes_ += bytes;
    spare_spans_.push_back(std::move(s));
  }
  const size_t bytes = sizeof(CompletedTrace) + t->spans.capacity() * sizeof(StoredSpan);
  if (t->spans.capacity() > kSpareTraceMaxSpans || spare_bytes_ + bytes > budget) return;
  std::vector<StoredSpan> spans = std::move(t->spans);
  spans.clear();
  *t = CompletedTrace{};
  t->spans = std::move(spans);  // keeps its capacity
  spare_bytes_ += bytes;
  spare_traces_.push_back(std::move(t));
}

void TraceStore::Add(const TraceId& trace_id, StoredSpan span) {
  OpenTrace& t = Arrive(trace_id);
  t.building->spans.push_back(std::move(span));
  Settle(t);
}

TraceStore::OpenTrace& TraceStore::Arrive(const TraceId& trace_id) {
  spans_added_.Add(1);
  auto [it, inserted] = open_.try_emplace(trace_id);
  OpenTrace& t = it->second;
  if (inserted || !t.open) {  // a new trace, or a late part of a completed one
    t.trace_id = trace_id;
    t.open = true;
    t.has_root = false;
    t.truncated = false;
    t.bytes = kTraceOverheadBytes;
    t.building = NewTrace();
    open_bytes_ += kTraceOverheadBytes;
    ++open_count_;
  } else {
    Unlink(&t);
  }
  return t;
}

void TraceStore::Settle(OpenTrace& t) {
  std::vector<StoredSpan>& spans = t.building->spans;
  const StoredSpan& span = spans.back();
  const size_t bytes = span.MemoryBytes();
  if (t.bytes + bytes > options_.max_bytes / 4) {
    spans_dropped_trace_bytes_.Add(1);
    t.truncated = true;
    spans.pop_back();
  } else {
    if (!span.parent_span_id.valid()) t.has_root = true;
    t.bytes += bytes;
    open_bytes_ += bytes;
    ++open_spans_;
  }
  t.last_arrival_ns = now_();
  PushBack(&t);
  EnforceOpenBounds();
}

void TraceStore::EnforceOpenBounds() {
  while (open_count_ > options_.max_traces || open_bytes_ > options_.max_bytes / 2) {
    OpenTrace* oldest = rooted_.head;
    if (oldest == nullptr || (rootless_.head && rootless_.head->last_arrival_ns < oldest->last_arrival_ns))
      oldest = rootless_.head;
    if (oldest == nullptr) return;
    Complete(oldest, Why::kBounds);
  }
}

size_t TraceStore::PickRoot(const std::vector<StoredSpan>& spans) {
  // Nothing to choose from (most local traces are one span: a request that called nothing).
  if (spans.size() <= 1) return 0;
  // Most traces are a handful of spans: a scan beats sorting an index (and allocates nothing).
  constexpr size_t kScanBelow = 16;
  std::vector<uint64_t> ids;
  if (spans.size() >= kScanBelow) {
    ids.reserve(spans.size());
    for (const auto& s : spans) ids.push_back(IdKey(s.span_id));
    std::sort(ids.begin(), ids.end());
  }
  auto in_trace = [&](const SpanId& id) {
    if (spans.size() >= kScanBelow) return std::binary_search(ids.begin(), ids.end(), IdKey(id));
    return std::any_of(spans.begin(), spans.end(), [&](const StoredSpan& s) { return s.span_id == id; });
  };
  size_t best = spans.size();
  for (size_t i = 0; i < spans.size(); ++i) {
    const StoredSpan& s = spans[i];
    const bool top = !s.parent_span_id.valid() || !in_trace(s.parent_span_id) || s.parent_span_id == s.span_id;
    if (!top) continue;
    if (best == spans.size() || s.start_unix_ns < spans[best].start_unix_ns ||
        (s.start_unix_ns == spans[best].start_unix_ns && s.end_unix_ns > spans[best].end_unix_ns))
      best = i;
  }
  // Every span has a parent in the trace: a cycle (only garbled input does that). The earliest.
  if (best == spans.size()) {
    best = 0;
    for (size_t i = 1; i < spans.size(); ++i)
      if (spans[i].start_unix_ns < spans[best].start_unix_ns) best = i;
  }
  return best;
}

void TraceStore::Complete(OpenTrace* t, Why why) {
  Unlink(t);
  std::shared_ptr<CompletedTrace> done = std::move(t->building);
  done->trace_id = t->trace_id;
  done->truncated = t->truncated;
  done->bytes = t->bytes;
  open_bytes_ -= t->bytes;
  open_spans_ -= done->spans.size();
  --open_count_;
  t->open = false;

  uint64_t replaces = 0;
  if (t->completed != nullptr) {
    // A late part: the merged trace replaces the one completed before.
    const CompletedTrace& old = *t->completed;
    spans_late_.Add(done->spans.size());
    std::vector<StoredSpan> merged;
    merged.reserve(old.spans.size() + done->spans.size());
    merged = old.spans;
    size_t bytes = old.bytes;
    for (auto& s : done->spans) {
      const size_t b = s.MemoryBytes();
      if (bytes + b > options_.max_bytes / 4) {
        spans_dropped_trace_bytes_.Add(1);
        done->truncated = true;
        continue;
      }
      bytes += b;
      merged.push_back(std::move(s));
    }
    done->spans = std::move(merged);
    done->bytes = bytes;
    done->truncated = done->truncated || old.truncated;
    done->parts = old.parts + 1;
    replaces = old.seq;
  }
  if (done->spans.empty() && replaces == 0) {  // every span was over the per-trace bound
    open_.erase(t->trace_id);
    Recycle(std::move(done));
    return;
  }
  done->seq = next_seq_++;
  done->root = PickRoot(done->spans);
  done->start_unix_ns = UINT64_MAX;
  for (const auto& s : done->spans) {
    done->start_unix_ns = std::min(done->start_unix_ns, s.start_unix_ns);
    done->end_unix_ns = std::max(done->end_unix_ns, s.end_unix_ns);
    if (s.status == StatusCode::kError) ++done->error_spans;
    done->sampled = done->sampled || s.sampled;
  }
  if (done->spans.empty()) done->start_unix_ns = 0;
  (why == Why::kQuiet ? completed_quiet_ : why == Why::kBounds ? completed_bounds_ : completed_flush_).Add(1);

  CompletedTracePtr published = std::move(done);
  t->completed = published;
  pending_.push_back({published, replaces});
  for (const auto& hook : hooks_) hook(published);
}

void TraceStore::Tick() {
  const uint64_t now = now_();
  while (rooted_.head && rooted_.head->last_arrival_ns + options_.root_quiet_ns <= now)
    Complete(rooted_.head, Why::kQuiet);
  while (rootless_.head && rootless_.head->last_arrival_ns + options_.quiet_ns <= now)
    Complete(rootless_.head, Why::kQuiet);
  // A reader holding the lock for long (a slow client) must not make pending_ grow forever.
  if (!pending_.empty()) Publish(pending_.size() > options_.max_traces);
  PublishGauges();
}

void TraceStore::CompleteAll() {
  while (rooted_.head) Complete(rooted_.head, Why::kFlush);
  while (rootless_.head) Complete(rootless_.head, Why::kFlush);
  Publish(true);
  PublishGauges();
}

void TraceStore::Publish(bool wait) {
  std::unique_lock lock(mu_, std::defer_lock);
  if (wait) {
    lock.lock();
  } else if (!lock.try_lock()) {
    publish_deferred_.Add(1);
    return;
  }
  std::vector<CompletedTracePtr> evicted;  // freed after the lock is released
  for (auto& p : pending_) {
    if (p.replaces_seq >= first_seq_ && p.replaces_seq - first_seq_ < completed_.size()) {
      CompletedTracePtr& slot = completed_[p.replaces_seq - first_seq_];
      if (slot != nullptr) {
        completed_bytes_ -= slot->bytes;
        completed_spans_ -= slot->spans.size();
        --completed_count_;
        evicted.push_back(std::move(slot));
        slot = nullptr;
      }
    }
    // Slots are numbered by seq; seqs of traces replaced before publication leave null slots.
    while (first_seq_ + completed_.size() < p.trace->seq) completed_.push_back(nullptr);
    completed_bytes_ += p.trace->bytes;
    completed_spans_ += p.trace->spans.size();
    ++completed_count_;
    completed_.push_back(std::move(p.trace));
  }
  pending_.clear();
  while (!completed_.empty() &&
         (completed_count_ > options_.max_traces || completed_bytes_ + open_bytes_ > options_.max_bytes)) {
    CompletedTracePtr oldest = std::move(completed_.front());
    completed_.pop_front();
    ++first_seq_;
    if (oldest == nullptr) continue;
    completed_bytes_ -= oldest->bytes;
    completed_spans_ -= oldest->spans.size();
    --completed_count_;
    evicted_traces_.Add(1);
    evicted_bytes_.Add(oldest->bytes);
    if (auto it = open_.find(oldest->trace_id); it != open_.end() && it->second.completed == oldest) {
      if (it->second.open) {
        it->second.completed = nullptr;  // a late part in progress: nothing left to merge it into
      } else {
        open_.erase(it);
      }
    }
    evicted.push_back(std::move(oldest));
  }
  while (!completed_.empty() && completed_.front() == nullptr) {
    completed_.pop_front();
    ++first_seq_;
  }
  generation_.fetch_add(1, std::memory_order_acq_rel);
  completed_traces_gauge_.Set(static_cast<int64_t>(completed_count_));
  completed_bytes_gauge_.Set(static_cast<int64_t>(completed_bytes_));
  completed_spans_gauge_.Set(static_cast<int64_t>(completed_spans_));
  lock.unlock();
  for (CompletedTracePtr& t : evicted) Recycle(std::move(t));
}

void TraceStore::PublishGauges() {
  open_traces_gauge_.Set(static_cast<int64_t>(open_count_));
  open_bytes_gauge_.Set(static_cast<int64_t>(open_bytes_));
  open_spans_gauge_.Set(static_cast<int64_t>(open_spans_));
  spare_bytes_gauge_.Set(static_cast<int64_t>(spare_bytes_));
}

TraceStore::Snapshot TraceStore::Take() const {
  Snapshot out;
  std::lock_guard lock(mu_);
  out.traces.reserve(completed_count_);
  for (const auto& t : completed_)
    if (t != nullptr) out.traces.push_back(t);
  out.generation = generation_.load(std::memory_order_acquire);
  return out;
}

CompletedTracePtr TraceStore::Find(const TraceId& id) const {
  std::lock_guard lock(mu_);
  for (auto it = completed_.rbegin(); it != completed_.rend(); ++it)
    if (*it != nullptr && (*it)->trace_id == id) return *it;
  return nullptr;
}

}  // namespace threadline
