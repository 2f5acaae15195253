// What discovery knows about one process, read from /proc/<pid>, and a small cache of it.
//
// proc_root is a parameter everywhere so tests can point at a fake tree and so containers that
// mount the host's /proc elsewhere (e.g. /host/proc) work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/common/result.h"

namespace threadline {

struct ProcessInfo {
  uint32_t pid = 0;
  uint32_t ppid = 0;
  std::string comm;      // /proc/<pid>/comm: at most 15 bytes, settable by the process
  std::string exe_path;  // readlink /proc/<pid>/exe without " (deleted)"; empty if unreadable
  // The executable's file name when its path is not known (a process seen only through its
  // exec event, see ExecSnapshot); empty when exe_path is set.
  std::string exe_name;
  bool exe_deleted = false;  // the executable was unlinked or replaced after exec (upgrades)
  std::vector<std::string> cmdline;  // argv as the process shows it; empty for kernel threads
  // Field 22 of /proc/<pid>/stat (clock ticks after boot). With the pid it names one process
  // for the lifetime of the machine, so a reused pid is told apart from the one it replaced.
  uint64_t start_time_ticks = 0;
  uint64_t netns_inode = 0;  // inode of /proc/<pid>/ns/net; 0 if unreadable
  bool is_kernel_thread = false;  // PF_KTHREAD: never makes syscalls of its own, never traced

  bool operator==(const ProcessInfo&) const = default;
};

// Reads /proc/<pid>. Only stat is required; the other files fill in what they can (exe and
// ns/net need ptrace-read access). Fails with code ESRCH or ENOENT when the process is gone, and
// with ESRCH when the pid was reused while being read (the fields would mix two processes).
Result<ProcessInfo> ReadProcessInfo(uint32_t pid, const std::string& proc_root = "/proc");

// Every numeric entry of proc_root, ascending. Empty if proc_root cannot be read.
std::vector<uint32_t> ListPids(const std::string& proc_root = "/proc");

// Inode of /proc/<pid>/ns/net ("net:[N]"), read as a link so fake trees can provide it.
Result<uint64_t> ReadNetnsInode(uint32_t pid, const std::string& proc_root = "/proc");

namespace discovery {
// Parses /proc/<pid>/stat text into pid, comm, ppid, flags (for is_kernel_thread) and start time.
// Exposed for tests. comm can contain spaces and parentheses, so it is taken up to the last ')'.
Result<ProcessInfo> ParseStat(std::string_view stat);
// NUL-separated arguments (/proc/<pid>/cmdline, or the argv an exec event carries) as a list;
// a trailing NUL ends the last argument, it does not start an empty one.
std::vector<std::string> SplitCmdline(std::string_view raw);
// A boot-clock time in ns (the kernel's task start_boottime) in the clock ticks of
// /proc/<pid>/stat's start time (sysconf(_SC_CLK_TCK); 100 on Linux).
uint64_t BootNsToClockTicks(uint64_t boot_ns);
}  // namespace discovery

// pid -> ProcessInfo, read lazily on Get and dropped on the exec/exit notifications the kernel
// sends (exec changes exe, comm and cmdline under the same pid). Bounded: the least recently
// used entry is evicted past `capacity`. Thread-safe; Get returns a copy so callers never hold
// a reference into the cache across an invalidation.
class ProcessCache {
 public:
  explicit ProcessCache(size_t capacity = 8192, std::string proc_root = "/proc",
                        MetricsRegistry& metrics = MetricsRegistry::Global());

  Result<ProcessInfo> Get(uint32_t pid);
  void OnExec(uint32_t pid) { Erase(pid); }
  void OnExit(uint32_t pid) { Erase(pid); }
  size_t size() const;

 private:
  void Erase(uint32_t pid);

  struct Entry {
    ProcessInfo info;
    std::list<uint32_t>::iterator lru_pos;
  };
  const size_t capacity_;
  const std::string proc_root_;
  Counter& reads_;
  Counter& evictions_;
  mutable std::mutex mu_;
  uint64_t invalidation_epoch_ = 0;  // bumped by every OnExec/OnExit, see Get
  std::list<uint32_t> lru_;  // front = most recently used
  std::unordered_map<uint32_t, Entry> entries_;
};

}  // namespace threadline
