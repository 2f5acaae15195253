#include "agent/capabilities/hook_choices.h"

#include <algorithm>
#include <string>
#include <string_view>

namespace threadline {
namespace {

struct Mechanism {
  std::string_view name;
  std::vector<ProbeKind> needs;  // every one must work
  std::string_view why;          // shown when this mechanism is chosen
};

struct HookSpec {
  std::string_view hook;
  std::vector<Mechanism> mechanisms;  // in order of preference
  // Reported with their availability but never chosen for this hook: the agent does not
  // need them, and the user should see that it does not.
  std::vector<ProbeKind> listed_alternatives;
  std::string_view alternatives_note;
  bool required;
  std::string_view fallback;  // what happens when no mechanism works
  bool fallback_loses_function = true;  // false: the fallback is a fine way to run
};

const std::vector<HookSpec>& HookSpecs() {
  static const std::vector<HookSpec> specs = {
      {"socket syscalls",
       {{"syscall tracepoints",
         {ProbeKind::kSyscallTracepoint},
         "stable per-syscall ABI on every supported kernel; needs no kprobes"}},
       {ProbeKind::kKprobe, ProbeKind::kFentry},
       "optional, never required",
       true,
       "none: no socket I/O can be captured"},
      {"connection state",
       {{"tracepoint sock:inet_sock_set_state",
         {ProbeKind::kSockTracepoint},
         "sees every TCP state change, including connections closed by the peer"}},
       {},
       "",
       true,
       "none: connection lifecycle cannot be followed"},
      {"process lifecycle",
       {{"tracepoints sched:sched_process_exec/fork/exit",
         {ProbeKind::kSchedTracepoint},
         "process churn without polling /proc"}},
       {},
       "",
       true,
       "none: new and exited processes cannot be followed"},
      {"event transport",
       {{"BPF ring buffer",
         {ProbeKind::kRingBuffer},
         "one buffer shared by all CPUs, ordered, with reserve/commit"}},
       {},
       "",
       true,
       "none: kernel events cannot reach the agent"},
      {"TLS libraries (OpenSSL)",
       {{"uprobe session",
         {ProbeKind::kUprobe, ProbeKind::kUprobeSession},
         "SSL_read/SSL_write(_ex) entry for the buffer, return for the byte count, one link per "
         "library; the return probed only in traced processes"},
        {"uprobe + uretprobe",
         {ProbeKind::kUprobe, ProbeKind::kUretprobe},
         "SSL_read/SSL_write(_ex) entry for the buffer, return for the byte count"}},
       {},
       "",
       false,
       "not traced: TLS connections carry ciphertext only"},
      {"Go crypto/tls",
       {{"uprobes at return instructions",
         {ProbeKind::kUprobe},
         "uretprobes crash Go programs (goroutine stacks move), so each RET gets a uprobe"}},
       {ProbeKind::kUretprobe},
       "never used for Go",
       false,
       "not traced: Go TLS connections carry ciphertext only"},
      {"traceparent injection",
       {{"sk_msg + sockops",
         {ProbeKind::kSkMsg, ProbeKind::kSockops},
         "sockops enrolls client sockets, sk_msg rewrites outgoing HTTP/1.x requests"}},
       {ProbeKind::kProbeWriteUser},
       "not used: writes into application memory",
       false,
       "disabled: parents come from same-node tuple match and same-thread nesting only"},
      {"context in TCP header option",
       {{"sockops header option",
         {ProbeKind::kSockops, ProbeKind::kTcpHeaderOption},
         "kind 25 option on the segment starting each request: any protocol, TLS too; needs "
         "threadline (or OBI) at the receiver"}},
       {},
       "",
       false,
       "off: context crosses nodes only in traceparent headers (injection or SDKs)"},
      {"fast path acceleration",
       {{"fentry", {ProbeKind::kFentry}, "lowest-overhead kernel function hooks"},
        {"kprobe", {ProbeKind::kKprobe}, "kernel function hooks (fentry unavailable)"}},
       {},
       "",
       false,
       "none (tracepoints only)",
       false},
  };
  return specs;
}

const ProbeResult* FindResult(const std::vector<ProbeResult>& results, ProbeKind kind) {
  auto it = std::find_if(results.begin(), results.end(),
                         [kind](const ProbeResult& r) { return r.kind == kind; });
  return it == results.end() ? nullptr : &*it;
}

bool KindWorks(const std::vector<ProbeResult>& results, ProbeKind kind) {
  const ProbeResult* r = FindResult(results, kind);
  return r != nullptr && r->works();
}

std::string Availability(const std::vector<ProbeResult>& results, ProbeKind kind) {
  return std::string(ProbeKindName(kind)) + (KindWorks(results, kind) ? " yes" : " no");
}

// Why a mechanism cannot be used: each kind it needs that does not work, with the probe's
// own explanation ("sk_msg + sockops: sockops: attach failed: ...", "kprobe: attach failed").
std::string WhyUnusable(const std::vector<ProbeResult>& results, const Mechanism& m) {
  std::string out(m.name);
  bool first = true;
  for (ProbeKind kind : m.needs) {
    if (KindWorks(results, kind)) continue;
    const ProbeResult* r = FindResult(results, kind);
    out += first ? ": " : "; ";
    first = false;
    if (ProbeKindName(kind) != m.name) out += std::string(ProbeKindName(kind)) + ": ";
    out += r ? r->detail : "not probed";
  }
  return out;
}

}  // namespace

std::vector<HookChoice> ChooseHooks(const std::vector<ProbeResult>& results) {
  std::vector<HookChoice> choices;
  for (const HookSpec& spec : HookSpecs()) {
    HookChoice choice;
    choice.hook = spec.hook;
    choice.required = spec.required;

    const Mechanism* chosen = nullptr;
    for (const Mechanism& m : spec.mechanisms) {
      if (std::all_of(m.needs.begin(), m.needs.end(),
                      [&](ProbeKind k) { return KindWorks(results, k); })) {
        chosen = &m;
        break;
      }
    }

    std::string alternatives;
    auto add_alternative = [&](const std::string& text) {
      if (!alternatives.empty()) alternatives += ", ";
      alternatives += text;
    };
    // With nothing chosen, every mechanism and why it fails is already in the reason.
    for (const Mechanism& m : spec.mechanisms) {
      if (chosen == nullptr || &m == chosen) continue;
      bool works = std::all_of(m.needs.begin(), m.needs.end(),
                               [&](ProbeKind k) { return KindWorks(results, k); });
      add_alternative(std::string(m.name) + (works ? " yes" : " no"));
    }
    for (ProbeKind kind : spec.listed_alternatives) add_alternative(Availability(results, kind));
    if (!alternatives.empty() && !spec.alternatives_note.empty()) {
      alternatives += " (" + std::string(spec.alternatives_note) + ")";
    }
    choice.alternatives = alternatives;

    if (chosen != nullptr) {
      choice.chosen = chosen->name;
      choice.active = true;
      choice.reason = chosen->why;
    } else {
      choice.chosen = spec.fallback;
      choice.active = false;
      choice.degraded = spec.fallback_loses_function;
      std::string missing;
      for (const Mechanism& m : spec.mechanisms) {
        if (!missing.empty()) missing += " | ";
        missing += WhyUnusable(results, m);
      }
      choice.reason = missing;
    }
    choices.push_back(std::move(choice));
  }
  return choices;
}

}  // namespace threadline
