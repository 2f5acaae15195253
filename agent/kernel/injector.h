// Traceparent injection (bpf/inject.bpf.c) loaded, attached and switched.
//
// Its own object and class so the agent runs the same with it absent (--inject off, or a
// kernel without sk_msg/sockops) as with it present: capture never depends on it. It shares
// the capture object's selection, syscall-stash, connection and trace-context maps (reused by
// fd before load), so it must be created after CaptureProgram and destroyed before it.
//
// Life cycle: Create (loaded and attached, mode off: nothing is enrolled) -> canary
// (agent/kernel/inject_canary.h, mode canary-only) -> SetMode(kOn) or stays off. Destroying it
// detaches both programs; sockets already enrolled leave the sockhash with it, so applications
// keep running untouched.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "agent/common/bpf_handles.h"
#include "agent/common/result.h"
#include "threadline/events.h"

struct inject_bpf;

namespace threadline {

class CaptureProgram;

struct InjectorConfig {
  uint32_t agent_tgid = 0;  // never enrolled, except while it runs the canary
  bool trace_all = true;    // the capture object's settings (CaptureConfig): unlisted
  bool filter_by_cgroup = false;  // processes are traced; only selected cgroups are
  std::string cgroup2_root; // where the sockops program attaches (the cgroup v2 root)
};

// Per-reason counts of the injection programs (enum tl_inject_stat), summed over CPUs.
using InjectStats = std::array<uint64_t, TL_INJ__COUNT>;
std::string_view InjectStatName(int stat);

class Injector {
 public:
  enum class Mode : uint32_t { kOff = 0, kCanaryOnly = 1, kOn = 2 };

  static Result<std::unique_ptr<Injector>> Create(CaptureProgram& capture, const InjectorConfig& config);
  ~Injector();
  Injector(const Injector&) = delete;
  Injector& operator=(const Injector&) = delete;

  // kOn also switches on the kernel trace ids of the capture path (the write exit must report
  // what was injected); any other mode switches them off.
  void SetMode(Mode mode);
  Mode mode() const { return mode_; }
  // The process whose sockets the canary uses (0: none).
  void SetCanaryTgid(uint32_t tgid);
  // Is this connected socket in the sockhash?
  bool IsEnrolled(int fd) const;
  InjectStats ReadStats() const;

 private:
  Injector(CaptureProgram& capture, const InjectorConfig& config);
  Status Open();
  Status Load();
  Status Attach();

  CaptureProgram& capture_;
  InjectorConfig config_;
  struct SkelDeleter {
    void operator()(inject_bpf* s) const;
  };
  std::unique_ptr<inject_bpf, SkelDeleter> skel_;
  BpfLink sockops_link_;
  int msg_prog_fd_ = -1;  // attached to the sockhash with bpf_prog_attach (no bpf_link for it)
  int sockhash_fd_ = -1;
  Mode mode_ = Mode::kOff;
  int ncpus_ = 1;
};

}  // namespace threadline
