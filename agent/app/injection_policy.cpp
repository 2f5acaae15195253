#include "agent/app/injection_policy.h"

namespace threadline {

std::optional<InjectionDecision> DecideInjectionBeforeCanary(Toggle inject, OutputMode output,
                                                             bool kernel_runs_sk_msg_and_sockops) {
  using Level = InjectionDecision::Level;
  if (inject == Toggle::kOff)
    return InjectionDecision{false, "switched off by configuration (inject: off)", Level::kInfo, {}};
  if (output == OutputMode::kEvents)
    return InjectionDecision{false, "no spans in --output=events, so nothing would use the ids", Level::kInfo, {}};
  if (!kernel_runs_sk_msg_and_sockops)
    return InjectionDecision{false, "this kernel cannot run sk_msg and sockops programs (see --probe)",
                             inject == Toggle::kOn ? Level::kError : Level::kWarn, {}};
  return std::nullopt;
}

InjectionDecision DecideInjectionAfterCanary(Toggle inject, const CanaryResult& canary,
                                             const std::string& enrolled) {
  using Level = InjectionDecision::Level;
  const bool asked = inject == Toggle::kOn;
  const std::string took = std::to_string(static_cast<int>(canary.elapsed_ms)) + " ms";
  if (canary.passed)
    return {true, "canary passed in " + took + " (" + canary.detail + "); " + enrolled, Level::kInfo, {}};
  if (canary.fionread_defect && asked)
    return {true,
            "on by configuration (inject: on) after a " + took + " canary, with a known kernel defect: " +
                canary.detail,
            Level::kInfo,
            "traceparent injection forced on (inject: on) despite a kernel defect the canary found: " +
                canary.detail};
  return {false,
          "canary failed after " + took + ": " + canary.detail +
              (canary.fionread_defect ? " (inject: on accepts this defect)" : ""),
          canary.fionread_defect ? Level::kWarn : Level::kError, {}};
}

}  // namespace threadline
