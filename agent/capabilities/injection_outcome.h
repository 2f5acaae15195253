// What became of traceparent injection after start: the capability probe says whether sk_msg and
// sockops work on this kernel, but injection is only switched on after its canary passed (or
// left off by configuration). This folds that outcome into the report, so /capabilities, the
// hook-choice metric and the logs say what is really in use.
#pragma once

#include <string>

#include "agent/capabilities/capability_report.h"

namespace threadline {

inline constexpr char kInjectionHook[] = "traceparent injection";

// Marks the "traceparent injection" choice active or not, with the reason (e.g. "canary failed:
// ..."). Returns the mechanism name it had before, for callers that must retract a metric.
std::string RecordInjectionOutcome(CapabilityReport& report, bool enabled, const std::string& reason);

}  // namespace threadline
