#include "agent/capabilities/capability_json.h"

#include <cstdio>

#include "exporter/json_lines.h"

namespace threadline {

std::vector<std::string> CapabilityLimitations(const CapabilityReport& r) {
  std::vector<std::string> out;
  if (!r.can_run) out.push_back("cannot run: " + r.cannot_run_reason);
  if (!r.environment_error.empty()) out.push_back("BPF environment incomplete: " + r.environment_error);
  if (!r.btf)
    out.push_back("no kernel BTF (/sys/kernel/btf/vmlinux): CO-RE programs cannot be relocated for this kernel");
  if (r.lockdown == "confidentiality") {
    out.push_back("kernel lockdown (confidentiality): BPF may not read kernel memory, so sockets "
                  "cannot be resolved from task->files in the kernel");
  }
  if (!r.tracefs_root) out.push_back("tracefs not mounted: tracepoint ids cannot be read");
  if (!r.cgroup2_root) out.push_back("no cgroup v2 mount: sockops/sk_msg (injection) cannot attach");
  // Hooks without a working mechanism, with what their fallback loses.
  for (const auto& c : r.choices) {
    if (c.active || !c.degraded) continue;
    out.push_back(c.hook + ": " + c.chosen + (c.reason.empty() ? "" : " (" + c.reason + ")"));
  }
  return out;
}

std::vector<std::string> CapabilityNotes(const CapabilityReport& r) {
  std::vector<std::string> out;
  if (r.lockdown == "integrity")
    out.push_back("kernel lockdown (integrity): bpf_probe_write_user is refused; threadline does not need it");
  for (const auto& p : r.results) {
    if (p.works() || (p.kind != ProbeKind::kKprobe && p.kind != ProbeKind::kFentry)) continue;
    out.push_back(p.name + " unavailable (" + p.detail + "): an optional acceleration, tracepoints are used");
  }
  return out;
}

namespace {
const char* Bool(bool b) { return b ? "true" : "false"; }

std::string JsonString(std::string_view text) {
  std::string out;
  AppendJsonString(text, out);
  return out;
}

std::string JsonStrings(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    AppendJsonString(items[i], out);
  }
  return out + "]";
}
}  // namespace

std::string CapabilityReportJson(const CapabilityReport& r) {
  std::string j = "{";
  j += "\"kernel_release\":" + JsonString(r.kernel_release);
  j += ",\"btf\":" + std::string(Bool(r.btf));
  j += ",\"lockdown\":" + JsonString(r.lockdown);
  j += ",\"cgroup2_root\":" + (r.cgroup2_root ? JsonString(*r.cgroup2_root) : std::string("null"));
  j += ",\"tracefs_root\":" + (r.tracefs_root ? JsonString(*r.tracefs_root) : std::string("null"));
  j += ",\"environment_error\":" + JsonString(r.environment_error);
  j += ",\"can_run\":" + std::string(Bool(r.can_run));
  j += ",\"cannot_run_reason\":" + JsonString(r.cannot_run_reason);
  char elapsed[32];
  std::snprintf(elapsed, sizeof(elapsed), "%.1f", r.elapsed_ms);
  j += ",\"probe_elapsed_ms\":" + std::string(elapsed);
  j += ",\"probes\":[";
  for (size_t i = 0; i < r.results.size(); ++i) {
    const auto& p = r.results[i];
    j += i ? ",{" : "{";
    j += "\"kind\":" + JsonString(p.name) + ",\"target\":" + JsonString(p.target);
    j += ",\"available\":" + std::string(Bool(p.available)) + ",\"fired\":" + Bool(p.fired);
    j += ",\"works\":" + std::string(Bool(p.works())) + ",\"detail\":" + JsonString(p.detail);
    j += ",\"errno\":" + std::to_string(p.error_code) + "}";
  }
  j += "],\"hooks\":[";
  for (size_t i = 0; i < r.choices.size(); ++i) {
    const auto& c = r.choices[i];
    j += i ? ",{" : "{";
    j += "\"hook\":" + JsonString(c.hook) + ",\"chosen\":" + JsonString(c.chosen);
    j += ",\"active\":" + std::string(Bool(c.active)) + ",\"required\":" + Bool(c.required);
    j += ",\"degraded\":" + std::string(Bool(c.degraded));
    j += ",\"alternatives\":" + JsonString(c.alternatives) + ",\"reason\":" + JsonString(c.reason) + "}";
  }
  j += "],\"limitations\":" + JsonStrings(CapabilityLimitations(r));
  j += ",\"notes\":" + JsonStrings(CapabilityNotes(r)) + "}";
  return j;
}

}  // namespace threadline
