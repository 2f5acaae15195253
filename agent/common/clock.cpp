#include "agent/common/clock.h"

#include <time.h>

namespace threadline {

namespace {
uint64_t Read(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}
}  // namespace

uint64_t BootClock::NowBootNs() { return Read(CLOCK_BOOTTIME); }
uint64_t BootClock::NowEpochNs() { return Read(CLOCK_REALTIME); }

void BootClock::Refresh() {
  uint64_t best_window = UINT64_MAX;
  int64_t best_offset = 0;
  for (int i = 0; i < 5; ++i) {
    uint64_t r1 = Read(CLOCK_REALTIME);
    uint64_t b = Read(CLOCK_BOOTTIME);
    uint64_t r2 = Read(CLOCK_REALTIME);
    if (r2 - r1 < best_window) {
      best_window = r2 - r1;
      best_offset = static_cast<int64_t>(r1 + (r2 - r1) / 2) - static_cast<int64_t>(b);
    }
  }
  offset_ns_.store(best_offset, std::memory_order_relaxed);
}

}  // namespace threadline
