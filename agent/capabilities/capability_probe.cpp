#include "agent/capabilities/capability_probe.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent/capabilities/hook_choices.h"
#include "agent/capabilities/probe_triggers.h"
#include "agent/common/bpf_handles.h"
#include "agent/common/unique_fd.h"
#include "agent/kernel/bpf_env.h"
#include "agent/kernel/uprobe_session.h"
#include "agent/kernel/tracefs.h"
#include "probe.skel.h"

namespace threadline {
namespace {

using capabilities::ErrnoText;
using ProbeSkeleton = SkeletonPtr<probe_bpf, probe_bpf__destroy>;
using Clock = std::chrono::steady_clock;

enum class Attach {
  kAuto,       // bpf_program__attach: the SEC() name says where
  kUprobe,     // a function of our own binary, pid-filtered
  kUretprobe,
  kUprobeSession,  // a uprobe_multi session link on a function of our own binary
  kSkMsg,      // verdict program of probe_sockhash, holding one loopback socket of ours
  kSockops,    // a cgroup created for the probe
};

enum class Trigger {
  kGetppid,
  kNanosleep,
  kLoopbackConnect,
  kForkAndExit,
  kUprobeCall,
  kUretprobeCall,
  kUprobeSessionCalls,
  kSkMsgSend,
  kSockopsChild,
  kHdrOptExchange,
  kRingBufferRecord,
  kWriteUser,
};

// One row per kind: which programs of bpf/probe.bpf.c it loads, which optional maps it needs,
// how it attaches and what makes it fire. Everything not listed is left out of the load, so a
// kind the kernel refuses cannot take the others down with it.
struct ProbeSpec {
  ProbeKind kind;
  std::string_view target;
  std::vector<std::string_view> programs;
  std::vector<std::string_view> maps;
  Attach attach;
  Trigger trigger;
};

// Maps that only some kinds use; .rodata and .bss are always created.
constexpr std::string_view kRingBufferMap = "probe_events";
constexpr std::string_view kSockhashMap = "probe_sockhash";

const std::vector<ProbeSpec>& ProbeSpecs() {
  static const std::vector<ProbeSpec> specs = {
      {ProbeKind::kSyscallTracepoint, "syscalls:sys_enter_getppid", {"probe_syscall_tp"}, {},
       Attach::kAuto, Trigger::kGetppid},
      {ProbeKind::kSockTracepoint, "sock:inet_sock_set_state", {"probe_sock_tp"}, {},
       Attach::kAuto, Trigger::kLoopbackConnect},
      {ProbeKind::kSchedTracepoint, "sched:sched_process_{fork,exit,exec}",
       {"probe_sched_fork", "probe_sched_exit", "probe_sched_exec"}, {}, Attach::kAuto,
       Trigger::kForkAndExit},
      {ProbeKind::kTpBtf, "tp_btf/sys_enter", {"probe_tp_btf"}, {}, Attach::kAuto,
       Trigger::kGetppid},
      {ProbeKind::kRawTracepoint, "raw_tracepoint/sys_enter", {"probe_raw_tp"}, {},
       Attach::kAuto, Trigger::kGetppid},
      {ProbeKind::kUprobe, "own binary, own pid", {"probe_uprobe"}, {}, Attach::kUprobe,
       Trigger::kUprobeCall},
      {ProbeKind::kUretprobe, "own binary, own pid", {"probe_uretprobe"}, {}, Attach::kUretprobe,
       Trigger::kUretprobeCall},
      {ProbeKind::kUprobeSession, "own binary, all processes (filtered in the program)",
       {"probe_uprobe_session"}, {}, Attach::kUprobeSession, Trigger::kUprobeSessionCalls},
      {ProbeKind::kKprobe, "hrtimer_nanosleep", {"probe_kprobe"}, {}, Attach::kAuto,
       Trigger::kNanosleep},
      {ProbeKind::kFentry, "hrtimer_nanosleep", {"probe_fentry"}, {}, Attach::kAuto,
       Trigger::kNanosleep},
      {ProbeKind::kSkMsg, "sockhash, loopback TCP", {"probe_sk_msg"}, {kSockhashMap},
       Attach::kSkMsg, Trigger::kSkMsgSend},
      {ProbeKind::kSockops, "probe cgroup, loopback TCP", {"probe_sockops"}, {},
       Attach::kSockops, Trigger::kSockopsChild},
      {ProbeKind::kRingBuffer, "syscalls:sys_enter_getppid", {"probe_ringbuf"}, {kRingBufferMap},
       Attach::kAuto, Trigger::kRingBufferRecord},
      {ProbeKind::kProbeWriteUser, "syscalls:sys_enter_getppid", {"probe_write_user"}, {},
       Attach::kAuto, Trigger::kWriteUser},
      {ProbeKind::kTcpHeaderOption, "probe cgroup, loopback TCP", {"probe_hdr_opt"}, {},
       Attach::kSockops, Trigger::kHdrOptExchange},
  };
  return specs;
}

// What every probe program is told before load (its rodata).
struct ProbeSettings {
  uint32_t tgid = 0;
  uint32_t tid = 0;  // the probing thread (set by RunOne): triggers run on it, programs count only it
  uint64_t pidns_dev = 0;
  uint64_t pidns_ino = 0;
  uint64_t cookie = 0;  // ring-buffer record, uprobe argument, write-user value
  std::optional<std::string> cgroup2_root;
};

// bpf_probe_write_user's target. Only ever written by our own probe, in our own process.
volatile uint64_t g_write_user_target = 0;

// An attachment made with bpf_prog_attach (sk_msg to a map has no bpf_link in libbpf 1.1).
class ProgAttachment {
 public:
  ProgAttachment(int prog_fd, int target_fd, bpf_attach_type type)
      : prog_fd_(prog_fd), target_fd_(target_fd), type_(type) {}
  ~ProgAttachment() { bpf_prog_detach2(prog_fd_, target_fd_, type_); }
  ProgAttachment(const ProgAttachment&) = delete;
  ProgAttachment& operator=(const ProgAttachment&) = delete;

