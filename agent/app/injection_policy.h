// Whether traceparent injection comes on at start, and what the agent says about it: one
// decision, apart from the kernel, so that every canary outcome can be put to it in a unit test
// (this kernel's canary cannot pass, so the real agent never shows `auto` turning it on).
//
//   inject off                          -> off (info)
//   --output events                     -> off: no spans use the ids (info)
//   kernel cannot run sk_msg + sockops  -> off (error if asked with `on`, else warning)
//   canary passed                       -> on, for `auto` and `on`
//   canary found the FIONREAD defect    -> off for `auto` (warning), on for `on` (with a warning)
//   canary failed otherwise             -> off (error), whatever was asked
#pragma once

#include <optional>
#include <string>

#include "agent/app/options.h"
#include "agent/kernel/inject_canary.h"

namespace threadline {

struct InjectionDecision {
  enum class Level { kInfo, kWarn, kError };
  bool on = false;
  std::string why;
  Level level = Level::kInfo;
  std::string warning;  // logged as well when non-empty (on despite a known kernel defect)
};

// Before any BPF is loaded: the decision when it needs no canary, else nullopt (run it).
std::optional<InjectionDecision> DecideInjectionBeforeCanary(Toggle inject, OutputMode output,
                                                             bool kernel_runs_sk_msg_and_sockops);

// After the canary ran. `enrolled` says what is enrolled when it comes on (for the log).
InjectionDecision DecideInjectionAfterCanary(Toggle inject, const CanaryResult& canary,
                                             const std::string& enrolled);

}  // namespace threadline
