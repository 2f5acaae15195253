// The loopback canary run before traceparent injection is switched on.
//
// Enrolling a socket in a sockhash moves it onto the kernel's tcp_bpf send and receive paths,
// and rewriting requests is the one thing the agent does that an application can notice. Both
// have had kernel bugs (stalled reads, FIONREAD counting wrong, lost epoll wake-ups, corrupted
// or duplicated bytes on large sends). So the agent first drives its own real sockets through
// exactly that path, on loopback, in its own process (the injector enrolls the canary's
// sockets only, mode kCanaryOnly):
//   - a keep-alive connection reused for several requests, responses up to 1 MiB read with
//     non-blocking reads after epoll wake-ups, FIONREAD checked against what then arrives;
//   - a 64 KiB request body (several sk_msg messages), a request that already carries
//     traceparent (must arrive untouched), two pipelined requests in one write (only the first
//     gets the line), and a second connection;
//   - the server checks every request byte for byte: what was sent plus exactly one
//     `traceparent: 00-<32 hex>-<16 hex>-<01|00>\r\n` line right after the request line (the
//     flag is the sampling rule's decision on the new trace id, agent/spans/sampler.h).
// Any difference, error or stall (a bounded wait) fails the canary and injection stays off
// (one known kernel defect, FIONREAD, is reported separately: see CanaryResult).
//
// Test hook: THREADLINE_INJECT_CANARY_FAIL=1 makes the canary's server expect the requests
// without the injected line, so the canary fails the way it would if the kernel misbehaved.
#pragma once

#include <string>

namespace threadline {

class Injector;

struct CanaryOptions {
  bool force_failure = false;  // THREADLINE_INJECT_CANARY_FAIL
  int step_timeout_ms = 2000;  // longest wait for any one read, write or connect
};

struct CanaryResult {
  bool passed = false;
  std::string detail;  // what failed, or a summary of what passed
  // The only difference found: FIONREAD (SIOCINQ) answers 0 on enrolled sockets while bytes are
  // queued. Seen on Linux 6.18, whose tcp_bpf_ioctl counts only the sockmap's own ingress queue.
  // Bytes, wake-ups and reads are right; applications that size or gate reads on FIONREAD (Java's
  // InputStream.available(), some stale-connection checks) would misbehave. Not passed: only an
  // explicit `inject: on` accepts it (agent.cpp).
  bool fionread_defect = false;
  double elapsed_ms = 0;
};

// Runs the canary on `injector` (which must be attached, in any mode; it is left in kOff with
// no canary process). Blocks for at most a few seconds.
CanaryResult RunInjectionCanary(Injector& injector, const CanaryOptions& options);

}  // namespace threadline
