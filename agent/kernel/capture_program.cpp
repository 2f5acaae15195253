#include "agent/kernel/capture_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <tuple>
#include <utility>

#include "agent/kernel/uprobe_session.h"
#include "capture.skel.h"

namespace threadline {

namespace {

struct HookSpec {
  const char* program;
  bool required;  // the agent refuses to start without it
};

// Every tracepoint program of capture.bpf.c and whether the agent can do its job without it
// (the TLS uprobes are not here: they attach per library file, see tls_attacher.h). The syscall
// set is the base path; dup2/dup3 only speed up noticing fd reuse (conn__get notices it anyway),
// and TCP state only enriches close reasons.
constexpr HookSpec kHookSpecs[] = {
    // Receiving syscalls and accept have no entry program (capture.bpf.c, args__at_exit).
    {"tl_exit_read", true},
    {"tl_enter_write", true},     {"tl_exit_write", true},
    {"tl_exit_readv", true},
    {"tl_enter_writev", true},    {"tl_exit_writev", true},
    {"tl_enter_sendto", true},    {"tl_exit_sendto", true},
    {"tl_exit_recvfrom", true},
    {"tl_enter_sendmsg", true},   {"tl_exit_sendmsg", true},
    {"tl_exit_recvmsg", true},
    {"tl_enter_sendmmsg", true},  {"tl_exit_sendmmsg", true},
    {"tl_exit_recvmmsg", true},
    {"tl_enter_sendfile64", true}, {"tl_exit_sendfile64", true},
    {"tl_enter_connect", true},   {"tl_exit_connect", true},
    {"tl_exit_accept", true},
    {"tl_exit_accept4", true},
    {"tl_enter_close", true},
    {"tl_enter_dup2", false},     {"tl_enter_dup3", false},
    {"tl_inet_sock_set_state", false},
    {"tl_sched_process_exec", true},
    {"tl_sched_process_fork", true},
    {"tl_sched_process_exit", true},
};

bool IsPowerOfTwo(uint64_t v) { return v && !(v & (v - 1)); }

// The kernel's boot id (a random UUID per boot, the same for every process and container of this
// node) as the salt of the ids the kernel derives (ids__derive in bpf/inject/ids.bpf.h): every
// agent on the node derives alike, other nodes differently. {0, 0} when it cannot be read.
std::pair<uint64_t, uint64_t> NodeIdSalt() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string text;
  std::getline(f, text);
  uint64_t v[2] = {0, 0};
  int nibbles = 0;
  for (char c : text) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0 || nibbles >= 32) continue;
    v[nibbles / 16] = (v[nibbles / 16] << 4) | static_cast<uint64_t>(d);
    ++nibbles;
  }
  return {v[0], v[1]};
}

}  // namespace

uint64_t KernelDrops::Total(int reason) const {
  uint64_t total = 0;
  for (const auto& cpu : per_cpu) total += cpu[reason];
  return total;
}

std::string_view DropReasonName(int reason) {
  switch (reason) {
    case TL_DROP_DATA_RING_FULL: return "data_ring_full";
    case TL_DROP_CTRL_RING_FULL: return "lifecycle_ring_full";
    case TL_DROP_CONN_MAP_FULL: return "conn_map_full";
    case TL_DROP_ARGS_MAP_FULL: return "args_map_full";
    case TL_DROP_READ_FAULT: return "read_fault";
    case TL_DROP_MMSG_LIMIT: return "mmsg_limit";
    case TL_DROP_SELECT_MAP_FULL: return "select_map_full";
    case TL_DROP_TLS_CALLS_FULL: return "tls_calls_full";
    case TL_DROP_TLS_NO_CONN: return "tls_no_conn";
    default: return "unknown";
  }
}

void CaptureProgram::SkelDeleter::operator()(capture_bpf* s) const { capture_bpf__destroy(s); }

