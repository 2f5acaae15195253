#include "agent/discovery/process_info.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <string_view>

#include "agent/discovery/proc_fs.h"

namespace threadline {

namespace {

constexpr uint64_t kPfKthread = 0x00200000;  // include/linux/sched.h
constexpr std::string_view kDeletedSuffix = " (deleted)";

std::string PidDir(const std::string& proc_root, uint32_t pid) {
  return proc_root + "/" + std::to_string(pid);
}

// Space-separated fields of stat after the ')' that closes comm; fields[0] is field 3 (state).
std::vector<std::string_view> FieldsAfterComm(std::string_view rest) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && (rest[i] == ' ' || rest[i] == '\n')) ++i;
    size_t start = i;
    while (i < rest.size() && rest[i] != ' ' && rest[i] != '\n') ++i;
    if (i > start) fields.push_back(rest.substr(start, i - start));
  }
  return fields;
}

Result<ProcessInfo> ReadStat(uint32_t pid, const std::string& proc_root) {
  auto stat = discovery::ReadProcFile(PidDir(proc_root, pid) + "/stat", 4096);
  if (!stat.ok()) return stat.error();
  return discovery::ParseStat(*stat);
}

}  // namespace

namespace discovery {

Result<ProcessInfo> ParseStat(std::string_view stat) {
  size_t open = stat.find('(');
  size_t close = stat.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return Error{"malformed stat: no comm", EINVAL};
  auto pid = ParseDecimal(stat.substr(0, open == 0 ? 0 : open - 1));
  auto fields = FieldsAfterComm(stat.substr(close + 1));
  // starttime is field 22, i.e. fields[19].
  if (!pid || fields.size() < 20) return Error{"malformed stat", EINVAL};
  auto ppid = ParseDecimal(fields[1]);
  auto flags = ParseDecimal(fields[6]);
  auto start = ParseDecimal(fields[19]);
  if (!ppid || !flags || !start) return Error{"malformed stat fields", EINVAL};

  ProcessInfo info;
  info.pid = static_cast<uint32_t>(*pid);
  info.ppid = static_cast<uint32_t>(*ppid);
  info.comm = std::string(stat.substr(open + 1, close - open - 1));
  info.start_time_ticks = *start;
  info.is_kernel_thread = (*flags & kPfKthread) != 0;
  return info;
}

}  // namespace discovery

Result<uint64_t> ReadNetnsInode(uint32_t pid, const std::string& proc_root) {
  auto link = discovery::ReadLink(PidDir(proc_root, pid) + "/ns/net");
  if (!link.ok()) return link.error();
  auto inode = discovery::ParseBracketedInode(*link, "net");
  if (!inode) return Error{"unexpected ns/net link: " + *link, EINVAL};
  return *inode;
}

namespace discovery {

std::vector<std::string> SplitCmdline(std::string_view raw) {
  std::vector<std::string> args;
  size_t start = 0;
  while (start < raw.size()) {
    size_t end = raw.find('\0', start);
    if (end == std::string_view::npos) end = raw.size();
    args.emplace_back(raw.substr(start, end - start));
    start = end + 1;
  }
  return args;
}

uint64_t BootNsToClockTicks(uint64_t boot_ns) {
  static const uint64_t ns_per_tick = [] {
    const long hz = ::sysconf(_SC_CLK_TCK);
    return hz > 0 ? 1'000'000'000ull / static_cast<uint64_t>(hz) : 10'000'000ull;
  }();
  return boot_ns / ns_per_tick;
}

}  // namespace discovery

