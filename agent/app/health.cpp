#include "agent/app/health.h"

#include <cstdio>

namespace threadline {

namespace {
std::string Seconds(uint64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", static_cast<double>(ns) / 1e9);
  return buf;
}
}  // namespace

void HealthState::Set(Phase p, std::string text) {
  std::lock_guard<std::mutex> lock(mu_);
  text_ = std::move(text);
  phase_.store(p);
}

void HealthState::SetStarting(std::string what) { Set(Phase::kStarting, "starting: " + what); }

void HealthState::SetRunning(uint64_t now_ns, std::string summary) {
  Heartbeat(now_ns);
  Set(Phase::kRunning, std::move(summary));
}

void HealthState::SetNote(std::string note) {
  std::lock_guard<std::mutex> lock(mu_);
  note_ = std::move(note);
}

void HealthState::SetStopping() { Set(Phase::kStopping, "stopping: detaching hooks and flushing spans"); }

void HealthState::SetFailed(std::string reason) { Set(Phase::kFailed, "failed: " + std::move(reason)); }

HealthStatus HealthState::Liveness(uint64_t now_ns) const {
  std::lock_guard<std::mutex> lock(mu_);
  const Phase p = phase_.load();
  if (p == Phase::kFailed) return {false, text_};
  if (p == Phase::kRunning) {
    const uint64_t beat = last_beat_ns_.load(std::memory_order_relaxed);
    if (now_ns > beat && now_ns - beat > kStallLiveness)
      return {false, "ring consumer loop stalled for " + Seconds(now_ns - beat)};
  }
  return {true, "alive (" + text_ + (note_.empty() ? "" : "; " + note_) + ")"};
}

HealthStatus HealthState::Readiness(uint64_t now_ns) const {
  std::lock_guard<std::mutex> lock(mu_);
  const Phase p = phase_.load();
  if (p != Phase::kRunning) return {false, text_};
  const uint64_t beat = last_beat_ns_.load(std::memory_order_relaxed);
  if (now_ns > beat && now_ns - beat > kStallReadiness)
    return {false, "ring consumer loop stalled for " + Seconds(now_ns - beat)};
  return {true, "ready: " + text_ + (note_.empty() ? "" : "; " + note_)};
}

}  // namespace threadline
