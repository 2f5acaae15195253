#include "exporter/batch_exporter.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstddef>
#include <iterator>

#include "agent/spans/span_buffers.h"

namespace threadline {

namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr char kDropped[] = "threadline_spans_dropped_total";
constexpr char kDroppedHelp[] = "Spans dropped before export, by reason.";
constexpr char kRequests[] = "threadline_export_requests_total";
constexpr char kRequestsHelp[] = "OTLP export requests (attempts), by result.";

}  // namespace

Result<std::unique_ptr<BatchSpanExporter>> BatchSpanExporter::Create(
    const BatchExporterOptions& options, std::unique_ptr<OtlpTransport> transport,
    MetricsRegistry& metrics, RetrySchedule::Uniform01 uniform01) {
  if (transport == nullptr) return Error{"batch exporter: no transport"};
  if (options.max_queue_size == 0) return Error{"batch exporter: max_queue_size must be > 0"};
  if (options.max_export_batch_size == 0) return Error{"batch exporter: max_export_batch_size must be > 0"};
  if (options.max_export_batch_size > options.max_queue_size) {
    return Error{"batch exporter: max_export_batch_size (" + std::to_string(options.max_export_batch_size) +
                 ") exceeds max_queue_size (" + std::to_string(options.max_queue_size) + ")"};
  }
  if (options.schedule_delay.count() <= 0 || options.export_timeout.count() <= 0 ||
      options.request_timeout.count() <= 0) {
    return Error{"batch exporter: schedule_delay, export_timeout and request_timeout must be > 0"};
  }
  return std::make_unique<BatchSpanExporter>(PassKey(), options, std::move(transport), metrics,
                                             std::move(uniform01));
}

BatchSpanExporter::BatchSpanExporter(PassKey, const BatchExporterOptions& options,
                                     std::unique_ptr<OtlpTransport> transport,
                                     MetricsRegistry& metrics, RetrySchedule::Uniform01 uniform01)
    : options_(options),
      transport_(std::move(transport)),
      uniform01_(std::move(uniform01)),
      exported_(metrics.GetCounter("threadline_spans_exported_total", {},
                                   "Spans the OTLP receiver accepted.")),
      dropped_queue_full_(metrics.GetCounter(kDropped, {{"reason", "queue_full"}}, kDroppedHelp)),
      dropped_export_failed_(metrics.GetCounter(kDropped, {{"reason", "export_failed"}}, kDroppedHelp)),
      dropped_retries_exhausted_(metrics.GetCounter(kDropped, {{"reason", "retries_exhausted"}}, kDroppedHelp)),
      dropped_shutdown_(metrics.GetCounter(kDropped, {{"reason", "shutdown"}}, kDroppedHelp)),
      requests_success_(metrics.GetCounter(kRequests, {{"result", "success"}}, kRequestsHelp)),
      requests_retryable_(metrics.GetCounter(kRequests, {{"result", "retryable_error"}}, kRequestsHelp)),
      requests_permanent_(metrics.GetCounter(kRequests, {{"result", "permanent_error"}}, kRequestsHelp)),
      partial_rejected_(metrics.GetCounter("threadline_export_partial_success_rejected_spans_total", {},
                                           "Spans an OTLP receiver rejected in an accepted request.")),
      queue_depth_(metrics.GetGauge("threadline_export_queue_depth", {}, "Spans waiting for export.")),
      latency_(metrics.GetHistogram("threadline_export_latency_seconds", {}, DefaultLatencyBuckets(),
                                    "Duration of OTLP export requests (each attempt).")) {
  metrics.GetGauge("threadline_export_queue_limit", {}, "Spans the export queue holds at most (OTEL_BSP_MAX_QUEUE_SIZE).")
      .Set(static_cast<int64_t>(options_.max_queue_size));
  spdlog::info("OTLP export: {}; queue {} spans, batches of {} every {} ms, {} ms per request, "
               "{} ms per batch including retries",
               transport_->Describe(), options_.max_queue_size, options_.max_export_batch_size,
               options_.schedule_delay.count(), options_.request_timeout.count(),
               options_.export_timeout.count());
  worker_ = std::thread([this] { Run(); });
}

BatchSpanExporter::~BatchSpanExporter() {
  Shutdown(SteadyClock::now() + std::chrono::seconds(5));
}

