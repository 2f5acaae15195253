// Trace context in a TCP header option (bpf/tcp_option.bpf.c, design in bpf/tcpopt/wire.bpf.h)
// loaded, attached and switched.
//
// Its own object, like traceparent injection, so the agent runs the same with it absent (the
// capability probe found no header-option callbacks, or --context-propagation leaves tcp out):
// capture never depends on it. It shares the capture object's selection, connection and option
// maps (reused by fd before load), so it must be created after CaptureProgram and destroyed
// before it.
//
// Life cycle: Create (loaded and attached to the cgroup v2 root, switched off: nothing is armed)
// -> SetOn(true): client sockets of traced processes connected from now on carry the option,
// and every connection reads it. Destroying it detaches the program; sockets keep their
// callback flags, which without a program attached do nothing.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "agent/common/bpf_handles.h"
#include "agent/common/result.h"
#include "threadline/events.h"

struct tcp_option_bpf;

namespace threadline {

class CaptureProgram;

struct TcpOptionConfig {
  uint32_t agent_tgid = 0;         // never armed
  bool trace_all = true;           // the capture object's selection settings (CaptureConfig)
  bool filter_by_cgroup = false;
  bool port_filter = false;
  std::string cgroup2_root;        // where the sockops program attaches
};

// Per-outcome counts (enum tl_tcpopt_stat), summed over CPUs.
using TcpOptionStats = std::array<uint64_t, TL_OPT__COUNT>;
std::string_view TcpOptionStatName(int stat);

class TcpOptionProgram {
 public:
  static Result<std::unique_ptr<TcpOptionProgram>> Create(CaptureProgram& capture,
                                                          const TcpOptionConfig& config);
  ~TcpOptionProgram();
  TcpOptionProgram(const TcpOptionProgram&) = delete;
  TcpOptionProgram& operator=(const TcpOptionProgram&) = delete;

  // On also switches the capture path's kernel ids on (the send must record the request start
  // and report the ids it put on the wire); off releases them.
  void SetOn(bool on);
  bool on() const { return on_; }
  TcpOptionStats ReadStats() const;

 private:
  TcpOptionProgram(CaptureProgram& capture, const TcpOptionConfig& config);
  Status Open();
  Status Load();
  Status Attach();

  CaptureProgram& capture_;
  TcpOptionConfig config_;
  struct SkelDeleter {
    void operator()(tcp_option_bpf* s) const;
  };
  std::unique_ptr<tcp_option_bpf, SkelDeleter> skel_;
  BpfLink sockops_link_;
  bool on_ = false;
  int ncpus_ = 1;
};

}  // namespace threadline
