// Drains the capture ring buffer, decodes each record and hands it to an EventSink, on the
// calling thread. Counts what it received (by type) and what it could not decode.
#pragma once

#include <bpf/libbpf.h>

#include <memory>

#include "agent/common/metrics.h"
#include "agent/common/result.h"
#include "agent/ingest/decoder.h"

namespace threadline {

class RingConsumer {
 public:
  static Result<std::unique_ptr<RingConsumer>> Create(int ring_fd, EventSink& sink,
                                                      MetricsRegistry& metrics);
  ~RingConsumer();
  RingConsumer(const RingConsumer&) = delete;
  RingConsumer& operator=(const RingConsumer&) = delete;

  // Waits up to timeout_ms for a wake-up, then consumes everything available, woken or not:
  // the capture programs commit most events without waking the reader (ring_wakeup_bytes in
  // bpf/capture/maps.bpf.h), so a timeout is the normal way a quiet ring gets read. Returns the
  // number of records consumed, or an error (EINTR is not an error: returns 0).
  Result<int> Poll(int timeout_ms);
  // Consumes whatever is in the ring without waiting (used at shutdown).
  int Drain();

  uint64_t records() const { return records_; }

 private:
  RingConsumer(EventSink& sink, MetricsRegistry& metrics);
  static int OnRecord(void* ctx, void* data, size_t size);

  EventSink& sink_;
  ring_buffer* ring_ = nullptr;
  uint64_t records_ = 0;
  // By enum tl_event_type; 0 (no such type) counts unknown types.
  static constexpr uint32_t kEventTypes = TL_EV_TRACE_CTX + 1;
  Counter* by_type_[kEventTypes] = {};
  Counter* decode_errors_[4] = {};
};

}  // namespace threadline
