#include "agent/capabilities/capability_report.h"

#include <algorithm>
#include <cstdio>

#include <spdlog/spdlog.h>

namespace threadline {
namespace {

std::string Pad(std::string_view text, size_t width) {
  std::string out(text);
  if (out.size() < width) out.append(width - out.size(), ' ');
  return out;
}

std::string FormatMs(double ms) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1f ms", ms);
  return buffer;
}

std::string_view Verdict(const ProbeResult& r) {
  if (r.works()) return "works";
  if (r.available) return "silent";  // attached but never seen firing
  return "unavailable";
}

}  // namespace

const std::vector<ProbeKind>& AllProbeKinds() {
  static const std::vector<ProbeKind> kinds = {
      ProbeKind::kSyscallTracepoint, ProbeKind::kSockTracepoint, ProbeKind::kSchedTracepoint,
      ProbeKind::kTpBtf,             ProbeKind::kRawTracepoint,  ProbeKind::kUprobe,
      ProbeKind::kUretprobe,         ProbeKind::kKprobe,         ProbeKind::kFentry,
      ProbeKind::kSkMsg,             ProbeKind::kSockops,        ProbeKind::kRingBuffer,
      ProbeKind::kProbeWriteUser,    ProbeKind::kTcpHeaderOption, ProbeKind::kUprobeSession,
  };
  return kinds;
}

std::string_view ProbeKindName(ProbeKind kind) {
  switch (kind) {
    case ProbeKind::kSyscallTracepoint: return "syscall tracepoint";
    case ProbeKind::kSockTracepoint: return "sock tracepoint";
    case ProbeKind::kSchedTracepoint: return "sched tracepoint";
    case ProbeKind::kTpBtf: return "tp_btf";
    case ProbeKind::kRawTracepoint: return "raw tracepoint";
    case ProbeKind::kUprobe: return "uprobe";
    case ProbeKind::kUretprobe: return "uretprobe";
    case ProbeKind::kKprobe: return "kprobe";
    case ProbeKind::kFentry: return "fentry";
    case ProbeKind::kSkMsg: return "sk_msg";
    case ProbeKind::kSockops: return "sockops";
    case ProbeKind::kRingBuffer: return "ring buffer";
    case ProbeKind::kProbeWriteUser: return "bpf_probe_write_user";
    case ProbeKind::kTcpHeaderOption: return "tcp header option";
    case ProbeKind::kUprobeSession: return "uprobe session";
  }
  return "unknown";
}

const ProbeResult* CapabilityReport::Find(ProbeKind kind) const {
  auto it = std::find_if(results.begin(), results.end(),
                         [kind](const ProbeResult& r) { return r.kind == kind; });
  return it == results.end() ? nullptr : &*it;
}

bool CapabilityReport::Works(ProbeKind kind) const {
  const ProbeResult* r = Find(kind);
  return r != nullptr && r->works();
}

const HookChoice* CapabilityReport::FindChoice(std::string_view hook) const {
  auto it = std::find_if(choices.begin(), choices.end(),
                         [hook](const HookChoice& c) { return c.hook == hook; });
  return it == choices.end() ? nullptr : &*it;
}

