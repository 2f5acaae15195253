// The capture BPF object (bpf/capture.bpf.c) loaded, configured and attached.
//
// Owns the skeleton and every link; destroying it detaches everything. Hooks are a data table
// (hook_specs in the .cpp): each names its program, whether the agent can run without it, and
// what it is for, so the attach code is one loop and the log says exactly what was chosen.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agent/common/bpf_handles.h"
#include "agent/common/result.h"
#include "threadline/events.h"

struct capture_bpf;
struct bpf_program;

namespace threadline {

struct CaptureConfig {
  uint32_t agent_tgid = 0;          // never traced
  // The agent's executable: other processes that exec it (other agents) are excluded in the
  // kernel at exec. 0: no such exclusion. Kernel dev_t encoding (major << 20 | minor).
  uint64_t agent_exe_ino = 0;
  uint32_t agent_exe_dev = 0;
  bool trace_all = true;            // false: only tgids added with Select()
  // true: only tasks in cgroups added with SelectCgroup() (AND the rule above).
  bool filter_by_cgroup = false;
  std::vector<uint16_t> ports;      // non-empty: only connections with one of these ports
  uint32_t capture_bytes = 4096;    // payload prefix per data event; power of two, <= 16384
  uint32_t ring_buffer_bytes = 16u << 20;  // power of two, >= page size
  // true: events are committed without waking the reader until the ring is 1/16 full (the
  // reader polls on a timer: RingConsumer::Poll); false: the kernel's default, a wake-up
  // (an IPI) for nearly every event. See ring_wakeup_bytes in bpf/capture/maps.bpf.h.
  bool batch_wakeups = true;
  // The fill at which the reader is woken; 0: every event wakes it.
  uint32_t ring_wakeup_bytes() const { return batch_wakeups ? ring_buffer_bytes / 16 : 0; }
  uint32_t max_connections = 65536; // kernel connection table size
  // Traces the kernel starts (traceparent injection) are sampled iff their trace id's 56 low
  // bits are >= this: TraceIdRatioSampler::ThresholdFor(sampling.ratio), agent/spans/sampler.h.
  // The injection object takes it from here too. 0: every trace.
  uint64_t sample_threshold = 0;
  // Where a send's arguments wait for its exit: true, in task storage when the kernel offers
  // it to tracepoint, sk_msg and kprobe programs (probed at load, TaskStorageForSyscallArgs),
  // else the pid_tgid hash; false: the hash always (tests and benchmarks compare the two). With
  // task storage, the socket programs also skip the tls_calls lookup on threads that have no
  // SSL_* call stashed (a byte in the same storage).
  bool args_task_storage = true;
};

// Whether this kernel gives task storage (BPF_MAP_TYPE_TASK_STORAGE, bpf_task_storage_get,
// bpf_get_current_task_btf) to tracepoint and sk_msg programs, the two kinds that read a
// syscall's stashed arguments, and to kprobe programs (the TLS uprobes, which keep the thread's
// "SSL call stashed" byte there). `why` (optional) gets the first thing missing.
bool TaskStorageForSyscallArgs(std::string* why = nullptr);

struct AttachedHook {
  std::string program;
  std::string target;  // e.g. "tracepoint/syscalls/sys_enter_write"
  bool required = false;
  bool attached = false;
  std::string error;
};

// Per-CPU, per-reason counts of what the kernel side dropped (enum tl_drop_reason).
struct KernelDrops {
  std::vector<std::array<uint64_t, TL_DROP__COUNT>> per_cpu;
  uint64_t Total(int reason) const;
};

std::string_view DropReasonName(int reason);

class CaptureProgram {
 public:
  static Result<std::unique_ptr<CaptureProgram>> Create(const CaptureConfig& config);
  ~CaptureProgram();
  CaptureProgram(const CaptureProgram&) = delete;
  CaptureProgram& operator=(const CaptureProgram&) = delete;

