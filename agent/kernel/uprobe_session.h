// Uprobe sessions (kernel 6.13+): one uprobe_multi link puts a program at several offsets of one
// file, for every process (pid 0), and with the session attach type the same program also runs
// at the return of the calls whose entry returned 0 (1: no return probe, no return trap).
// libbpf 1.1 (Debian 12) knows neither uprobe_multi links nor sessions, so the link is made with
// the bpf(2) syscall directly; the program must have been loaded with
// expected_attach_type = kBpfTraceUprobeSession (CaptureProgram does that for tl_ssl_session).
// Whether the kernel supports it is learnt by attaching (AttachUprobeSession fails with EINVAL
// or similar on older kernels); the caller falls back to uprobe + uretprobe pairs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "agent/common/unique_fd.h"

namespace threadline {

// BPF_TRACE_UPROBE_SESSION of enum bpf_attach_type (the kernel's UAPI include/uapi/linux/bpf.h,
// 6.13+), absent from older userspace headers.
inline constexpr uint32_t kBpfTraceUprobeSession = 57;

// A session link of `prog_fd` at `offsets` of the file at `path` (cookies[i] for offsets[i]),
// for every process. The link lives as long as the returned fd.
Result<UniqueFd> AttachUprobeSession(int prog_fd, const std::string& path,
                                     const std::vector<uint64_t>& offsets,
                                     const std::vector<uint64_t>& cookies);

}  // namespace threadline
