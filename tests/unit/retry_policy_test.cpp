// RetrySchedule on a fake clock: the jitter window doubles up to the cap, full jitter spans it,
// a server delay replaces it, and the batch's budget ends the retries.
#include "exporter/retry_policy.h"

#include <gtest/gtest.h>

namespace threadline {
namespace {

using std::chrono::milliseconds;
using Clock = RetrySchedule::Clock;

const Clock::time_point kT0 = Clock::time_point(std::chrono::hours(1));  // a fake "now"

RetryPolicy Policy() { return RetryPolicy{.initial_backoff = milliseconds(1000), .max_backoff = milliseconds(30000), .multiplier = 2.0}; }

TEST(RetrySchedule, WindowDoublesUpToTheCap) {
  RetrySchedule s(Policy(), kT0 + std::chrono::hours(1), [] { return 1.0; });
  Clock::time_point now = kT0;
  const int64_t expected[] = {1000, 2000, 4000, 8000, 16000, 30000, 30000};
  for (int64_t ms : expected) {
    EXPECT_EQ(s.CurrentCap(), milliseconds(ms));
    std::optional<Clock::time_point> next = s.Next(now, std::nullopt);
    ASSERT_TRUE(next.has_value());
    EXPECT_EQ(*next - now, milliseconds(ms));  // uniform 1.0: the top of the window
    now = *next + milliseconds(5);             // the attempt itself took 5 ms
  }
  EXPECT_EQ(s.retries(), 7);
}

TEST(RetrySchedule, FullJitterSpansTheWindow) {
  double u = 0.0;
  RetrySchedule s(Policy(), kT0 + std::chrono::hours(1), [&u] { return u; });
  EXPECT_EQ(*s.Next(kT0, std::nullopt), kT0);  // 0: retry at once
  u = 0.5;
  EXPECT_EQ(*s.Next(kT0, std::nullopt), kT0 + milliseconds(1000));  // half of 2 s
  u = 0.25;
  EXPECT_EQ(*s.Next(kT0, std::nullopt), kT0 + milliseconds(1000));  // a quarter of 4 s
}

TEST(RetrySchedule, ServerDelayReplacesBackoff) {
  RetrySchedule s(Policy(), kT0 + std::chrono::hours(1), [] { return 0.0; });
  EXPECT_EQ(*s.Next(kT0, milliseconds(45000)), kT0 + milliseconds(45000));  // above the cap: honoured
  EXPECT_EQ(*s.Next(kT0, milliseconds(0)), kT0);
  // The computed window still grew with each retry.
  EXPECT_EQ(s.CurrentCap(), milliseconds(4000));
}

TEST(RetrySchedule, GivesUpWhenTheNextAttemptWouldMissTheBudget) {
  RetrySchedule s(Policy(), kT0 + milliseconds(2500), [] { return 1.0; });
  EXPECT_EQ(*s.Next(kT0, std::nullopt), kT0 + milliseconds(1000));
  EXPECT_EQ(s.Next(kT0 + milliseconds(1000), std::nullopt), std::nullopt);  // +2 s = 3 s > 2.5 s
  RetrySchedule t(Policy(), kT0 + milliseconds(2500), [] { return 0.0; });
  EXPECT_EQ(t.Next(kT0, milliseconds(2500)), std::nullopt);  // exactly at the end: no
  EXPECT_EQ(t.Next(kT0 + milliseconds(2500), std::nullopt), std::nullopt);
}

TEST(RetrySchedule, RandomUniformStaysInRange) {
  RetrySchedule::Uniform01 u = RandomUniform01();
  for (int i = 0; i < 1000; ++i) {
    const double v = u();
    EXPECT_GE(v, 0.0);
    EXPECT_LE(v, 1.0);
  }
}

}  // namespace
}  // namespace threadline