CaptureProgram::CaptureProgram(const CaptureConfig& config) : config_(config) {}
CaptureProgram::~CaptureProgram() {
  DestroyLinksConcurrently(ReleaseLinks());  // detach before the programs and maps go
  if (selected_hint_) munmap(selected_hint_, selected_hint_bytes_);
  skel_.reset();
}

namespace {

// Words of the selection hint bitmap: one bit per possible tgid (kernel.pid_max, at most the
// kernel's PID_MAX_LIMIT of 4M: 512 KiB). A tgid past it (pid_max raised later) still works,
// through the hash.
size_t SelectedHintWords() {
  constexpr uint64_t kPidMaxLimit = 4u << 20;
  uint64_t pid_max = kPidMaxLimit;
  std::ifstream in("/proc/sys/kernel/pid_max");
  if (uint64_t v = 0; in >> v && v > 0) pid_max = std::min(v, kPidMaxLimit);
  return static_cast<size_t>((pid_max + 63) / 64);
}

}  // namespace

bool TaskStorageForSyscallArgs(std::string* why) {
  auto missing = [why](std::string what) {
    if (why) *why = std::move(what);
    return false;
  };
  if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_TASK_STORAGE, nullptr) != 1)
    return missing("no task storage maps");
  // kprobe: the TLS uprobes keep the thread's SSL-call byte in the same storage.
  const std::pair<bpf_prog_type, const char*> kinds[] = {{BPF_PROG_TYPE_TRACEPOINT, "tracepoint"},
                                                          {BPF_PROG_TYPE_SK_MSG, "sk_msg"},
                                                          {BPF_PROG_TYPE_KPROBE, "kprobe"}};
  for (const auto& [type, kind] : kinds) {
    if (libbpf_probe_bpf_helper(type, BPF_FUNC_task_storage_get, nullptr) != 1)
      return missing(std::string("no bpf_task_storage_get in ") + kind + " programs");
    if (libbpf_probe_bpf_helper(type, BPF_FUNC_get_current_task_btf, nullptr) != 1)
      return missing(std::string("no bpf_get_current_task_btf in ") + kind + " programs");
  }
  return true;
}

Result<std::unique_ptr<CaptureProgram>> CaptureProgram::Create(const CaptureConfig& config) {
  if (!IsPowerOfTwo(config.capture_bytes) || config.capture_bytes > TL_MAX_CAPTURE)
    return Error{"capture bytes must be a power of two <= " + std::to_string(TL_MAX_CAPTURE)};
  if (!IsPowerOfTwo(config.ring_buffer_bytes) || config.ring_buffer_bytes < 4096)
    return Error{"ring buffer size must be a power of two >= 4096"};
  std::unique_ptr<CaptureProgram> p(new CaptureProgram(config));  // private constructor
  RETURN_IF_ERROR(p->Open());
  RETURN_IF_ERROR(p->Load());
  RETURN_IF_ERROR(p->Attach());
  return p;
}

