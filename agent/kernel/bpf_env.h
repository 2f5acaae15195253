// The process-wide setup every BPF user in the agent relies on, and read-only facts about the
// kernel that the capability report shows.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "agent/common/result.h"

namespace threadline {

// Idempotent. Makes tracefs reachable (EnsureTracefs), raises RLIMIT_MEMLOCK to infinity when
// allowed (kernels before 5.11 charge BPF maps to it), and routes libbpf's messages to spdlog:
// warnings at warn, everything else at debug. Fails only when tracefs cannot be made
// reachable, since no tracepoint could then be attached.
Status PrepareBpfEnvironment();

// Routes libbpf's messages to spdlog (the part of PrepareBpfEnvironment that cannot fail).
void InstallLibbpfLogging();

// Mount point of the cgroup v2 hierarchy from /proc/self/mounts (e.g. /sys/fs/cgroup, or
// /sys/fs/cgroup/unified on hybrid hosts); nullopt when none is mounted.
std::optional<std::string> CgroupV2Root();

// The active kernel lockdown mode ("none", "integrity", "confidentiality") from
// /sys/kernel/security/lockdown, or "unknown" when that file cannot be read (no lockdown LSM,
// or securityfs not mounted).
std::string LockdownMode();

// Whether the kernel exposes its own BTF (/sys/kernel/btf/vmlinux), which CO-RE and tp_btf
// need.
bool HasKernelBtf();

// While alive, libbpf messages emitted on the constructing thread are collected here and
// logged at debug only. For probes whose failure is an expected answer (the capability
// report), not a problem to warn about. Nests; not movable.
class LibbpfMessageCapture {
 public:
  LibbpfMessageCapture();
  ~LibbpfMessageCapture();
  LibbpfMessageCapture(const LibbpfMessageCapture&) = delete;
  LibbpfMessageCapture& operator=(const LibbpfMessageCapture&) = delete;

  // Everything captured so far, messages concatenated as libbpf printed them.
  const std::string& text() const { return text_; }
  void Append(const std::string& message) { text_ += message; }

 private:
  std::string text_;
  LibbpfMessageCapture* previous_;
};

// The most telling line of what libbpf printed while one operation failed with `err`: the
// verifier's reason when there is a program load log, else libbpf's last per-program message
// ("failed to create kprobe 'x+0x0' perf event: ..."), minus whatever only restates err.
// Empty when libbpf said nothing useful.
std::string LibbpfFailureHint(std::string_view messages, int err);

}  // namespace threadline
