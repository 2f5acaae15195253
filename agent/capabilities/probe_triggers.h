// The things the capability probe does to make a freshly attached program run: syscalls,
// a call to a function of our own binary, loopback TCP connections, a short-lived child
// process (optionally inside a cgroup of its own). Every kernel object is owned by RAII.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "agent/common/result.h"
#include "agent/common/unique_fd.h"

// The uprobe/uretprobe target: lives in whichever binary links threadline_core (the agent,
// the tests). Returns value + 1 so the uretprobe can check it saw the real return value.
extern "C" uint64_t threadline_capability_uprobe_target(uint64_t value);

namespace threadline::capabilities {

void TriggerGetppid();
void TriggerNanosleep();
// Calls threadline_capability_uprobe_target through a volatile pointer, so the compiler
// cannot inline, clone or constant-fold the call away from the probed entry point.
uint64_t CallUprobeTarget(uint64_t value);

// Where a function of this process lives on disk, for attaching a uprobe to it: found from its
// runtime address and /proc/self/maps, so it works on stripped binaries too.
struct UprobeSite {
  std::string path;
  uint64_t file_offset = 0;
};
Result<UprobeSite> LocateOwnCode(uintptr_t address);

struct LoopbackListener {
  UniqueFd fd;
  uint16_t port = 0;  // host byte order
  static Result<LoopbackListener> Create();
};
Result<UniqueFd> ConnectLoopback(uint16_t port);
// Waits up to timeout_ms for a pending connection.
Result<UniqueFd> AcceptWithin(const LoopbackListener& listener, int timeout_ms);
// Waits up to timeout_ms for exactly `expected` bytes.
Result<std::string> ReceiveWithin(int fd, size_t expected, int timeout_ms);

// A cgroup v2 directory created for the probe and removed on destruction.
class ScopedCgroup {
 public:
  // Creates <root>/threadline-probe-<pid>-<tid>, removing directories a crashed earlier run left.
  static Result<ScopedCgroup> Create(const std::string& root);
  ScopedCgroup(ScopedCgroup&& other) noexcept;
  ScopedCgroup& operator=(ScopedCgroup&& other) noexcept;
  ScopedCgroup(const ScopedCgroup&) = delete;
  ScopedCgroup& operator=(const ScopedCgroup&) = delete;
  ~ScopedCgroup();

  const std::string& path() const { return path_; }

 private:
  explicit ScopedCgroup(std::string path) : path_(std::move(path)) {}
  void Remove();
  std::string path_;
};

// Forks a child that optionally moves itself into a cgroup (by writing "0" to the already
// open cgroup.procs fd), optionally connects to 127.0.0.1:connect_port and optionally runs a
// loopback exchange with itself (see ChildPlan), then exits; waits for it. `before_child_runs` gets the child's pid before the child does anything. The child
// only makes async-signal-safe calls (we may be multi-threaded) and dies by SIGALRM if its
// own steps hang for 10 s (counted from the go, not from the fork).
struct ChildPlan {
  int cgroup_procs_fd = -1;
  uint16_t connect_port = 0;
  // > 0: the child also listens on loopback, connects to itself with this MSS (TCP_MAXSEG),
  // sends this many bytes and checks the accepted end receives exactly them.
  uint32_t loopback_exchange_bytes = 0;
  int loopback_exchange_mss = 0;
};
// The header-option probe's exchange: enough segments to cross several skbs and GSO batches.
inline constexpr uint32_t kHdrOptProbeBytes = 48 * 1024;
inline constexpr int kHdrOptProbeMss = 1000;
Status RunProbeChild(const ChildPlan& plan,
                     const std::function<void(pid_t)>& before_child_runs = nullptr);

// "EPERM (Operation not permitted)".
std::string ErrnoText(int err);

}  // namespace threadline::capabilities