Status CaptureProgram::Open() {
  skel_.reset(capture_bpf__open());
  if (!skel_) return Error::FromErrno("open capture BPF object", errno);
  auto* ro = skel_->rodata;
  ro->agent_tgid = config_.agent_tgid;
  ro->agent_exe_ino = config_.agent_exe_ino;
  ro->agent_exe_dev = config_.agent_exe_dev;
  ro->filter_by_process = !config_.trace_all;
  ro->filter_by_cgroup = config_.filter_by_cgroup;
  ro->port_filter = !config_.ports.empty();
  ro->capture_bytes = config_.capture_bytes;
  ro->sample_threshold = config_.sample_threshold;
  std::tie(ro->id_salt_lo, ro->id_salt_hi) = NodeIdSalt();
  // Data events stop at 3/4 full so lifecycle events (open/close/exit) still find room.
  ro->ring_data_limit = static_cast<uint64_t>(config_.ring_buffer_bytes) * 3 / 4;
  ro->ring_wakeup_bytes = config_.ring_wakeup_bytes();
  std::string no_task_storage = "turned off (CaptureConfig::args_task_storage)";
  args_task_storage_ = config_.args_task_storage && TaskStorageForSyscallArgs(&no_task_storage);
  ro->args_task_storage = args_task_storage_;
  if (args_task_storage_) {
    spdlog::info("syscall arguments in flight: task storage");
  } else {
    spdlog::info("syscall arguments in flight: hash by thread id ({})", no_task_storage);
  }

  // The TLS uprobe session program (bpf/capture/tls.bpf.h, agent/kernel/uprobe_session.h):
  // the kernel accepts the attach type at load on any version (kprobe programs' attach types are
  // only checked at attach), and the TLS attacher falls back to uprobe + uretprobe pairs when the
  // session link fails.
  bpf_program__set_expected_attach_type(skel_->progs.tl_ssl_session,
                                        static_cast<bpf_attach_type>(kBpfTraceUprobeSession));
  ncpus_ = libbpf_num_possible_cpus();
  if (ncpus_ <= 0) return Error::FromErrno("count possible CPUs", -ncpus_);
  int err = bpf_map__set_max_entries(skel_->maps.events, config_.ring_buffer_bytes);
  if (!err) err = bpf_map__set_max_entries(skel_->maps.data_scratch, ncpus_);
  if (!err) err = bpf_map__set_max_entries(skel_->maps.conns, config_.max_connections);
  if (!err) err = bpf_map__set_max_entries(skel_->maps.sock_conns, config_.max_connections);
  selected_hint_words_ = SelectedHintWords();
  if (!err) err = bpf_map__set_max_entries(skel_->maps.selected_hint, static_cast<uint32_t>(selected_hint_words_));
  // The stash map not used stays, as small as it can be (the code that names it is dead under
  // the rodata switch, but libbpf 1.1 still needs every map it names to exist).
  if (args_task_storage_) {
    if (!err) err = bpf_map__set_max_entries(skel_->maps.io_args, 1);
  } else {
    if (!err) err = bpf_map__set_type(skel_->maps.io_args_task, BPF_MAP_TYPE_ARRAY);
    if (!err) err = bpf_map__set_map_flags(skel_->maps.io_args_task, 0);
    if (!err) err = bpf_map__set_max_entries(skel_->maps.io_args_task, 1);
  }
  if (err) return Error::FromErrno("size capture maps", err);
  return OkStatus();
}

Status CaptureProgram::Load() {
  int err = capture_bpf__load(skel_.get());
  if (err) return Error::FromErrno("load capture BPF programs (run with --log-level=debug for the verifier log)", err);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  selected_hint_bytes_ = (selected_hint_words_ * sizeof(uint64_t) + page - 1) / page * page;
  void* hint = mmap(nullptr, selected_hint_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED,
                    bpf_map__fd(skel_->maps.selected_hint), 0);
  if (hint == MAP_FAILED) return Error::FromErrno("map the selection hint", errno);
  selected_hint_ = static_cast<uint64_t*>(hint);
  for (uint16_t port : config_.ports) {
    uint8_t one = 1;
    if (bpf_map__update_elem(skel_->maps.ports, &port, sizeof(port), &one, sizeof(one), BPF_ANY))
      return Error::FromErrno("set port filter", errno);
  }
  return OkStatus();
}

Status CaptureProgram::Attach() {
  for (const HookSpec& spec : kHookSpecs) {
    AttachedHook hook;
    hook.program = spec.program;
    hook.required = spec.required;
    bpf_program* prog = bpf_object__find_program_by_name(skel_->obj, spec.program);
    if (!prog) return Error{std::string("capture object has no program ") + spec.program};
    hook.target = bpf_program__section_name(prog);
    bpf_link* link = bpf_program__attach(prog);
    if (!link) {
      hook.error = std::strerror(errno);
      if (spec.required)
        return Error::FromErrno(std::string("attach ") + spec.program + " (" + hook.target + ")", errno);
      spdlog::warn("optional hook {} ({}) not attached: {}", spec.program, hook.target, hook.error);
    } else {
      hook.attached = true;
      links_.emplace_back(link);
    }
    hooks_.push_back(std::move(hook));
  }
  return OkStatus();
}

