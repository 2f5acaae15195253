// The capability report as JSON, for GET /capabilities on the metrics endpoint: what the kernel
// allows (one entry per probe kind), which mechanism each hook uses, and `limitations`, one
// sentence per reason this node traces less than a fully capable one (lockdown, no BTF, no
// uprobes, a hook without a working mechanism), so an operator can read why from a pod.
#pragma once

#include <string>
#include <vector>

#include "agent/capabilities/capability_report.h"

namespace threadline {

// The reasons this node traces less, most important first; empty on a fully capable node.
std::vector<std::string> CapabilityLimitations(const CapabilityReport& report);

// Facts about the kernel that do not make it trace less (integrity lockdown, no kprobes, no
// fentry: optional accelerations only), so nobody chases them.
std::vector<std::string> CapabilityNotes(const CapabilityReport& report);

// One JSON object (UTF-8, no trailing newline):
//   {"kernel_release", "btf", "lockdown", "cgroup2_root", "tracefs_root", "environment_error",
//    "can_run", "cannot_run_reason", "probe_elapsed_ms",
//    "probes": [{"kind","target","available","fired","works","detail","errno"}...],
//    "hooks": [{"hook","chosen","active","required","degraded","alternatives","reason"}...],
//    "limitations": ["..."], "notes": ["..."]}
std::string CapabilityReportJson(const CapabilityReport& report);

}  // namespace threadline
