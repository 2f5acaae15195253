// BatchSpanExporter: the OpenTelemetry batch span processor's behaviour in front of an OTLP
// transport. OnSpan() encodes the span (OTLP protobuf, AppendOtlpSpan) into a bounded
// in-memory queue; one worker thread takes batches off it, writes each into a request around
// the spans' bytes (AppendOtlpRequest) and sends it, with retries, so the kernel-event consumer
// thread that calls OnSpan() never waits on the network.
//
// Queue full: the NEWEST span (the one being offered) is dropped and counted, as the OTel SDK
// batch processors do. Why not evict the oldest instead:
//   - the queued spans are older parts of traces whose other spans (often their children or
//     parents) have already been exported; keeping them completes those traces, while the
//     newest spans belong to requests that just ended and are the cheapest to lose;
//   - rejecting at the door is O(1) and touches nothing the worker is reading, so the producer
//     never contends with a batch being taken;
//   - it means the same as the SDKs' dropped-span counts, so users compare like with like.
// Memory is bounded by max_queue_size spans queued plus one batch in flight (as bytes: ~0.6 KB
// per HTTP span).
//
// Export of a batch: each attempt gets request_timeout (never past the batch's budget); a
// retryable failure waits (RetrySchedule: exponential backoff, full jitter, server delay
// honoured) and tries again until export_timeout has passed since the batch's first attempt;
// then the batch is dropped (reason="retries_exhausted"). A permanent failure drops it at once
// (reason="export_failed").
//
// Metrics (in the given MetricsRegistry):
//   threadline_spans_exported_total                        spans the receiver accepted
//   threadline_spans_dropped_total{reason=queue_full|export_failed|retries_exhausted|shutdown}
//   threadline_export_requests_total{result=success|retryable_error|permanent_error}
//   threadline_export_queue_depth                          spans waiting (gauge)
//   threadline_export_queue_limit                          max_queue_size (gauge)
//   threadline_export_latency_seconds                      per request attempt (histogram)
//   threadline_export_partial_success_rejected_spans_total spans a receiver refused in an
//                                                          accepted request (not retried)
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/common/result.h"
#include "agent/spans/span.h"
#include "exporter/otlp_transport.h"
#include "exporter/byte_writer.h"
#include "exporter/otlp_protobuf.h"
#include "exporter/retry_policy.h"

namespace threadline {

struct BatchExporterOptions {
  size_t max_queue_size = 2048;                         // OTEL_BSP_MAX_QUEUE_SIZE
  std::chrono::milliseconds schedule_delay{5000};       // OTEL_BSP_SCHEDULE_DELAY
  size_t max_export_batch_size = 512;                   // OTEL_BSP_MAX_EXPORT_BATCH_SIZE
  // OTEL_BSP_EXPORT_TIMEOUT: per batch, all attempts and waits included. 300 s by default,
  // not the spec's 30 s: a collector restart or a short outage must lose nothing that fits in
  // the queue; meanwhile new spans queue up and only past max_queue_size are dropped (counted).
  std::chrono::milliseconds export_timeout{300000};
  std::chrono::milliseconds request_timeout{10000};     // OTEL_EXPORTER_OTLP_TIMEOUT: per attempt
  RetryPolicy retry;
  // Log one line for the first partial success and then one per this many.
  uint64_t partial_success_log_every = 100;
};

class BatchSpanExporter : public SpanSink {
 public:
  // Starts the worker thread. Fails on inconsistent options (zero sizes, batch > queue).
  static Result<std::unique_ptr<BatchSpanExporter>> Create(
      const BatchExporterOptions& options, std::unique_ptr<OtlpTransport> transport,
      MetricsRegistry& metrics = MetricsRegistry::Global(),
      RetrySchedule::Uniform01 uniform01 = RandomUniform01());

  // Shutdown(now + 5 s) if not shut down yet.
  ~BatchSpanExporter() override;
  BatchSpanExporter(const BatchSpanExporter&) = delete;
  BatchSpanExporter& operator=(const BatchSpanExporter&) = delete;

