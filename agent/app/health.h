// The agent's liveness and readiness, as /healthz and /readyz answer them (metrics_server.h).
//
//   liveness  (/healthz): the process runs and its consumer loop turns. Starting counts as
//             alive (loading BPF can take seconds); a loop that has not turned for
//             kStallLiveness is not alive, so the kubelet restarts the pod.
//   readiness (/readyz):  BPF programs are loaded and attached and the ring consumer loop runs
//             (turned within kStallReadiness). Not ready while starting, after a failure
//             (with its reason) and while stopping.
//
// Written by the agent's thread, read by the HTTP server's thread: atomics plus a mutex for the
// reason text. Times are CLOCK_BOOTTIME nanoseconds passed in, so tests drive the clock.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace threadline {

struct HealthStatus {
  bool ok = false;
  std::string reason;  // one line: "ready: ..." or why not
};

class HealthState {
 public:
  static constexpr uint64_t kStallReadiness = 5'000'000'000ull;
  static constexpr uint64_t kStallLiveness = 30'000'000'000ull;

  // Phases, in order. kFailed ends the agent (the reason says why).
  enum class Phase { kStarting, kRunning, kStopping, kFailed };

  void SetStarting(std::string what);            // "loading BPF programs"
  void SetRunning(uint64_t now_ns, std::string summary);
  void SetStopping();
  void SetFailed(std::string reason);
  // A condition worth saying while running (the CPU budget's load shedding); empty: none.
  void SetNote(std::string note);
  void Heartbeat(uint64_t now_ns) { last_beat_ns_.store(now_ns, std::memory_order_relaxed); }

  HealthStatus Liveness(uint64_t now_ns) const;
  HealthStatus Readiness(uint64_t now_ns) const;

 private:
  void Set(Phase p, std::string text);

  std::atomic<Phase> phase_{Phase::kStarting};
  std::atomic<uint64_t> last_beat_ns_{0};
  mutable std::mutex mu_;
  std::string text_ = "starting";
  std::string note_;
};

}  // namespace threadline
