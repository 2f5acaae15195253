#include "exporter/retry_policy.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <random>

namespace threadline {

RetrySchedule::RetrySchedule(const RetryPolicy& policy, Clock::time_point give_up_at,
                             Uniform01 uniform01)
    : policy_(policy), give_up_at_(give_up_at), uniform01_(std::move(uniform01)) {}

std::chrono::milliseconds RetrySchedule::CurrentCap() const {
  const double initial = static_cast<double>(policy_.initial_backoff.count());
  const double cap = static_cast<double>(policy_.max_backoff.count());
  const double grown = initial * std::pow(std::max(policy_.multiplier, 1.0), retries_);
  return std::chrono::milliseconds(static_cast<int64_t>(std::min(grown, cap)));
}

std::optional<RetrySchedule::Clock::time_point> RetrySchedule::Next(
    Clock::time_point now, std::optional<std::chrono::milliseconds> server_delay) {
  std::chrono::milliseconds wait;
  if (server_delay.has_value()) {
    wait = std::max(*server_delay, std::chrono::milliseconds(0));
  } else {
    const double u = std::clamp(uniform01_ ? uniform01_() : 1.0, 0.0, 1.0);
    wait = std::chrono::milliseconds(static_cast<int64_t>(u * static_cast<double>(CurrentCap().count())));
  }
  ++retries_;
  const Clock::time_point at = now + wait;
  if (at >= give_up_at_) return std::nullopt;
  return at;
}

RetrySchedule::Uniform01 RandomUniform01() {
  struct State {
    std::mutex mu;
    std::mt19937_64 rng{std::random_device{}()};
    std::uniform_real_distribution<double> dist{0.0, 1.0};
  };
  auto state = std::make_shared<State>();
  return [state] {
    std::lock_guard lock(state->mu);
    return state->dist(state->rng);
  };
}

}  // namespace threadline
