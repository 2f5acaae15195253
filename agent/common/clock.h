// Kernel timestamps are CLOCK_BOOTTIME (bpf_ktime_get_boot_ns: it keeps counting through
// suspend, unlike ktime_get_ns). Spans need wall-clock epoch time, so we keep the offset
// between the two clocks and refresh it periodically (NTP slews CLOCK_REALTIME).
#pragma once

#include <atomic>
#include <cstdint>

namespace threadline {

class BootClock {
 public:
  BootClock() { Refresh(); }
  // Re-measures the offset: the sample with the narrowest realtime window of a few tries.
  void Refresh();
  uint64_t ToEpochNs(uint64_t boot_ns) const {
    return boot_ns + offset_ns_.load(std::memory_order_relaxed);
  }
  static uint64_t NowBootNs();
  static uint64_t NowEpochNs();
  int64_t offset_ns() const { return offset_ns_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> offset_ns_{0};
};

}  // namespace threadline
