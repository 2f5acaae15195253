#include "agent/ingest/ring_consumer.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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
  if (producer_pages_) munmap(producer_pages_, page_bytes_ + data_bytes_);
  if (consumer_page_) munmap(consumer_page_, page_bytes_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

Result<std::unique_ptr<RingConsumer>> RingConsumer::Create(int ring_fd, EventSink& sink,
                                                           MetricsRegistry& metrics) {
  std::unique_ptr<RingConsumer> c(new RingConsumer(sink, metrics));  // private constructor
  bpf_map_info info{};
  uint32_t info_len = sizeof(info);
  if (bpf_obj_get_info_by_fd(ring_fd, &info, &info_len) != 0)
    return Error::FromErrno("ring buffer map info", errno);
  if (info.type != BPF_MAP_TYPE_RINGBUF)
    return Error{"ring buffer consumer: map is not a BPF ring buffer", EINVAL};
  c->page_bytes_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  c->data_bytes_ = info.max_entries;
  // Page 0: the consumer position, ours to write. Then (read-only) the producer position's
  // page and the data area, mapped ONCE (the kernel would map it a second time after itself
  // if asked for twice its size, as libbpf does).
  void* cons = mmap(nullptr, c->page_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0);
  if (cons == MAP_FAILED) return Error::FromErrno("map ring buffer consumer page", errno);
  c->consumer_page_ = cons;
  void* prod = mmap(nullptr, c->page_bytes_ + c->data_bytes_, PROT_READ, MAP_SHARED, ring_fd,
                    static_cast<off_t>(c->page_bytes_));
  if (prod == MAP_FAILED) return Error::FromErrno("map ring buffer data", errno);
  c->producer_pages_ = prod;
  c->data_ = static_cast<const uint8_t*>(prod) + c->page_bytes_;
  c->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (c->epoll_fd_ < 0) return Error::FromErrno("epoll_create1", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  if (epoll_ctl(c->epoll_fd_, EPOLL_CTL_ADD, ring_fd, &ev) != 0)
    return Error::FromErrno("epoll_ctl ring buffer", errno);
  return c;
}

void RingConsumer::OnRecord(const uint8_t* data, size_t size) {
  ++records_;
  DecodeStatus status = DecodeEvent(std::span<const uint8_t>(data, size), sink_);
  if (status != DecodeStatus::kOk) {
    decode_errors_[static_cast<int>(status)]->Add();
  } else {
    tl_event_header h;
    std::memcpy(&h.type, data + offsetof(tl_event_header, type), sizeof(h.type));
    by_type_[h.type < kEventTypes ? h.type : 0]->Add();
  }
}

int RingConsumer::Consume(uint32_t limit) {
  yielded_ = false;
  auto* consumer_pos = static_cast<unsigned long*>(consumer_page_);
  const auto* producer_pos = static_cast<const unsigned long*>(producer_pages_);
  const uint64_t mask = data_bytes_ - 1;
  int n = 0;
  unsigned long cons = __atomic_load_n(consumer_pos, __ATOMIC_ACQUIRE);
  bool more = true;
  while (more) {
    more = false;
    const unsigned long prod = __atomic_load_n(producer_pos, __ATOMIC_ACQUIRE);
    while (cons < prod) {
      const uint8_t* head = data_ + (cons & mask);  // 8-byte aligned: never wraps
      const uint32_t len = __atomic_load_n(reinterpret_cast<const uint32_t*>(head), __ATOMIC_ACQUIRE);
      if (len & BPF_RINGBUF_BUSY_BIT) return n;  // not committed yet: read on the next call
      more = true;
      const size_t size = len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
      const size_t at = (cons + BPF_RINGBUF_HDR_SZ) & mask;
      cons += (size + BPF_RINGBUF_HDR_SZ + 7) / 8 * 8;
      if (!(len & BPF_RINGBUF_DISCARD_BIT)) {
        if (at + size <= data_bytes_) {
          OnRecord(data_ + at, size);
        } else {
          // Wraps past the end of the data area: the tail is at its start.
          const size_t first = data_bytes_ - at;
          wrapped_.resize(size);
          std::memcpy(wrapped_.data(), data_ + at, first);
          std::memcpy(wrapped_.data() + first, data_, size - first);
          ++wrapped_records_;
          OnRecord(wrapped_.data(), size);
        }
        ++n;
      }
      __atomic_store_n(consumer_pos, cons, __ATOMIC_RELEASE);
      if (limit && static_cast<uint32_t>(n) >= limit) {
        yielded_ = true;
        return n;
      }
    }
  }
  return n;
}

Result<int> RingConsumer::Poll(int timeout_ms) {
  epoll_event ev;
  // After a call that stopped at its limit, no wake-up may come for what is waiting (events
  // committed without one, or none at all while the ring is full): no wait then.
  if (epoll_wait(epoll_fd_, &ev, 1, yielded_ ? 0 : timeout_ms) < 0 && errno != EINTR)
    return Error::FromErrno("poll ring buffer", errno);
  // Woken or not (timeout, EINTR): whatever was committed, with or without a wake-up, is read.
  return Consume(kMaxRecordsPerPoll);
}

int RingConsumer::Drain() { return Consume(0); }

}  // namespace threadline