int CaptureProgram::ring_buffer_fd() const { return bpf_map__fd(skel_->maps.events); }

bpf_program* CaptureProgram::FindProgram(const char* name) const {
  return bpf_object__find_program_by_name(skel_->obj, name);
}

int CaptureProgram::MapFd(const char* name) const {
  bpf_map* map = bpf_object__find_map_by_name(skel_->obj, name);
  return map ? bpf_map__fd(map) : -1;
}

void CaptureProgram::SetTraceContextUser(ContextUser user, bool on) {
  const uint32_t bit = static_cast<uint32_t>(user);
  context_users_ = on ? (context_users_ | bit) : (context_users_ & ~bit);
  __atomic_store_n(&skel_->bss->tl_inject_on, context_users_ ? 1u : 0u, __ATOMIC_RELEASE);
}

void CaptureProgram::SetTcpOptionOn(bool on) {
  __atomic_store_n(&skel_->bss->tl_tcpopt_on, on ? 1u : 0u, __ATOMIC_RELEASE);
}

void CaptureProgram::SetExecClassificationOn(bool on) {
  __atomic_store_n(&skel_->bss->tl_ctx_classify_on, on ? 1u : 0u, __ATOMIC_RELEASE);
}

void CaptureProgram::SetNodeHelpersOn(bool on) {
  __atomic_store_n(&skel_->bss->tl_node_helpers, on ? 1u : 0u, __ATOMIC_RELEASE);
}

// Atomic: the kernel sets and clears bits of the same words (a fork inheriting selection, an
// exec of the agent, an exit).
void CaptureProgram::SetSelectedHint(uint32_t tgid, bool on) {
  if (tgid / 64 >= selected_hint_words_) return;  // past the bitmap: the programs use the hash
  const uint64_t bit = uint64_t{1} << (tgid % 64);
  if (on)
    __atomic_fetch_or(&selected_hint_[tgid / 64], bit, __ATOMIC_SEQ_CST);
  else
    __atomic_fetch_and(&selected_hint_[tgid / 64], ~bit, __ATOMIC_SEQ_CST);
}

Status CaptureProgram::Select(uint32_t tgid, uint32_t flags) {
  tl_selection sel{flags, 0};
  SetSelectedHint(tgid, true);  // before the entry: a program may never see an entry without its bit
  if (bpf_map__update_elem(skel_->maps.selected, &tgid, sizeof(tgid), &sel, sizeof(sel), BPF_ANY))
    return Error::FromErrno("select pid " + std::to_string(tgid), errno);
  return OkStatus();
}

Status CaptureProgram::Unselect(uint32_t tgid) {
  if (bpf_map__delete_elem(skel_->maps.selected, &tgid, sizeof(tgid), 0)) {
    if (errno != ENOENT) return Error::FromErrno("unselect pid " + std::to_string(tgid), errno);
    return OkStatus();  // no entry: the bit may belong to one the kernel is adding
  }
  SetSelectedHint(tgid, false);  // after the entry is gone
  return OkStatus();
}

bool CaptureProgram::ProcessSelected(uint32_t tgid) const {
  if (tgid == config_.agent_tgid) return false;
  tl_selection sel{};
  const bool found = bpf_map__lookup_elem(skel_->maps.selected, &tgid, sizeof(tgid), &sel, sizeof(sel), 0) == 0;
  if (found && (sel.flags & TL_SEL_EXCLUDE)) return false;
  return config_.trace_all || (found && (sel.flags & TL_SEL_TRACE));
}

