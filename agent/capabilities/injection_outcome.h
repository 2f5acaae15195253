// What became of the context mechanisms after start: the capability probe says whether sk_msg,
// sockops and the header-option callbacks work on this kernel, but injection is only switched
// on after its canary passed, and either may be left off by configuration. This folds that
// outcome into the report, so /capabilities, the hook-choice metric and the logs say what is
// really in use.
#pragma once

#include <string>

#include "agent/capabilities/capability_report.h"

namespace threadline {

inline constexpr char kInjectionHook[] = "traceparent injection";
inline constexpr char kTcpOptionHook[] = "context in TCP header option";

// Marks a hook choice ("traceparent injection", "context in TCP header option") active or not,
// with the reason (e.g. "canary failed: ...", "left out by context_propagation"). Returns the
// mechanism name it had before, for callers that must retract a metric.
std::string RecordHookOutcome(CapabilityReport& report, std::string_view hook, bool enabled,
                              const std::string& reason);

}  // namespace threadline