  int ring_buffer_fd() const;
  // A program of the object, for hooks attached outside the table above (the TLS uprobes,
  // attached per library file by TlsAttacher). Null if there is none by that name.
  bpf_program* FindProgram(const char* name) const;
  // Traceparent injection (agent/kernel/injector.h) and the TCP header option
  // (agent/kernel/tcp_option_program.h): the fd of a map of this object they share (-1 if none
  // by that name), and the switch of the trace ids the capture path reports for them
  // (bpf/capture/trace_ctx.bpf.h): on while any user needs it (injection after its canary, the
  // TCP option while it is on), so one switching off does not switch the other off.
  int MapFd(const char* name) const;
  enum class ContextUser : uint32_t { kInjection = 1, kTcpOption = 2 };
  void SetTraceContextUser(ContextUser user, bool on);
  // The capture path's side of the TCP header option (bpf/capture/tcp_option.bpf.h).
  void SetTcpOptionOn(bool on);
  // The Node async-context helper is loaded in some process (node_markers has entries): write
  // exits then look for its markers (bpf/capture/trace_ctx.bpf.h).
  void SetNodeHelpersOn(bool on);
  // Execs are looked at by userspace (is it Go?), which clears "ctx_unclassified" for each: the
  // kernel may fill it from now on (bpf/capture/ctx.bpf.h).
  void SetExecClassificationOn(bool on);
  const std::vector<AttachedHook>& hooks() const { return hooks_; }
  const CaptureConfig& config() const { return config_; }
  // True when the syscall argument stash is in task storage (bpf/capture/shared.bpf.h,
  // args_task_storage): the objects that share the capture maps must load with the same.
  bool args_task_storage() const { return args_task_storage_; }

  // Selection map: which processes produce events (flags TL_SEL_*).
  Status Select(uint32_t tgid, uint32_t flags = TL_SEL_TRACE | TL_SEL_INHERIT);
  Status Unselect(uint32_t tgid);
  // Does the selection map trace this process (as proc__selected decides, less the cgroup
  // filter, which is CgroupSelected's)?
  bool ProcessSelected(uint32_t tgid) const;
  bool CgroupSelected(uint64_t cgroup_id) const;
  // Cgroup selection map (CaptureConfig::filter_by_cgroup): cgroup v2 ids (the directory's
  // inode number, what bpf_get_current_cgroup_id returns) whose tasks are traced.
  Status SelectCgroup(uint64_t cgroup_id);
  Status UnselectCgroup(uint64_t cgroup_id);
  // Kernel connection table upkeep, for sockets that went away without a close() we saw.
  void ForgetConnection(uint32_t tgid, int32_t fd);
  // Deletes every tracked fd of processes for which `is_gone(tgid)` is true; returns how many.
  size_t SweepConnections(const std::function<bool(uint32_t)>& is_gone);
  size_t TrackedConnections() const;

  KernelDrops ReadDrops() const;

  // Hands over the links of the hooks above (the programs and maps stay until destruction),
  // so the owner can detach them together with the uprobes (DestroyLinksConcurrently).
  std::vector<BpfLink> ReleaseLinks() { return std::exchange(links_, {}); }

  // Load shedding under the CPU budget (bpf/capture/shed.bpf.h): new connections whose tuple
  // hash falls in this fraction [0, 1] of the hash space are not captured.
  void SetShedFraction(double fraction);
  // What shed connections did not have captured, summed over CPUs.
  tl_shed_counts ReadShedCounts() const;
  // Nanoseconds the kernel spent running this object's programs (bpf_prog_info.run_time_ns,
  // counted only while kernel.bpf_stats_enabled is on; 0 otherwise).
  uint64_t ProgramRunTimeNs() const;

 private:
  explicit CaptureProgram(const CaptureConfig& config);
  Status Open();
  Status Load();
  Status Attach();

  CaptureConfig config_;
  bool args_task_storage_ = false;
  struct SkelDeleter {
    void operator()(capture_bpf* s) const;
  };
  std::unique_ptr<capture_bpf, SkelDeleter> skel_;
  std::vector<BpfLink> links_;
  std::vector<AttachedHook> hooks_;
  int ncpus_ = 1;
  uint32_t context_users_ = 0;  // ContextUser bits
  // The kernel's "selected_hint" bitmap (shared.bpf.h), mapped: bit tgid is set while
  // "selected" may hold an entry for tgid, so the programs skip the hash for all others.
  uint64_t* selected_hint_ = nullptr;
  size_t selected_hint_words_ = 0;
  size_t selected_hint_bytes_ = 0;  // the mapping's length
  void SetSelectedHint(uint32_t tgid, bool on);
};

}  // namespace threadline
