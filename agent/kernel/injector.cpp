#include "agent/kernel/injector.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "agent/kernel/capture_program.h"
#include "agent/kernel/linked_object.h"
#include "inject.skel.h"

namespace threadline {

std::string_view InjectStatName(int stat) {
  switch (stat) {
    case TL_INJ_INJECTED: return "injected";
    case TL_INJ_ENROLLED: return "enrolled";
    case TL_INJ_ENROLL_FAILED: return "enroll_failed";
    case TL_INJ_NOT_SELECTED: return "connect_not_traced";
    case TL_INJ_SKIP_NOT_HTTP1: return "skip_not_http1";
    case TL_INJ_SKIP_HAS_HEADER: return "skip_has_traceparent";
    case TL_INJ_SKIP_PARTIAL: return "skip_partial_head";
    case TL_INJ_SKIP_CONTINUATION: return "skip_continuation";
    case TL_INJ_SKIP_TLS: return "skip_tls";
    case TL_INJ_SKIP_NO_SYSCALL: return "skip_no_syscall";
    case TL_INJ_FAIL_PUSH: return "fail_push";
    case TL_INJ_FAIL_PULL: return "fail_pull";
    case TL_INJ_SKIP_OFF: return "skip_off";
    case TL_INJ_SKIP_EXCLUDED: return "skip_excluded";
    case TL_INJ_SPLIT_SEND: return "injected_split_send";
    case TL_INJ_SKIP_AMBIGUOUS: return "skip_ambiguous_context";
    case TL_INJ_SKIP_SHED: return "skip_shed";
    default: return "unknown";
  }
}

void Injector::SkelDeleter::operator()(inject_bpf* s) const { inject_bpf__destroy(s); }

Injector::Injector(CaptureProgram& capture, const InjectorConfig& config)
    : capture_(capture), config_(config) {}

Injector::~Injector() {
  SetMode(Mode::kOff);
  if (msg_prog_fd_ >= 0 && sockhash_fd_ >= 0)
    bpf_prog_detach2(msg_prog_fd_, sockhash_fd_, BPF_SK_MSG_VERDICT);
  sockops_link_.reset();
  skel_.reset();
}

Result<std::unique_ptr<Injector>> Injector::Create(CaptureProgram& capture, const InjectorConfig& config) {
  if (config.cgroup2_root.empty()) return Error{"no cgroup v2 hierarchy mounted: sockops cannot attach"};
  std::unique_ptr<Injector> p(new Injector(capture, config));  // private constructor
  RETURN_IF_ERROR(p->Open());
  RETURN_IF_ERROR(p->Load());
  RETURN_IF_ERROR(p->Attach());
  return p;
}

Status Injector::Open() {
  skel_.reset(inject_bpf__open());
  if (!skel_) return Error::FromErrno("open inject BPF object", errno);
  skel_->rodata->agent_tgid = config_.agent_tgid;
  skel_->rodata->filter_by_process = !config_.trace_all;
  skel_->rodata->filter_by_cgroup = config_.filter_by_cgroup;
  skel_->rodata->args_task_storage = capture_.args_task_storage();  // its maps are shared
  // The capture object's: both objects start new traces by the same rule.
  skel_->rodata->sample_threshold = capture_.config().sample_threshold;
  ncpus_ = libbpf_num_possible_cpus();
  if (ncpus_ <= 0) return Error::FromErrno("count possible CPUs", -ncpus_);
  // One instance of each map it shares with the capture object: the capture object's.
  RETURN_IF_ERROR(ShareCaptureMaps(capture_, skel_->obj));
  return OkStatus();
}

Status Injector::Load() {
  if (int err = inject_bpf__load(skel_.get()))
    return Error::FromErrno("load inject BPF programs (run with --log-level=debug for the verifier log)", -err);
  return OkStatus();
}

Status Injector::Attach() {
  ASSIGN_OR_RETURN(sockops_link_, AttachToCgroup(skel_->progs.tl_inject_sockops, config_.cgroup2_root));
  msg_prog_fd_ = bpf_program__fd(skel_->progs.tl_inject_msg);
  sockhash_fd_ = bpf_map__fd(skel_->maps.inj_sockets);
  if (bpf_prog_attach(msg_prog_fd_, sockhash_fd_, BPF_SK_MSG_VERDICT, 0)) {
    int err = errno;
    msg_prog_fd_ = -1;
    return Error::FromErrno("attach sk_msg to the sockhash", err);
  }
  return OkStatus();
}

void Injector::SetMode(Mode mode) {
  if (!skel_) return;
  // The capture path must report injected ids before any request is rewritten, and keep doing
  // so until none can be rewritten any more.
  if (mode == Mode::kOn) capture_.SetTraceContextUser(CaptureProgram::ContextUser::kInjection, true);
  __atomic_store_n(&skel_->bss->inject_mode, static_cast<uint32_t>(mode), __ATOMIC_RELEASE);
  if (mode != Mode::kOn) capture_.SetTraceContextUser(CaptureProgram::ContextUser::kInjection, false);
  mode_ = mode;
}

void Injector::SetCanaryTgid(uint32_t tgid) {
  __atomic_store_n(&skel_->bss->canary_tgid, tgid, __ATOMIC_RELEASE);
}

bool Injector::IsEnrolled(int fd) const {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) return false;
  uint64_t value = 0;
  return bpf_map_lookup_elem(sockhash_fd_, &cookie, &value) == 0;
}

InjectStats Injector::ReadStats() const {
  return SumPerCpuCounters<TL_INJ__COUNT>(skel_->maps.inject_stats, ncpus_);
}

}  // namespace threadline