void BatchSpanExporter::OnSpan(Span&& span) {
  std::unique_lock lock(mu_);
  if (stopping_) {
    lock.unlock();
    dropped_shutdown_.Add();
    return;
  }
  if (queued_ >= options_.max_queue_size) {
    lock.unlock();
    dropped_queue_full_.Add();
    return;
  }
  if (chunks_.empty() || chunks_.back()->spans.size() >= options_.max_export_batch_size) {
    if (free_chunks_.empty()) {
      chunks_.push_back(std::make_unique<Chunk>());
      chunks_.back()->spans.reserve(options_.max_export_batch_size);
    } else {
      chunks_.push_back(std::move(free_chunks_.back()));
      free_chunks_.pop_back();
      chunks_.back()->spans.clear();  // the spent batch's resource references, dropped here
    }
  }
  // Encoded under mu_: the worker takes it only to take a chunk, and the span is in this
  // thread's cache now (~1 us; a worker that finds mu_ taken waits that long at most).
  Chunk& chunk = *chunks_.back();
  const size_t offset = chunk.bytes.size();
  const size_t size = AppendOtlpSpan(span, chunk.bytes);
  chunk.spans.push_back(EncodedSpan{.resource = std::move(span.resource),
                                    .offset = static_cast<uint32_t>(offset),
                                    .size = static_cast<uint32_t>(size)});
  const size_t depth = ++queued_;
  queue_depth_.Set(static_cast<int64_t>(depth));
  lock.unlock();
  if (depth == options_.max_export_batch_size) wake_.notify_one();
  // The span's strings and vectors go back to this thread's pool for the spans it builds next
  // (span_buffers.h); the rest is freed here, on the thread that allocated it.
  SpanBuffers::Local().Give(span);
}

void BatchSpanExporter::Flush() {
  {
    std::lock_guard lock(mu_);
    flush_requested_ = true;
    for (auto& chunk : free_chunks_) chunk->spans.clear();  // as OnSpan does when it takes one
  }
  wake_.notify_one();
}

size_t BatchSpanExporter::queue_depth() const {
  std::lock_guard lock(mu_);
  return queued_;
}

uint64_t BatchSpanExporter::DroppedTotal() const {
  return dropped_queue_full_.Value() + dropped_export_failed_.Value() +
         dropped_retries_exhausted_.Value() + dropped_shutdown_.Value();
}

void BatchSpanExporter::Run() {
  SteadyClock::time_point next_tick = SteadyClock::now() + options_.schedule_delay;
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait_until(lock, next_tick, [&] {
      return stopping_ || flush_requested_ || queued_ >= options_.max_export_batch_size;
    });
    const SteadyClock::time_point now = SteadyClock::now();
    if (stopping_ && now >= shutdown_deadline_) break;
    if (queued_ == 0) {
      flush_requested_ = false;
      if (stopping_) break;
      if (now >= next_tick) next_tick = now + options_.schedule_delay;
      continue;
    }
    const bool due = stopping_ || flush_requested_ || now >= next_tick ||
                     queued_ >= options_.max_export_batch_size;
    if (!due) continue;  // woken early for nothing

    // The first chunk: full (max_export_batch_size spans) unless it is the only one.
    std::unique_ptr<Chunk> batch = std::move(chunks_.front());
    chunks_.pop_front();
    queued_ -= batch->spans.size();
    queue_depth_.Set(static_cast<int64_t>(queued_));
    lock.unlock();
    ExportBatch(*batch);
    // Back to the producers with its resource references: they drop them (OnSpan, Flush), on
    // the thread that took them. Chunks are only ever made when none is free, so there are at
    // most max_queue_size / max_export_batch_size + 2 of them, and each keeps its bytes'
    // storage: a chunk that grows again from nothing pays its reallocations and fresh pages
    // (kept to two, the rest stripped, the encoding cost about twice as much per span on the
    // consumer thread in a live run).
    batch->bytes.clear();
    lock.lock();
    free_chunks_.push_back(std::move(batch));
    next_tick = SteadyClock::now() + options_.schedule_delay;
  }
  // Shutdown deadline passed (or nothing left): whatever is still queued will not be sent.
  if (queued_ > 0) {
    dropped_shutdown_.Add(queued_);
    queued_ = 0;
    queue_depth_.Set(0);
  }
  chunks_.clear();
  worker_done_ = true;
  worker_done_cv_.notify_all();
}

bool BatchSpanExporter::WaitForRetry(SteadyClock::time_point until) {
  std::unique_lock lock(mu_);
  for (;;) {
    // The retry would come after the shutdown deadline: no point waiting for it.
    if (stopping_ && shutdown_deadline_ <= until) return false;
    if (SteadyClock::now() >= until) return true;
    wake_.wait_until(lock, until);
  }
}