 private:
  int prog_fd_;
  int target_fd_;
  bpf_attach_type type_;
};

struct RingBufferDeleter {
  void operator()(ring_buffer* rb) const { ring_buffer__free(rb); }
};
using RingBufferPtr = std::unique_ptr<ring_buffer, RingBufferDeleter>;

// Everything one probe creates. Members are destroyed in reverse order: sockets, then
// attachments, then the probe cgroup (empty and detached by then), then the skeleton.
struct ProbeSession {
  ProbeSkeleton skel;
  std::optional<capabilities::ScopedCgroup> cgroup;
  std::vector<BpfLink> links;
  std::optional<ProgAttachment> prog_attachment;
  UniqueFd session_link;  // a uprobe session link (no libbpf bpf_link for it in libbpf 1.1)
  std::optional<capabilities::LoopbackListener> listener;
  UniqueFd client;
  UniqueFd server;
};

using Step = Result<std::string>;  // on success, what was observed

// The skeleton's bss is the program's memory, mmapped: read it the way the program writes it.
template <typename T>
T ReadCounter(const T& counter) {
  return __atomic_load_n(&counter, __ATOMIC_ACQUIRE);
}

std::string Hex(uint64_t v) {
  char buffer[24];
  std::snprintf(buffer, sizeof(buffer), "0x%" PRIx64, v);
  return buffer;
}

Result<ProbeSettings> MakeSettings(const std::optional<std::string>& cgroup2_root) {
  ProbeSettings settings;
  settings.tgid = static_cast<uint32_t>(::getpid());
  struct stat ns {};
  if (::stat("/proc/self/ns/pid", &ns) != 0) {
    return Error::FromErrno("stat /proc/self/ns/pid (needed to recognise our own process)", errno);
  }
  settings.pidns_dev = ns.st_dev;
  settings.pidns_ino = ns.st_ino;
  // Distinct per run and never zero, so a leftover or default value cannot pass for a hit.
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  settings.cookie = (uint64_t{0x7468726c} << 32) ^ (static_cast<uint64_t>(now.tv_nsec) << 8) ^
                    settings.tgid;
  if (settings.cookie == 0) settings.cookie = 1;
  settings.cgroup2_root = cgroup2_root;
  return settings;
}

bool Contains(const std::vector<std::string_view>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

Status Open(const ProbeSpec& spec, const ProbeSettings& settings, ProbeSession& s) {
  s.skel.reset(probe_bpf__open());
  if (!s.skel) return Error{"probe_bpf__open failed", errno != 0 ? errno : EINVAL};

  s.skel->rodata->self_tgid = settings.tgid;
  s.skel->rodata->self_tid = settings.tid;
  s.skel->rodata->self_pidns_dev = settings.pidns_dev;
  s.skel->rodata->self_pidns_ino = settings.pidns_ino;
  s.skel->rodata->trigger_syscall_nr = SYS_getppid;
  s.skel->rodata->ringbuf_cookie = settings.cookie;
  s.skel->rodata->write_user_magic = settings.cookie;
  s.skel->rodata->write_user_addr =
      reinterpret_cast<uint64_t>(const_cast<uint64_t*>(&g_write_user_target));

  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, s.skel->obj) {
    bpf_program__set_autoload(prog, Contains(spec.programs, bpf_program__name(prog)));
  }
  // Loaded (when this kind asks for it) as a session program: the attach type is fixed at load.
  bpf_program__set_expected_attach_type(s.skel->progs.probe_uprobe_session,
                                        static_cast<bpf_attach_type>(kBpfTraceUprobeSession));
  for (std::string_view optional_map : {kRingBufferMap, kSockhashMap}) {
    bpf_map* map = bpf_object__find_map_by_name(s.skel->obj, std::string(optional_map).c_str());
    if (map != nullptr) bpf_map__set_autocreate(map, Contains(spec.maps, optional_map));
  }
  return OkStatus();
}

Status Load(ProbeSession& s) {
  if (const int err = probe_bpf__load(s.skel.get()); err != 0) return Error{"", -err};
  return OkStatus();
}

bpf_program* Program(ProbeSession& s, std::string_view name) {
  return bpf_object__find_program_by_name(s.skel->obj, std::string(name).c_str());
}

Status AttachProbe(const ProbeSpec& spec, const ProbeSettings& settings, ProbeSession& s) {
  switch (spec.attach) {
    case Attach::kAuto:
      for (std::string_view name : spec.programs) {
        BpfLink link(bpf_program__attach(Program(s, name)));
        if (!link) return Error{"", errno};  // libbpf's messages say what it tried
        s.links.push_back(std::move(link));
      }
      return OkStatus();

    case Attach::kUprobe:
    case Attach::kUretprobe: {
      ASSIGN_OR_RETURN(capabilities::UprobeSite site,
                       capabilities::LocateOwnCode(
                           reinterpret_cast<uintptr_t>(&threadline_capability_uprobe_target)));
      BpfLink link(bpf_program__attach_uprobe(Program(s, spec.programs.front()),
                                              spec.attach == Attach::kUretprobe, ::getpid(),
                                              site.path.c_str(), site.file_offset));
      if (!link) return Error{site.path + "+" + Hex(site.file_offset), errno};
      s.links.push_back(std::move(link));
      return OkStatus();
    }

    case Attach::kUprobeSession: {
      ASSIGN_OR_RETURN(capabilities::UprobeSite site,
                       capabilities::LocateOwnCode(
                           reinterpret_cast<uintptr_t>(&threadline_capability_uprobe_target)));
      ASSIGN_OR_RETURN(s.session_link,
                       AttachUprobeSession(bpf_program__fd(Program(s, spec.programs.front())),
                                           site.path, {site.file_offset}, {0}));
      return OkStatus();
    }

    case Attach::kSkMsg: {
      ASSIGN_OR_RETURN(s.listener, capabilities::LoopbackListener::Create());
      ASSIGN_OR_RETURN(s.client, capabilities::ConnectLoopback(s.listener->port));
      ASSIGN_OR_RETURN(s.server, capabilities::AcceptWithin(*s.listener, 500));
      const int prog_fd = bpf_program__fd(Program(s, spec.programs.front()));
      const int map_fd = bpf_map__fd(s.skel->maps.probe_sockhash);
      if (bpf_prog_attach(prog_fd, map_fd, BPF_SK_MSG_VERDICT, 0) != 0) {
        return Error{"bpf_prog_attach(BPF_SK_MSG_VERDICT)", errno};
      }
      s.prog_attachment.emplace(prog_fd, map_fd, BPF_SK_MSG_VERDICT);
      const uint32_t key = 0;
      const uint32_t fd = static_cast<uint32_t>(s.client.get());
      if (bpf_map_update_elem(map_fd, &key, &fd, BPF_ANY) != 0) {
        return Error{"adding a TCP socket to the sockhash", errno};
      }
      return OkStatus();
    }

    case Attach::kSockops: {
      if (!settings.cgroup2_root) return Error{"no cgroup v2 hierarchy is mounted", ENOENT};
      ASSIGN_OR_RETURN(s.cgroup, capabilities::ScopedCgroup::Create(*settings.cgroup2_root));
      UniqueFd dir(::open(s.cgroup->path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!dir.valid()) return Error::FromErrno("open " + s.cgroup->path(), errno);
      BpfLink link(bpf_program__attach_cgroup(Program(s, spec.programs.front()), dir.get()));
      if (!link) return Error{"cgroup " + s.cgroup->path(), errno};
      s.links.push_back(std::move(link));
      return OkStatus();
    }
  }
  return Error{"unknown attach method", EINVAL};
}

Step Fired(uint64_t hits, std::string_view trigger) {
  if (hits == 0) return Error{"attached, but never fired on " + std::string(trigger), ENODATA};
  return "fired " + std::to_string(hits) + "x on " + std::string(trigger);
}

int OnRingBufferRecord(void* ctx, void* data, size_t size) {
  auto* records = static_cast<std::vector<uint64_t>*>(ctx);
  if (size == sizeof(uint64_t)) {
    uint64_t value = 0;
    std::memcpy(&value, data, sizeof(value));
    records->push_back(value);
  }
  return 0;
}

Step TriggerAndVerify(const ProbeSpec& spec, const ProbeSettings& settings, ProbeSession& s) {
  auto& bss = *s.skel->bss;
  switch (spec.trigger) {
    case Trigger::kGetppid:
      capabilities::TriggerGetppid();
      return Fired(ReadCounter(bss.hits), "getppid()");

    case Trigger::kNanosleep:
      capabilities::TriggerNanosleep();
      return Fired(ReadCounter(bss.hits), "nanosleep()");

    case Trigger::kLoopbackConnect: {
      ASSIGN_OR_RETURN(auto listener, capabilities::LoopbackListener::Create());
      ASSIGN_OR_RETURN(UniqueFd client, capabilities::ConnectLoopback(listener.port));
      return Fired(ReadCounter(bss.hits), "a loopback TCP connect()");
    }

    case Trigger::kForkAndExit: {
      RETURN_IF_ERROR(capabilities::RunProbeChild({}, [&bss](pid_t child) {
        __atomic_store_n(&bss.exit_watch_tgid, static_cast<uint32_t>(child), __ATOMIC_RELEASE);
      }));
      const uint64_t forks = ReadCounter(bss.hits);
      const uint64_t exits = ReadCounter(bss.exit_hits);
      if (forks == 0 || exits == 0) {
        return Error{"attached, but saw " + std::to_string(forks) + " fork and " +
                         std::to_string(exits) + " exit of a forked child",
                     ENODATA};
      }
      return std::string("saw fork and exit of a child (exec attached, not triggered)");
    }

    case Trigger::kUprobeCall:
    case Trigger::kUretprobeCall: {
      const bool ret = spec.trigger == Trigger::kUretprobeCall;
      const uint64_t returned = capabilities::CallUprobeTarget(settings.cookie);
      const uint64_t expected = ret ? returned : settings.cookie;
      const uint64_t observed = ReadCounter(bss.observed);
      if (ReadCounter(bss.hits) == 0) {
        return Error{"attached, but never fired on a call of our own function", ENODATA};
      }
      if (observed != expected) {
        return Error{"fired, but saw " + Hex(observed) + " instead of " + Hex(expected), EIO};
      }
      return std::string(ret ? "saw the return value " : "saw the argument ") + Hex(observed);
    }

    case Trigger::kUprobeSessionCalls: {
      (void)capabilities::CallUprobeTarget(settings.cookie);
      (void)capabilities::CallUprobeTarget(settings.cookie);
      const uint64_t runs = ReadCounter(bss.hits);
      if (runs == 0) return Error{"attached, but never fired on a call of our own function", ENODATA};
      if (ReadCounter(bss.observed) != settings.cookie) {
        return Error{"fired, but saw " + Hex(ReadCounter(bss.observed)) + " instead of " +
                         Hex(settings.cookie),
                     EIO};
      }
      // Entry, its return, entry whose return was declined.
      if (runs != 3) {
        return Error{"two calls ran the program " + std::to_string(runs) +
                         " times, expected 3 (entry, return, entry that declined its return)",
                     EIO};
      }
      return std::string("saw the argument, the return it asked for, and none it declined");
    }

    case Trigger::kSkMsgSend: {
      static constexpr std::string_view kPayload = "threadline sk_msg probe";
      if (::send(s.client.get(), kPayload.data(), kPayload.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(kPayload.size())) {
        return Error::FromErrno("send on a socket in the sockhash", errno);
      }
      ASSIGN_OR_RETURN(std::string received,
                       capabilities::ReceiveWithin(s.server.get(), kPayload.size(), 500));
      if (received != kPayload) return Error{"the peer received altered bytes", EIO};
      return Fired(ReadCounter(bss.hits), "send() on a loopback socket; bytes passed intact");
    }

    case Trigger::kSockopsChild: {
      ASSIGN_OR_RETURN(auto listener, capabilities::LoopbackListener::Create());
      const std::string procs = s.cgroup->path() + "/cgroup.procs";
      UniqueFd procs_fd(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
      if (!procs_fd.valid()) return Error::FromErrno("open " + procs, errno);
      RETURN_IF_ERROR(capabilities::RunProbeChild({procs_fd.get(), listener.port}));
      return Fired(ReadCounter(bss.hits), "a connect() from a child in the probe cgroup");
    }

    case Trigger::kHdrOptExchange: {
      // Both ends in the probe cgroup (the child's own listener), a small MSS so the payload
      // leaves in many segments: the option must be read back and every byte arrive as sent.
      const std::string procs = s.cgroup->path() + "/cgroup.procs";
      UniqueFd procs_fd(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
      if (!procs_fd.valid()) return Error::FromErrno("open " + procs, errno);
      capabilities::ChildPlan plan;
      plan.cgroup_procs_fd = procs_fd.get();
      plan.loopback_exchange_bytes = capabilities::kHdrOptProbeBytes;
      plan.loopback_exchange_mss = capabilities::kHdrOptProbeMss;
      RETURN_IF_ERROR(capabilities::RunProbeChild(plan));
      const uint64_t written = ReadCounter(bss.observed);
      const uint64_t read = ReadCounter(bss.hits);
      if (written == 0) return Error{"attached, but no option was written on a data segment", ENODATA};
      if (read == 0) {
        return Error{"options written on " + std::to_string(written) +
                         " segments, none read back on the receiving end",
                     ENODATA};
      }
      return "option written on " + std::to_string(written) + " segments, read on " +
             std::to_string(read) + "; " + std::to_string(capabilities::kHdrOptProbeBytes >> 10) +
             " KiB at MSS " + std::to_string(capabilities::kHdrOptProbeMss) + " arrived intact";
    }

    case Trigger::kRingBufferRecord: {
      std::vector<uint64_t> records;
      RingBufferPtr rb(ring_buffer__new(bpf_map__fd(s.skel->maps.probe_events),
                                        OnRingBufferRecord, &records, nullptr));
      if (!rb) return Error::FromErrno("ring_buffer__new", errno);
      capabilities::TriggerGetppid();
      const int consumed = ring_buffer__consume(rb.get());
      if (consumed < 0) return Error::FromErrno("ring_buffer__consume", -consumed);
      if (std::find(records.begin(), records.end(), settings.cookie) == records.end()) {
        return Error{"attached, but no record arrived (" + std::to_string(records.size()) +
                         " others)",
                     ENODATA};
      }
      return std::string("record emitted on getppid() and consumed");
    }

    case Trigger::kWriteUser: {
      g_write_user_target = 0;
      capabilities::TriggerGetppid();
      if (g_write_user_target != settings.cookie) {
        return Error{"attached, but our variable was not written", ENODATA};
      }
      return std::string("wrote into a variable of the probing process");
    }
  }
  return Error{"unknown trigger", EINVAL};
}

// Threads that probe besides the calling one, so four probes run at once (see
// RunCapabilityProbe). Measured with `threadline --probe`: peak RSS 169-179 MiB with one thread
// per kind (15), 63-67 MiB with four; probing took 0.1-0.4 s longer (3.1-3.6 s -> 3.3-4.1 s,
// interleaved runs on a loaded 2-core machine).
constexpr size_t kProbeThreads = 3;

const ProbeSpec* FindSpec(ProbeKind kind) {
  const auto& specs = ProbeSpecs();
  auto it = std::find_if(specs.begin(), specs.end(),
                         [kind](const ProbeSpec& s) { return s.kind == kind; });
  return it == specs.end() ? nullptr : &*it;
}

// Runs on its own thread: the programs are told this thread's id, and triggers run here.
ProbeResult RunOne(const ProbeSpec& spec, const ProbeSettings& shared_settings) {
  const auto started = Clock::now();
  ProbeSettings settings = shared_settings;
  settings.tid = static_cast<uint32_t>(::gettid());
  ProbeResult result;
  result.kind = spec.kind;
  result.name = ProbeKindName(spec.kind);
  result.target = spec.target;
  {
    // Expected refusals (kprobe, fentry, write_user under lockdown) are answers, not
    // warnings: keep libbpf's messages for the detail and log them at debug only.
    LibbpfMessageCapture capture;
    ProbeSession session;
    struct Stage {
      const char* name;
      std::function<Status()> run;
    };
    const Stage stages[] = {
        {"open", [&] { return Open(spec, settings, session); }},
        {"load", [&] { return Load(session); }},
        {"attach", [&] { return AttachProbe(spec, settings, session); }},
    };
    bool ready = true;
    for (const Stage& stage : stages) {
      const size_t mark = capture.text().size();
      Status st = stage.run();
      if (st.ok()) continue;
      // Our own words (if any), then libbpf's or the verifier's for this stage.
      result.error_code = st.error().code;
      result.detail = std::string(stage.name) + " failed: " + ErrnoText(st.error().code);
      std::string hint = LibbpfFailureHint(
          std::string_view(capture.text()).substr(mark), st.error().code);
      for (const std::string& part : {st.error().message, hint}) {
        if (!part.empty()) result.detail += "; " + part;
      }
      ready = false;
      break;
    }
    if (ready) {
      result.available = true;
      Step fired = TriggerAndVerify(spec, settings, session);
      if (fired.ok()) {
        result.fired = true;
        result.detail = fired.value();
      } else {
        result.error_code = fired.error().code;
        result.detail = fired.error().message;
      }
    }
  }
  result.elapsed_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  return result;
}

}  // namespace

CapabilityReport RunCapabilityProbe() {
  const auto started = Clock::now();
  CapabilityReport report;

  utsname uts{};
  report.kernel_release = ::uname(&uts) == 0 ? uts.release : "unknown";
  if (Status env = PrepareBpfEnvironment(); !env.ok()) report.environment_error = env.error().message;
  report.btf = HasKernelBtf();
  report.lockdown = LockdownMode();
  report.cgroup2_root = CgroupV2Root();
  report.tracefs_root = TracefsRoot();

  Result<ProbeSettings> settings = MakeSettings(report.cgroup2_root);
  const std::vector<ProbeKind>& kinds = AllProbeKinds();
  report.results.resize(kinds.size());
  {
    // Kinds run concurrently on a few threads: most of a probe's time is the kernel waiting
    // for RCU grace periods when a tracepoint or uprobe is detached, and kernel BTF parsing
    // for tp_btf/fentry; overlapping them keeps agent start fast. Programs count only the
    // thread that probes them, so concurrent triggers cannot be mistaken for each other.
    // A few threads, not one per kind: each load parses the kernel's BTF (libbpf, ~5.5 MiB per
    // parse, plus the thread's malloc arena), and fifteen at once made the agent's start-up the
    // high-water mark of its whole life (~170 MiB, against ~65 MiB under load), which is what
    // a container memory limit has to allow for.
    std::vector<size_t> runnable;
    for (size_t i = 0; i < kinds.size(); ++i) {
      const ProbeSpec* spec = FindSpec(kinds[i]);
      if (settings.ok() && spec != nullptr) {
        runnable.push_back(i);
        continue;
      }
      ProbeResult& missing = report.results[i];
      missing.kind = kinds[i];
      missing.name = ProbeKindName(kinds[i]);
      missing.detail = settings.ok() ? "no probe defined" : "not probed: " + settings.error().message;
      missing.error_code = settings.ok() ? ENOSYS : settings.error().code;
    }
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t n; (n = next.fetch_add(1)) < runnable.size();) {
        const size_t i = runnable[n];
        report.results[i] = RunOne(*FindSpec(kinds[i]), settings.value());
      }
    };
    std::vector<std::jthread> workers;
    for (size_t t = 0; t < std::min(kProbeThreads, runnable.size()); ++t) {
      try {
        workers.emplace_back(work);
      } catch (const std::system_error&) {
        break;  // out of threads: the others (or this thread, below) take the rest
      }
    }
    work();
  }  // joins every worker

  report.choices = ChooseHooks(report.results);
  report.can_run = true;
  for (const HookChoice& choice : report.choices) {
    if (!choice.required || choice.active) continue;
    report.can_run = false;
    if (!report.cannot_run_reason.empty()) report.cannot_run_reason += "; ";
    report.cannot_run_reason += choice.hook + " (" + choice.reason + ")";
  }
  if (!report.can_run && ::geteuid() != 0) {
    report.cannot_run_reason = "not running as root (the agent needs root, or CAP_BPF, "
                               "CAP_PERFMON and CAP_SYS_ADMIN); " + report.cannot_run_reason;
  }
  report.elapsed_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  return report;
}

const CapabilityReport& ProbeCapabilities() {
  static const CapabilityReport report = RunCapabilityProbe();
  return report;
}

}  // namespace threadline
