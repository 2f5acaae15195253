// --node-async-context on: follows Node.js async context so a client request made for a server
// request (after timers, promises, queued sockets) finds it as parent (issue #13). There is no
// native-only way to see which JavaScript callback runs for which request; this loads a small
// helper into each traced Node process through its inspector (the way OBI does it), and the
// helper tells the kernel, before each outgoing request is sent, which server socket's request
// it belongs to.
//
// The helper (node_helper_js.h), evaluated once per process:
//   - an AsyncLocalStorage entered on each server request (diagnostics_channel
//     "http.server.request.start"): the request's socket fd, and its response;
//   - http.ClientRequest.prototype.onSocket wrapped (Node calls it in the request's own async
//     context, queued requests too): when a request gets its socket, it writes one 16-byte marker
//     {magic, server fd (-1: none, or its response has started), client fd} to a /dev/null fd it
//     opened; a new connection reports at 'connect', before Node flushes the request;
//   - the kernel reads that write (bpf/capture/trace_ctx.bpf.h, ctx__node_marker; only writes of
//     that size, to that fd, of a registered process) and pairs the client socket with the request
//     in flight on the server socket: the context rule's NODE_ASYNC verdict. No
//     bpf_probe_write_user, no change to any byte the application sends.
// Safety:
//   - only processes that are traced (the selection), whose executable is node, with Node's
//     SIGUSR1 handler installed (else the signal would kill the
//     process: looked at again later), no --inspect/--inspect-port/--debug-port flag of their own
//     (command line or NODE_OPTIONS), and nothing else listening on the inspector port;
//   - a process in another network namespace (a container) is talked to from there: the worker
//     thread enters it (setns, this thread only) for the load and returns;
//   - SIGUSR1 opens Node's inspector on 127.0.0.1:9229 (loopback: Node's default; a process that
//     set another host has an --inspect flag and is left alone); the agent checks the listener
//     is that process's own socket, evaluates the helper, disconnects, and the helper closes the
//     inspector right after; the agent waits until the port is closed and logs how long it was
//     open;
//   - anything else (the inspector does not open, the helper throws) leaves the process as it was,
//     logged and counted (threadline_node_async_context_total{result}); what was loaded into which
//     process is logged and in /metrics (threadline_node_async_context_loaded{pid,exe}).
// One process at a time, on this object's thread; a process is looked at 1 s after its exec (Node
// must be up), again at 3 s and 10 s while its SIGUSR1 handler is not there yet.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "agent/common/metrics.h"
#include "agent/common/result.h"

namespace threadline {

class CaptureProgram;

struct NodeAsyncContextOptions {
  std::string proc_root = "/proc";
  uint32_t agent_pid = 0;
  // Is this process traced (the agent's selection)? Only traced processes get the helper.
  std::function<bool(uint32_t pid)> traced = [](uint32_t) { return true; };
  uint16_t inspector_port = 9229;  // where SIGUSR1 opens Node's inspector (Node's default)
  bool scan_at_start = true;       // false: only OnExec and Load (tests)
};

class NodeAsyncContext {
 public:
  static Result<std::unique_ptr<NodeAsyncContext>> Create(CaptureProgram& capture,
                                                          NodeAsyncContextOptions options,
                                                          MetricsRegistry& metrics);
  ~NodeAsyncContext();
  NodeAsyncContext(const NodeAsyncContext&) = delete;
  NodeAsyncContext& operator=(const NodeAsyncContext&) = delete;

  void OnExec(uint32_t pid);
  void OnExit(uint32_t pid);
  // One attempt now, on the caller's thread: the result label ("loaded", "not_node",
  // "has_inspector", "not_ready", ...; see the .cpp).
  std::string Load(uint32_t pid);

 private:
  NodeAsyncContext(CaptureProgram& capture, NodeAsyncContextOptions options, MetricsRegistry& metrics);
  void Schedule(uint32_t pid, int attempt, std::chrono::milliseconds delay);
  void Run();
  void Count(const std::string& result);
  Gauge& LoadedNow();  // threadline_node_async_context_processes

  CaptureProgram& capture_;
  NodeAsyncContextOptions options_;
  MetricsRegistry& metrics_;
  int markers_fd_ = -1;
  uint64_t own_netns_ = 0;

  std::mutex mu_;  // loaded_, due_, stopping_
  std::condition_variable cv_;
  std::map<uint32_t, std::string> loaded_;  // pid -> exe
  static constexpr size_t kMaxPerPidSeries = 256;
  std::set<uint32_t> per_pid_series_;  // pids with a ..._loaded{pid,exe} series
  std::multimap<std::chrono::steady_clock::time_point, std::pair<uint32_t, int>> due_;  // pid, attempt
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace threadline