void BatchSpanExporter::RecordPartialSuccess(uint64_t rejected, const std::string& message) {
  if (rejected == 0 && message.empty()) return;
  partial_rejected_.Add(rejected);
  if (partial_successes_++ % std::max<uint64_t>(options_.partial_success_log_every, 1) == 0) {
    spdlog::warn("OTLP receiver accepted a request only in part: {} spans rejected: \"{}\" "
                 "(logged once per {}; total rejected: {})",
                 rejected, message, options_.partial_success_log_every, partial_rejected_.Value());
  }
}

void BatchSpanExporter::ExportBatch(const Chunk& batch) {
  const uint64_t n = batch.spans.size();
  request_.clear();
  AppendOtlpRequest(batch.bytes.view(), batch.spans, request_);

  RetrySchedule schedule(options_.retry, SteadyClock::now() + options_.export_timeout, uniform01_);
  for (;;) {
    SteadyClock::time_point limit = schedule.give_up_at();
    {
      std::lock_guard lock(mu_);
      if (stopping_) limit = std::min(limit, shutdown_deadline_);
    }
    const SteadyClock::time_point start = SteadyClock::now();
    if (start >= limit) {
      // Only a shutdown deadline can be behind us here (the schedule gives up before).
      dropped_shutdown_.Add(n);
      return;
    }
    const ExportResult r = transport_->Send(request_.view(), std::min(start + options_.request_timeout, limit));
    const SteadyClock::time_point end = SteadyClock::now();
    latency_.Observe(std::chrono::duration<double>(end - start).count());

    if (r.ok) {
      requests_success_.Add();
      const uint64_t rejected = std::min<uint64_t>(static_cast<uint64_t>(std::max<int64_t>(r.rejected_spans, 0)), n);
      exported_.Add(n - rejected);
      RecordPartialSuccess(rejected, r.message);
      if (failed_attempts_in_a_row_ > 0) {
        spdlog::info("OTLP export to {} works again after {} failed attempts", transport_->Describe(),
                     failed_attempts_in_a_row_);
        failed_attempts_in_a_row_ = 0;
      }
      return;
    }

    if (failed_attempts_in_a_row_++ == 0) {
      spdlog::warn("OTLP export to {} failed ({}): {}", transport_->Describe(),
                   r.retryable ? "will retry" : "not retryable", r.message);
    }
    bool shutting_down;
    SteadyClock::time_point shutdown_deadline;
    {
      std::lock_guard lock(mu_);
      shutting_down = stopping_;
      shutdown_deadline = shutdown_deadline_;
    }
    if (!r.retryable) {
      requests_permanent_.Add();
      dropped_export_failed_.Add(n);
      return;
    }
    requests_retryable_.Add();
    if (shutting_down && end >= shutdown_deadline) {
      dropped_shutdown_.Add(n);
      return;
    }
    const std::optional<SteadyClock::time_point> next = schedule.Next(end, r.retry_after);
    if (!next.has_value()) {
      dropped_retries_exhausted_.Add(n);
      spdlog::warn("OTLP export: dropped a batch of {} spans after {} attempts: another would not "
                   "fit the batch's {} ms budget; last error: {}",
                   n, schedule.retries(), options_.export_timeout.count(), r.message);
      return;
    }
    if (!WaitForRetry(*next)) {
      dropped_shutdown_.Add(n);
      return;
    }
  }
}

BatchSpanExporter::ShutdownReport BatchSpanExporter::Shutdown(SteadyClock::time_point deadline) {
  std::lock_guard shutdown_lock(shutdown_mu_);
  if (shut_down_) return report_;
  const uint64_t dropped_at_shutdown_before = dropped_shutdown_.Value();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    shutdown_deadline_ = deadline;
  }
  wake_.notify_all();
  {
    std::unique_lock lock(mu_);
    if (!worker_done_cv_.wait_until(lock, deadline, [&] { return worker_done_; })) {
      lock.unlock();
      // A request is still in flight at the deadline: cut it short.
      transport_->Cancel();
    }
  }
  if (worker_.joinable()) worker_.join();
  shut_down_ = true;
  report_.exported = exported_.Value();
  report_.dropped = DroppedTotal();
  report_.dropped_at_shutdown = dropped_shutdown_.Value() - dropped_at_shutdown_before;
  spdlog::info("OTLP export stopped: {} spans exported, {} dropped ({} at shutdown)", report_.exported,
               report_.dropped, report_.dropped_at_shutdown);
  return report_;
}

}  // namespace threadline
