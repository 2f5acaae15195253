#include "agent/kernel/tcp_option_program.h"

#include <bpf/libbpf.h>

#include <cerrno>

#include "agent/kernel/capture_program.h"
#include "agent/kernel/linked_object.h"
#include "tcp_option.skel.h"

namespace threadline {

std::string_view TcpOptionStatName(int stat) {
  switch (stat) {
    case TL_OPT_ARMED: return "armed";
    case TL_OPT_STARTS: return "request_starts";
    case TL_OPT_WRITTEN: return "written";
    case TL_OPT_REWRITTEN: return "rewritten";
    case TL_OPT_NO_ROOM: return "skipped_no_room";
    case TL_OPT_SHARED_SEGMENT: return "skipped_shared_segment";
    case TL_OPT_UNWRITTEN: return "unwritten";
    case TL_OPT_OTHER_WRITER: return "skipped_other_writer";
    case TL_OPT_TX_FULL: return "skipped_too_many_in_flight";
    case TL_OPT_SKIP_AMBIGUOUS: return "skipped_ambiguous";
    case TL_OPT_PARSED: return "parsed";
    case TL_OPT_MALFORMED: return "malformed";
    case TL_OPT_RX_FULL: return "dropped_too_many_unread";
    case TL_OPT_READ: return "read";
    default: return "unknown";
  }
}

void TcpOptionProgram::SkelDeleter::operator()(tcp_option_bpf* s) const { tcp_option_bpf__destroy(s); }

TcpOptionProgram::TcpOptionProgram(CaptureProgram& capture, const TcpOptionConfig& config)
    : capture_(capture), config_(config) {}

TcpOptionProgram::~TcpOptionProgram() {
  SetOn(false);
  sockops_link_.reset();
  skel_.reset();
}

Result<std::unique_ptr<TcpOptionProgram>> TcpOptionProgram::Create(CaptureProgram& capture,
                                                                   const TcpOptionConfig& config) {
  if (config.cgroup2_root.empty()) return Error{"no cgroup v2 hierarchy mounted: sockops cannot attach"};
  std::unique_ptr<TcpOptionProgram> p(new TcpOptionProgram(capture, config));  // private constructor
  RETURN_IF_ERROR(p->Open());
  RETURN_IF_ERROR(p->Load());
  RETURN_IF_ERROR(p->Attach());
  return p;
}

Status TcpOptionProgram::Open() {
  skel_.reset(tcp_option_bpf__open());
  if (!skel_) return Error::FromErrno("open tcp_option BPF object", errno);
  skel_->rodata->agent_tgid = config_.agent_tgid;
  skel_->rodata->filter_by_process = !config_.trace_all;
  skel_->rodata->filter_by_cgroup = config_.filter_by_cgroup;
  skel_->rodata->args_task_storage = capture_.args_task_storage();  // its maps are shared
  skel_->rodata->port_filter = config_.port_filter;
  ncpus_ = libbpf_num_possible_cpus();
  if (ncpus_ <= 0) return Error::FromErrno("count possible CPUs", -ncpus_);
  // One instance of each map it shares with the capture object: the capture object's (the send
  // and read paths there and the sockops program here meet in opt_tx/opt_rx).
  RETURN_IF_ERROR(ShareCaptureMaps(capture_, skel_->obj));
  return OkStatus();
}

Status TcpOptionProgram::Load() {
  if (int err = tcp_option_bpf__load(skel_.get()))
    return Error::FromErrno("load tcp_option BPF program (run with --log-level=debug for the verifier log)", -err);
  return OkStatus();
}

Status TcpOptionProgram::Attach() {
  ASSIGN_OR_RETURN(sockops_link_, AttachToCgroup(skel_->progs.tl_tcp_option, config_.cgroup2_root));
  return OkStatus();
}

void TcpOptionProgram::SetOn(bool on) {
  if (!skel_ || on == on_) return;
  // The send path must record starts (and report their ids) before any socket is armed, and
  // keep doing so until none is.
  if (on) capture_.SetTraceContextUser(CaptureProgram::ContextUser::kTcpOption, true);
  __atomic_store_n(&skel_->bss->tcpopt_on, on ? 1u : 0u, __ATOMIC_RELEASE);
  capture_.SetTcpOptionOn(on);
  if (!on) capture_.SetTraceContextUser(CaptureProgram::ContextUser::kTcpOption, false);
  on_ = on;
}

TcpOptionStats TcpOptionProgram::ReadStats() const {
  return SumPerCpuCounters<TL_OPT__COUNT>(skel_->maps.tcpopt_stats, ncpus_);
}

}  // namespace threadline