  // Never blocks on the network: encodes the span under a mutex into the queue (the worker
  // holds it only to take a batch). Drops (counted), without encoding, when the queue is full
  // or after Shutdown().
  void OnSpan(Span&& span) override;
  // Asks the worker to send what is queued now instead of at the next schedule tick. Does not
  // wait (it is called on the consumer thread).
  void Flush() override;

  struct ShutdownReport {
    uint64_t exported = 0;  // spans accepted over the exporter's life
    uint64_t dropped = 0;   // spans dropped over the exporter's life, all reasons
    uint64_t dropped_at_shutdown = 0;
  };
  // Sends what is queued, retrying as usual but never past `deadline`; then stops the worker.
  // What could not be sent by then is dropped (reason="shutdown"). Idempotent: later calls
  // return the same report.
  ShutdownReport Shutdown(std::chrono::steady_clock::time_point deadline);

  size_t queue_depth() const;
  const BatchExporterOptions& options() const { return options_; }

  // Only Create() can make one (it validates the options first).
  class PassKey {
    friend class BatchSpanExporter;
    PassKey() = default;
  };
  BatchSpanExporter(PassKey, const BatchExporterOptions& options,
                    std::unique_ptr<OtlpTransport> transport, MetricsRegistry& metrics,
                    RetrySchedule::Uniform01 uniform01);

 private:

  // Spans encoded for one request (at most max_export_batch_size): their framed bytes
  // (AppendOtlpSpan) back to back, and where each one is with its resource.
  struct Chunk {
    ByteBuffer bytes;
    std::vector<EncodedSpan> spans;
  };

  void Run();
  // Exports one chunk (retrying); returns when it is delivered or dropped.
  void ExportBatch(const Chunk& batch);
  // An accepted request's partial_success: `rejected` spans (at most the batch's) and why.
  void RecordPartialSuccess(uint64_t rejected, const std::string& message);
  // Waits until `until` or until a shutdown deadline earlier than it; returns false if the
  // shutdown deadline has passed (the caller must give up).
  bool WaitForRetry(std::chrono::steady_clock::time_point until);
  uint64_t DroppedTotal() const;

  const BatchExporterOptions options_;
  std::unique_ptr<OtlpTransport> transport_;
  RetrySchedule::Uniform01 uniform01_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  // Spans waiting, oldest first, already encoded: OnSpan() encodes each span on the producer's
  // thread while it is still in cache (on the worker, a batch later, the same encoding cost
  // about twice its instructions' worth), gives its buffers back at once (SpanBuffers, on the
  // thread that allocates them) and appends its bytes to the last chunk. Only the last chunk
  // is ever short; the worker takes the first one whole.
  std::deque<std::unique_ptr<Chunk>> chunks_;
  size_t queued_ = 0;  // spans in chunks_
  // Sent chunks, for OnSpan to reuse, with their bytes' storage (so neither side allocates in
  // steady state; at most max_queue_size / max_export_batch_size + 2 chunks exist, ~0.35 MB each
  // for HTTP spans in batches of 512). Their `spans` still hold resource references, which the
  // producers drop (OnSpan when it takes one, Flush).
  std::vector<std::unique_ptr<Chunk>> free_chunks_;
  bool flush_requested_ = false;
  bool stopping_ = false;        // Shutdown() called: OnSpan() drops, the worker drains and stops
  std::chrono::steady_clock::time_point shutdown_deadline_ = std::chrono::steady_clock::time_point::max();
  bool worker_done_ = false;
  std::condition_variable worker_done_cv_;
  bool shut_down_ = false;
  ShutdownReport report_;
  std::mutex shutdown_mu_;       // serialises Shutdown() callers

  // Worker thread only.
  ByteBuffer request_;  // the batch being sent, serialized; reused, so it stops allocating
  uint64_t partial_successes_ = 0;
  uint64_t failed_attempts_in_a_row_ = 0;  // to log the start and the end of an outage once

  Counter& exported_;
  Counter& dropped_queue_full_;
  Counter& dropped_export_failed_;
  Counter& dropped_retries_exhausted_;
  Counter& dropped_shutdown_;
  Counter& requests_success_;
  Counter& requests_retryable_;
  Counter& requests_permanent_;
  Counter& partial_rejected_;
  Gauge& queue_depth_;
  Histogram& latency_;

  std::thread worker_;  // last: started after everything above exists
};

}  // namespace threadline