std::string FormatReport(const CapabilityReport& report) {
  std::string out = "threadline capability report\n";
  out += "  kernel     " + report.kernel_release + "\n";
  out += "  BTF        " + std::string(report.btf ? "yes" : "no") + "\n";
  out += "  lockdown   " + report.lockdown +
         (report.lockdown == "unknown" ? " (/sys/kernel/security/lockdown not readable)" : "") +
         "\n";
  out += "  cgroup v2  " + report.cgroup2_root.value_or("not mounted") + "\n";
  out += "  tracefs    " + report.tracefs_root.value_or("unavailable") + "\n";
  if (!report.environment_error.empty()) {
    out += "  setup      " + report.environment_error + "\n";
  }

  size_t name_width = 4, target_width = 6;
  for (const ProbeResult& r : report.results) {
    name_width = std::max(name_width, r.name.size());
    target_width = std::max(target_width, r.target.size());
  }
  out += "\nprobes (each loaded, attached, triggered and removed alone; kinds run concurrently)\n";
  out += "  " + Pad("KIND", name_width) + "  " + Pad("TARGET", target_width) + "  " +
         Pad("RESULT", 11) + "  " + Pad("TIME", 8) + "  DETAIL\n";
  for (const ProbeResult& r : report.results) {
    out += "  " + Pad(r.name, name_width) + "  " + Pad(r.target, target_width) + "  " +
           Pad(Verdict(r), 11) + "  " + Pad(FormatMs(r.elapsed_ms), 8) + "  " + r.detail + "\n";
  }

  size_t hook_width = 4, chosen_width = 6;
  for (const HookChoice& c : report.choices) {
    hook_width = std::max(hook_width, c.hook.size());
    chosen_width = std::max(chosen_width, c.chosen.size());
  }
  out += "\nhooks\n";
  out += "  " + Pad("HOOK", hook_width) + "  " + Pad("CHOSEN", chosen_width) + "  WHY\n";
  for (const HookChoice& c : report.choices) {
    std::string why = c.reason;
    if (!c.active) why = std::string(c.required ? "REQUIRED; " : "") + "unusable: " + why;
    out += "  " + Pad(c.hook, hook_width) + "  " + Pad(c.chosen, chosen_width) + "  " + why + "\n";
    if (!c.alternatives.empty()) {
      out += "  " + Pad("", hook_width) + "  " + Pad("", chosen_width) +
             "  alternatives: " + c.alternatives + "\n";
    }
  }

  out += "\n";
  if (report.can_run) {
    out += "verdict: the agent can run on this kernel";
  } else {
    out += "verdict: the agent CANNOT run on this kernel: " + report.cannot_run_reason;
  }
  out += " (probed in " + FormatMs(report.elapsed_ms) + ")\n";
  return out;
}

void LogReport(const CapabilityReport& report) {
  spdlog::info("kernel {}: BTF {}, lockdown {}, cgroup v2 at {}, tracefs at {}",
               report.kernel_release, report.btf ? "yes" : "no", report.lockdown,
               report.cgroup2_root.value_or("(none)"), report.tracefs_root.value_or("(none)"));
  if (!report.environment_error.empty()) {
    spdlog::warn("BPF environment: {}", report.environment_error);
  }
  for (const HookChoice& c : report.choices) {
    const std::string alternatives =
        c.alternatives.empty() ? "" : "; alternatives: " + c.alternatives;
    if (c.active) {
      spdlog::info("hook '{}': {} ({}){}", c.hook, c.chosen, c.reason, alternatives);
    } else if (c.required) {
      spdlog::error("hook '{}': no working mechanism ({}){}", c.hook, c.reason, alternatives);
    } else if (c.degraded) {
      spdlog::warn("hook '{}': {} ({}){}", c.hook, c.chosen, c.reason, alternatives);
    } else {
      spdlog::info("hook '{}': {} ({}){}", c.hook, c.chosen, c.reason, alternatives);
    }
  }
  std::string works, missing;
  for (const ProbeResult& r : report.results) {
    std::string& list = r.works() ? works : missing;
    if (!list.empty()) list += ", ";
    list += r.name;
  }
  spdlog::info("BPF probes in {:.1f} ms: working: {}; unavailable: {}", report.elapsed_ms,
               works.empty() ? "none" : works, missing.empty() ? "none" : missing);
  for (const ProbeResult& r : report.results) {
    spdlog::debug("probe {} ({}): {} in {:.1f} ms: {}", r.name, r.target, Verdict(r),
                  r.elapsed_ms, r.detail);
  }
  if (!report.can_run) spdlog::error("the agent cannot run: {}", report.cannot_run_reason);
}

}  // namespace threadline
