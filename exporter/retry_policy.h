// When to try an export again: exponential backoff with full jitter (each wait is uniform in
// [0, min(max_backoff, initial_backoff * multiplier^n)]), a server-provided delay (gRPC
// RetryInfo, HTTP Retry-After) taking the place of the computed one, and a total time budget
// per batch after which the batch is given up. Pure: times come in as arguments, randomness
// through a function, so tests drive it with a fake clock.
#pragma once

#include <chrono>
#include <functional>
#include <optional>

namespace threadline {

struct RetryPolicy {
  // Defaults follow the OTLP exporter specification's advice (exponential backoff with jitter)
  // and the values the OpenTelemetry SDKs use: first wait up to 1 s, no wait above 30 s.
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{30000};
  double multiplier = 2.0;
};

class RetrySchedule {
 public:
  using Clock = std::chrono::steady_clock;
  // Returns a value in [0, 1].
  using Uniform01 = std::function<double()>;

  // The batch may be retried until `give_up_at` (the start of its export plus its budget).
  RetrySchedule(const RetryPolicy& policy, Clock::time_point give_up_at, Uniform01 uniform01);

  // After a failed attempt ending at `now`: the time of the next attempt, or nullopt when that
  // would be at or past give_up_at. `server_delay` (when the receiver named one) replaces the
  // computed backoff for this wait.
  std::optional<Clock::time_point> Next(Clock::time_point now,
                                        std::optional<std::chrono::milliseconds> server_delay);

  // The upper end of the jitter window for the next computed wait (for tests and logs).
  std::chrono::milliseconds CurrentCap() const;
  int retries() const { return retries_; }
  Clock::time_point give_up_at() const { return give_up_at_; }

 private:
  RetryPolicy policy_;
  Clock::time_point give_up_at_;
  Uniform01 uniform01_;
  int retries_ = 0;
};

// A thread-safe source of uniform [0, 1] values for production use (seeded randomly).
RetrySchedule::Uniform01 RandomUniform01();

}  // namespace threadline
