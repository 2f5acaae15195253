#include "agent/ingest/ring_consumer.h"

#include <cerrno>
#include <iterator>
#include <string>

namespace threadline {

namespace {
constexpr const char* kTypeNames[] = {"unknown",    "conn_open", "conn_close", "data",     "proc_exec",
                                      "proc_exit",  "conn_state", "proc_fork",  "trace_ctx"};
}

RingConsumer::RingConsumer(EventSink& sink, MetricsRegistry& metrics) : sink_(sink) {
  static_assert(std::size(kTypeNames) == kEventTypes, "a name for every enum tl_event_type");
  for (uint32_t t = 0; t < kEventTypes; ++t)
    by_type_[t] = &metrics.GetCounter("threadline_kernel_events_received_total",
                                      {{"type", kTypeNames[t]}}, "Kernel events received by type");
  for (int s = 1; s < 4; ++s)
    decode_errors_[s] = &metrics.GetCounter(
        "threadline_kernel_events_invalid_total",
        {{"reason", std::string(ToString(static_cast<DecodeStatus>(s)))}},
        "Kernel records that could not be decoded");
}

RingConsumer::~RingConsumer() {
  if (ring_) ring_buffer__free(ring_);
}

Result<std::unique_ptr<RingConsumer>> RingConsumer::Create(int ring_fd, EventSink& sink,
                                                           MetricsRegistry& metrics) {
  std::unique_ptr<RingConsumer> c(new RingConsumer(sink, metrics));  // private constructor
  c->ring_ = ring_buffer__new(ring_fd, &RingConsumer::OnRecord, c.get(), nullptr);
  if (!c->ring_) return Error::FromErrno("create ring buffer consumer", errno);
  return c;
}

int RingConsumer::OnRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<RingConsumer*>(ctx);
  ++self->records_;
  std::span<const uint8_t> record(static_cast<const uint8_t*>(data), size);
  DecodeStatus status = DecodeEvent(record, self->sink_);
  if (status != DecodeStatus::kOk) {
    self->decode_errors_[static_cast<int>(status)]->Add();
  } else {
    uint32_t type = reinterpret_cast<const tl_event_header*>(data)->type;
    self->by_type_[type < kEventTypes ? type : 0]->Add();
  }
  return 0;
}

Result<int> RingConsumer::Poll(int timeout_ms) {
  int n = ring_buffer__poll(ring_, timeout_ms);
  if (n == -EINTR) n = 0;
  if (n < 0) return Error::FromErrno("poll ring buffer", n);
  // Not woken (timeout or EINTR): whatever was committed without a wake-up is read now.
  if (n == 0) n = ring_buffer__consume(ring_);
  if (n < 0) return Error::FromErrno("consume ring buffer", n);
  return n;
}

int RingConsumer::Drain() {
  int n = ring_buffer__consume(ring_);
  return n < 0 ? 0 : n;
}

}  // namespace threadline
