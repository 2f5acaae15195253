// Goroutine context for Go programs (bpf/capture/go_ctx.bpf.h, issue #13): the uprobes that let
// the kernel's context rule follow goroutines instead of threads, and the per-process mark the
// rule reads (go_procs).
//
// For each Go executable (device + inode, once; symbolizer/go_binary reads the version from the
// build info and the functions from the pclntab, so stripped binaries too):
//   1. the version must be in the layout table (offsets into net/http's and net's private
//      structs); a version outside it is logged once, counted
//      (threadline_go_context_files_total{result="unknown_version"}), and its processes are
//      marked untracked: the kernel then never uses the thread for them (a Go thread says
//      nothing about which request a goroutine serves), and the agent's evidence rules alone may
//      link their spans;
//   2. runtime.newproc1 (entry on its stack-check jbe, and each return instruction: never a
//      uretprobe, which crashes Go programs) and net/http.(*conn).readRequest are required: they
//      are what gives a goroutine a request and passes it on; net/http.(*persistConn).roundTrip
//      and net/http.(*Request).write (the hand-off to the transport's write goroutine) are
//      attached when the program has them (one without net/http's client sends from its own
//      goroutines);
//   3. every process running the file is marked in go_procs: TL_GO_PROC_TRACKED when the
//      probes are on, 0 (untracked) otherwise.
// Processes are looked at when they exec (on this object's thread: ELF parsing and uprobe
// registration never hold up the ring consumer) and, at start, every running process.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/common/bpf_handles.h"
#include "agent/common/metrics.h"
#include "agent/common/result.h"
#include "symbolizer/go_binary.h"
#include "symbolizer/proc_maps.h"
#include "threadline/events.h"

namespace threadline {

class CaptureProgram;

// The layout for this Go version, nullopt when the version is not in the table.
std::optional<tl_go_ctx_layout> GoCtxLayoutFor(const symbolizer::GoVersion& version);

inline constexpr const char* kGoNewproc1 = "runtime.newproc1";
inline constexpr const char* kGoReadRequest = "net/http.(*conn).readRequest";
inline constexpr const char* kGoRoundTrip = "net/http.(*persistConn).roundTrip";
inline constexpr const char* kGoRequestWrite = "net/http.(*Request).write";

struct GoContextOptions {
  std::string proc_root = "/proc";
  uint32_t agent_pid = 0;
  bool scan_at_start = true;  // false: only explicit Track calls (tests)
};

// What was decided for one executable.
struct GoContextFile {
  bool go = false;        // a Go executable at all
  bool tracked = false;   // goroutine probes attached
  std::string version;
  std::string detail;     // functions probed, or why not
};

class GoContextTracker {
 public:
  static Result<std::unique_ptr<GoContextTracker>> Create(CaptureProgram& capture,
                                                          const GoContextOptions& options,
                                                          MetricsRegistry& metrics);
  ~GoContextTracker();  // stops the thread, then detaches every probe
  GoContextTracker(const GoContextTracker&) = delete;
  GoContextTracker& operator=(const GoContextTracker&) = delete;

  // A process exec'd: looked at soon on this object's thread. Never blocks on work.
  void OnExec(uint32_t pid);
  // A process exited: its mark goes.
  void OnExit(uint32_t pid);
  // Synchronous: looks at the process's executable now and marks it. nullopt when the process
  // is gone or its executable unreadable.
  std::optional<GoContextFile> Track(uint32_t pid);

  size_t tracked_files() const;

  // Stops the thread and hands over every probe's link (see TlsAttacher::ReleaseLinks).
  std::vector<BpfLink> ReleaseLinks();

 private:
  struct FileState {
    GoContextFile file;
    std::vector<BpfLink> links;
  };
  GoContextTracker(CaptureProgram& capture, const GoContextOptions& options,
                   MetricsRegistry& metrics);
  FileState Attach(const std::string& open_path, const std::string& shown_path);
  void Mark(uint32_t pid, bool tracked);
  void Count(const char* result);
  void Run();

  CaptureProgram& capture_;
  GoContextOptions options_;
  MetricsRegistry& metrics_;
  int go_procs_fd_ = -1;
  int unclassified_fd_ = -1;  // "ctx_unclassified": execs not looked at yet
  std::optional<symbolizer::FileKey> agent_exe_;

  mutable std::mutex mu_;  // files_, marked_
  std::map<symbolizer::FileKey, FileState> files_;
  std::map<uint32_t, bool> marked_;  // pid -> tracked

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<uint32_t> queue_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace threadline
