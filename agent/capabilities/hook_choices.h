// Which mechanism the agent uses for each thing it hooks, decided from the probe results. The
// policy is a data table (hook_choices.cpp): per hook, the mechanisms in order of preference,
// the probe kinds each needs, whether the agent can run without the hook, and the fallback.
#pragma once

#include <vector>

#include "agent/capabilities/capability_report.h"

namespace threadline {

// One choice per hook, in table order.
std::vector<HookChoice> ChooseHooks(const std::vector<ProbeResult>& results);

}  // namespace threadline