Result<ProcessInfo> ReadProcessInfo(uint32_t pid, const std::string& proc_root) {
  auto stat = ReadStat(pid, proc_root);
  if (!stat.ok()) return stat.error();
  ProcessInfo info = std::move(stat).value();
  const std::string dir = PidDir(proc_root, pid);

  // stat carries comm too, but the comm file is the one place it is never ambiguous.
  if (auto comm = discovery::ReadProcFile(dir + "/comm", 64); comm.ok()) {
    std::string c = std::move(comm).value();
    if (!c.empty() && c.back() == '\n') c.pop_back();
    info.comm = std::move(c);
  }
  // exe fails for kernel threads, zombies and (without root) other users' processes; a process
  // is still worth knowing about by comm and cmdline, so none of these three are required.
  if (auto exe = discovery::ReadLink(dir + "/exe"); exe.ok()) {
    std::string path = std::move(exe).value();
    if (path.size() > kDeletedSuffix.size() && path.ends_with(kDeletedSuffix)) {
      path.resize(path.size() - kDeletedSuffix.size());
      info.exe_deleted = true;
    }
    info.exe_path = std::move(path);
  }
  if (auto cmdline = discovery::ReadProcFile(dir + "/cmdline", 64 * 1024); cmdline.ok())
    info.cmdline = discovery::SplitCmdline(*cmdline);
  if (auto ns = ReadNetnsInode(pid, proc_root); ns.ok()) info.netns_inode = *ns;

  // The pid may have exited and been reused between the first read and now; the second stat
  // tells, because a new process under the same pid has a later start time.
  auto again = ReadStat(pid, proc_root);
  if (!again.ok()) return again.error();
  if (again->start_time_ticks != info.start_time_ticks)
    return Error{"pid " + std::to_string(pid) + " was reused while being read", ESRCH};
  return info;
}

std::vector<uint32_t> ListPids(const std::string& proc_root) {
  std::vector<uint32_t> pids;
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(proc_root.c_str()), &::closedir);
  if (!dir) return pids;
  while (const dirent* e = ::readdir(dir.get())) {
    auto pid = discovery::ParseDecimal(e->d_name);
    if (pid && *pid > 0 && *pid <= UINT32_MAX) pids.push_back(static_cast<uint32_t>(*pid));
  }
  std::sort(pids.begin(), pids.end());
  return pids;
}

ProcessCache::ProcessCache(size_t capacity, std::string proc_root, MetricsRegistry& metrics)
    : capacity_(std::max<size_t>(capacity, 1)),
      proc_root_(std::move(proc_root)),
      reads_(metrics.GetCounter("threadline_discovery_process_reads_total", {},
                                "Processes read from /proc on a process-cache miss")),
      evictions_(metrics.GetCounter("threadline_discovery_process_cache_evictions_total", {},
                                    "Process-cache entries evicted because the cache was full")) {}

Result<ProcessInfo> ProcessCache::Get(uint32_t pid) {
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(pid);
    if (it != entries_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
      return it->second.info;
    }
  }
  // Read without the lock: /proc reads can be slow and other pids should not wait for them.
  uint64_t epoch_before;
  {
    std::lock_guard lock(mu_);
    epoch_before = invalidation_epoch_;
  }
  reads_.Add();
  auto info = ReadProcessInfo(pid, proc_root_);
  // Failures are not cached: a vanished pid must not shadow the next process that gets it.
  if (!info.ok()) return info;

  std::lock_guard lock(mu_);
  // An exec or exit notified during the read may have come after the files were read; caching
  // that read would keep the old executable for the pid, so it is returned but not kept.
  if (invalidation_epoch_ != epoch_before) return info;
  auto it = entries_.find(pid);
  if (it != entries_.end()) {
    // Another thread read it meanwhile; keep one entry, the newer read.
    it->second.info = *info;
    lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
    return info;
  }
  lru_.push_front(pid);
  entries_.emplace(pid, Entry{*info, lru_.begin()});
  while (entries_.size() > capacity_) {
    entries_.erase(lru_.back());
    lru_.pop_back();
    evictions_.Add();
  }
  return info;
}

void ProcessCache::Erase(uint32_t pid) {
  std::lock_guard lock(mu_);
  ++invalidation_epoch_;
  auto it = entries_.find(pid);
  if (it == entries_.end()) return;
  lru_.erase(it->second.lru_pos);
  entries_.erase(it);
}

size_t ProcessCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace threadline
