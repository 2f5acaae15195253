// Drains the capture ring buffer, decodes each record and hands it to an EventSink, on the
// calling thread. Counts what it received (by type) and what it could not decode.
//
// Why not libbpf's ring_buffer: it maps the data area twice back to back (so a record that
// wraps reads as one piece), and the kernel populates the whole mapping at mmap, so the
// agent's RSS counted the 16 MiB ring as 32 MiB (issue #18, idle RSS). This consumer maps the
// data once and copies the rare record that wraps into a scratch buffer; the protocol (the
// BPF_RINGBUF_* header bits, acquire/release on the positions) is the kernel's, as in
// libbpf's ringbuf.c.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

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
  // At most kMaxRecordsPerPoll records per call: under a load the agent cannot keep up with, the
  // producers keep committing and a call that read until the ring is empty would never return,
  // so the caller's upkeep (span flushes, liveness, the CPU budget that would shed that load)
  // would never run. The rest is read by the next call, which then does not wait.
  Result<int> Poll(int timeout_ms);
  static constexpr uint32_t kMaxRecordsPerPoll = 8192;
  // Consumes whatever is in the ring without waiting (used at shutdown).
  int Drain();

  uint64_t records() const { return records_; }
  // Records that wrapped past the end of the data area (copied to be read in one piece).
  uint64_t wrapped_records() const { return wrapped_records_; }

 private:
  RingConsumer(EventSink& sink, MetricsRegistry& metrics);
  void OnRecord(const uint8_t* data, size_t size);
  // Reads up to `limit` records (0: until the ring is empty).
  int Consume(uint32_t limit);

  EventSink& sink_;
  int epoll_fd_ = -1;
  size_t page_bytes_ = 0;
  size_t data_bytes_ = 0;  // a power of two
  void* consumer_page_ = nullptr;   // read-write: consumer_pos
  void* producer_pages_ = nullptr;  // read-only: producer_pos, then the data area, once
  const uint8_t* data_ = nullptr;
  std::vector<uint8_t> wrapped_;    // a record that wraps past the end, made contiguous
  uint64_t records_ = 0;
  uint64_t wrapped_records_ = 0;
  bool yielded_ = false;  // the last Consume stopped at its limit: records are waiting
  // By enum tl_event_type; 0 (no such type) counts unknown types.
  static constexpr uint32_t kEventTypes = TL_EV_TRACE_CTX + 1;
  Counter* by_type_[kEventTypes] = {};
  Counter* decode_errors_[4] = {};
};

}  // namespace threadline
