// tracefs: where the kernel exposes tracepoints. libbpf resolves a tracepoint's id through it
// when attaching, and many hosts (and minimal VMs) do not mount it by default.
#pragma once

#include <optional>
#include <string>

#include "agent/common/result.h"

namespace threadline {

// The tracefs directory in use (one whose events/ exists): /sys/kernel/tracing, else
// /sys/kernel/debug/tracing; nullopt when neither is mounted.
std::optional<std::string> TracefsRoot();

// Makes sure tracefs is reachable: mounts it at /sys/kernel/tracing when neither location has
// events/ (logged at info). The error says what failed and why (e.g. EPERM without
// CAP_SYS_ADMIN) so the caller can tell the user how to mount it themselves.
Status EnsureTracefs();

}  // namespace threadline
