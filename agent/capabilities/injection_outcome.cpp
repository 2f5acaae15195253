#include "agent/capabilities/injection_outcome.h"

namespace threadline {

std::string RecordHookOutcome(CapabilityReport& report, std::string_view hook, bool enabled,
                              const std::string& reason) {
  for (HookChoice& c : report.choices) {
    if (c.hook != hook) continue;
    std::string before = c.chosen;
    if (!enabled) {
      c.active = false;
      c.chosen = "off";
      c.degraded = false;  // the agent keeps its other parent rules
    }
    c.reason = reason;
    return before;
  }
  return {};
}

}  // namespace threadline