bool CaptureProgram::CgroupSelected(uint64_t cgroup_id) const {
  uint8_t on = 0;
  return bpf_map__lookup_elem(skel_->maps.selected_cgroups, &cgroup_id, sizeof(cgroup_id), &on, sizeof(on), 0) == 0;
}

Status CaptureProgram::SelectCgroup(uint64_t cgroup_id) {
  const uint8_t on = 1;
  if (bpf_map__update_elem(skel_->maps.selected_cgroups, &cgroup_id, sizeof(cgroup_id), &on, sizeof(on), BPF_ANY))
    return Error::FromErrno("select cgroup " + std::to_string(cgroup_id), errno);
  return OkStatus();
}

Status CaptureProgram::UnselectCgroup(uint64_t cgroup_id) {
  if (bpf_map__delete_elem(skel_->maps.selected_cgroups, &cgroup_id, sizeof(cgroup_id), 0) && errno != ENOENT)
    return Error::FromErrno("unselect cgroup " + std::to_string(cgroup_id), errno);
  return OkStatus();
}

void CaptureProgram::ForgetConnection(uint32_t tgid, int32_t fd) {
  tl_fd_key key{tgid, fd};
  bpf_map__delete_elem(skel_->maps.conns, &key, sizeof(key), 0);
}

size_t CaptureProgram::SweepConnections(const std::function<bool(uint32_t)>& is_gone) {
  std::vector<tl_fd_key> doomed;
  tl_fd_key key{}, next{};
  const void* prev = nullptr;
  int fd = bpf_map__fd(skel_->maps.conns);
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    if (is_gone(next.tgid)) doomed.push_back(next);
    key = next;
    prev = &key;
  }
  for (const auto& k : doomed) bpf_map_delete_elem(fd, &k);
  return doomed.size();
}

size_t CaptureProgram::TrackedConnections() const {
  size_t n = 0;
  tl_fd_key key{}, next{};
  const void* prev = nullptr;
  int fd = bpf_map__fd(skel_->maps.conns);
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    ++n;
    key = next;
    prev = &key;
  }
  return n;
}

void CaptureProgram::SetShedFraction(double fraction) {
  const double f = fraction < 0 ? 0 : fraction > 1 ? 1 : fraction;
  const uint64_t below = static_cast<uint64_t>(f * 4294967296.0);  // of the 32-bit hash space
  __atomic_store_n(&skel_->bss->tl_shed_below, below, __ATOMIC_RELEASE);
}

tl_shed_counts CaptureProgram::ReadShedCounts() const {
  tl_shed_counts total{};
  std::vector<tl_shed_counts> values(ncpus_);
  uint32_t zero = 0;
  if (bpf_map__lookup_elem(skel_->maps.shed_counts, &zero, sizeof(zero), values.data(),
                           values.size() * sizeof(tl_shed_counts), 0))
    return total;
  for (const auto& v : values) {
    total.conns += v.conns;
    total.bytes += v.bytes;
    total.established += v.established;
    total.resumed += v.resumed;
    total.requests += v.requests;
  }
  return total;
}

uint64_t CaptureProgram::ProgramRunTimeNs() const {
  uint64_t total = 0;
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel_->obj) {
    const int fd = bpf_program__fd(prog);
    if (fd < 0) continue;
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) total += info.run_time_ns;
  }
  return total;
}

KernelDrops CaptureProgram::ReadDrops() const {
  KernelDrops out;
  out.per_cpu.assign(ncpus_, {});
  std::vector<uint64_t> values(ncpus_);
  for (uint32_t reason = 0; reason < TL_DROP__COUNT; ++reason) {
    if (bpf_map__lookup_elem(skel_->maps.drops, &reason, sizeof(reason), values.data(),
                             values.size() * sizeof(uint64_t), 0))
      continue;
    for (int cpu = 0; cpu < ncpus_; ++cpu) out.per_cpu[cpu][reason] = values[cpu];
  }
  return out;
}

}  // namespace threadline
