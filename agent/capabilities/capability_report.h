// What the capability probe found: one result per kind of BPF hook the agent may use, and the
// mechanism chosen for each thing the agent hooks. Plain values, so the report can be printed
// (threadline --probe), logged at start, exported as metrics and built by hand in tests.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace threadline {

// Every kind of program/attachment the agent may use. Numbered for logs and metrics labels;
// append only.
enum class ProbeKind {
  kSyscallTracepoint = 0,
  kSockTracepoint = 1,
  kSchedTracepoint = 2,
  kTpBtf = 3,
  kRawTracepoint = 4,
  kUprobe = 5,
  kUretprobe = 6,
  kKprobe = 7,
  kFentry = 8,
  kSkMsg = 9,
  kSockops = 10,
  kRingBuffer = 11,
  kProbeWriteUser = 12,
  // sockops header-option callbacks (BPF_SOCK_OPS_{HDR_OPT_LEN,WRITE_HDR_OPT,PARSE_HDR_OPT}_CB):
  // an option written on loopback segments and read back on the other end.
  kTcpHeaderOption = 13,
  // A uprobe session (BPF_TRACE_UPROBE_SESSION via a uprobe_multi link, Linux 6.13+): entry and
  // return in one program, the entry deciding whether the return is probed.
  kUprobeSession = 14,
};

// All kinds, in the order the report lists them.
const std::vector<ProbeKind>& AllProbeKinds();
// Short stable name: "syscall tracepoint", "kprobe", "bpf_probe_write_user", ...
std::string_view ProbeKindName(ProbeKind kind);

struct ProbeResult {
  ProbeKind kind = ProbeKind::kSyscallTracepoint;
  std::string name;     // ProbeKindName(kind)
  std::string target;   // what was attached, e.g. "syscalls:sys_enter_getppid"
  bool available = false;  // the kernel loaded and attached it
  bool fired = false;      // triggered, and the program was seen doing its action
  std::string detail;      // what was observed, or which step failed and why
  int error_code = 0;      // errno of the failing step; 0 when nothing failed
  double elapsed_ms = 0;   // open + load + attach + trigger + teardown

  bool works() const { return available && fired; }
};

struct HookChoice {
  std::string hook;          // what the agent observes or does, e.g. "socket syscalls"
  std::string chosen;        // the mechanism in use, or the fallback when none works
  bool active = false;       // false: no mechanism works and `chosen` is the fallback
  bool required = false;     // the agent cannot run without this hook
  bool degraded = false;     // not active, and the fallback loses something users would miss
  std::string alternatives;  // other mechanisms and whether this kernel has them
  std::string reason;
};

struct CapabilityReport {
  std::string kernel_release;  // uname -r
  bool btf = false;
  std::string lockdown;                      // LockdownMode()
  std::optional<std::string> cgroup2_root;   // CgroupV2Root()
  std::optional<std::string> tracefs_root;   // TracefsRoot() after preparation
  std::string environment_error;             // PrepareBpfEnvironment() failure, else empty
  std::vector<ProbeResult> results;          // one per AllProbeKinds(), same order
  std::vector<HookChoice> choices;
  bool can_run = false;
  std::string cannot_run_reason;  // which required hooks have no working mechanism
  double elapsed_ms = 0;

  const ProbeResult* Find(ProbeKind kind) const;
  bool Works(ProbeKind kind) const;
  const HookChoice* FindChoice(std::string_view hook) const;
};

// A readable multi-line table for `threadline --probe`.
std::string FormatReport(const CapabilityReport& report);

// What the agent logs at start: the kernel facts, one info line per hook choice, a summary of
// the probe kinds, and an error line when the agent cannot run.
void LogReport(const CapabilityReport& report);

}  // namespace threadline
