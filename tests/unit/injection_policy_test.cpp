// The injection decision (agent/app/injection_policy.h) against every canary outcome. On this
// project's kernel the real canary cannot pass (an enrolled socket answers FIONREAD wrongly), so
// only here is `auto` seen turning injection on; the e2e tests (test_inject.py) show the running
// agent carrying out the decision for a failed canary (THREADLINE_INJECT_CANARY_FAIL) and for `on`.
#include "agent/app/injection_policy.h"

#include <gtest/gtest.h>

namespace threadline {
namespace {

CanaryResult Passed() { return {.passed = true, .detail = "bytes intact", .fionread_defect = false, .elapsed_ms = 12}; }
CanaryResult FionreadDefect() {
  return {.passed = false, .detail = "FIONREAD answered 0", .fionread_defect = true, .elapsed_ms = 12};
}
CanaryResult Altered() {
  return {.passed = false, .detail = "request arrived altered", .fionread_defect = false, .elapsed_ms = 12};
}

TEST(InjectionPolicy, AutoTurnsInjectionOnWhenTheCanaryPasses) {
  ASSERT_FALSE(DecideInjectionBeforeCanary(Toggle::kAuto, OutputMode::kJson, true).has_value())
      << "auto on a capable kernel must run the canary";
  const InjectionDecision d = DecideInjectionAfterCanary(Toggle::kAuto, Passed(), "sockets enrolled");
  EXPECT_TRUE(d.on);
  EXPECT_EQ(d.why, "canary passed in 12 ms (bytes intact); sockets enrolled");
  EXPECT_TRUE(d.warning.empty());
}

// `auto` is exactly the canary's verdict; `on` also accepts the one known kernel defect, never a
// canary that saw bytes altered.
TEST(InjectionPolicy, TheDecisionFollowsTheCanary) {
  struct Case {
    const char* name;
    CanaryResult canary;
    bool auto_on, on_on;
    InjectionDecision::Level auto_level;
  };
  const Case cases[] = {
      {"passed", Passed(), true, true, InjectionDecision::Level::kInfo},
      {"FIONREAD defect", FionreadDefect(), false, true, InjectionDecision::Level::kWarn},
      {"bytes altered", Altered(), false, false, InjectionDecision::Level::kError},
  };
  for (const Case& c : cases) {
    const InjectionDecision a = DecideInjectionAfterCanary(Toggle::kAuto, c.canary, "");
    EXPECT_EQ(a.on, c.auto_on) << c.name;
    EXPECT_EQ(a.on, c.canary.passed) << c.name << ": auto must follow the canary";
    if (!a.on) {
      EXPECT_EQ(a.level, c.auto_level) << c.name;
      EXPECT_NE(a.why.find("canary failed after 12 ms: " + c.canary.detail), std::string::npos) << a.why;
    }
    const InjectionDecision forced = DecideInjectionAfterCanary(Toggle::kOn, c.canary, "");
    EXPECT_EQ(forced.on, c.on_on) << c.name;
    EXPECT_EQ(!forced.warning.empty(), forced.on && !c.canary.passed) << c.name;
  }
  EXPECT_NE(DecideInjectionAfterCanary(Toggle::kAuto, FionreadDefect(), "").why.find("(inject: on accepts this defect)"),
            std::string::npos);
}

TEST(InjectionPolicy, NoCanaryWhenItCannotMatter) {
  auto off = DecideInjectionBeforeCanary(Toggle::kOff, OutputMode::kJson, true);
  ASSERT_TRUE(off.has_value());
  EXPECT_FALSE(off->on);
  EXPECT_EQ(off->level, InjectionDecision::Level::kInfo);
  auto events = DecideInjectionBeforeCanary(Toggle::kOn, OutputMode::kEvents, true);
  ASSERT_TRUE(events.has_value());
  EXPECT_FALSE(events->on);
  // A kernel without sk_msg/sockops: an error when injection was asked for, a warning for auto.
  auto asked = DecideInjectionBeforeCanary(Toggle::kOn, OutputMode::kJson, false);
  auto automatic = DecideInjectionBeforeCanary(Toggle::kAuto, OutputMode::kJson, false);
  ASSERT_TRUE(asked && automatic);
  EXPECT_FALSE(asked->on || automatic->on);
  EXPECT_EQ(asked->level, InjectionDecision::Level::kError);
  EXPECT_EQ(automatic->level, InjectionDecision::Level::kWarn);
}

}  // namespace
}  // namespace threadline
