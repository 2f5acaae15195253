#include "agent/runtimes/node_async_context.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/common/unique_fd.h"
#include "agent/discovery/proc_fs.h"
#include "agent/discovery/proc_socket_resolver.h"
#include "agent/discovery/process_info.h"
#include "agent/kernel/capture_program.h"
#include "agent/runtimes/inspector_client.h"
#include "agent/runtimes/node_helper_js.h"

namespace threadline {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// When a process is looked at after its exec: Node installs its SIGUSR1 handler while starting;
// until then the signal's default action would end the process.
constexpr milliseconds kAttemptDelays[] = {milliseconds(1000), milliseconds(3000), milliseconds(10000)};
constexpr milliseconds kInspectorOpenWait(3000);
constexpr milliseconds kInspectorCallTimeout(3000);
constexpr milliseconds kInspectorCloseWait(3000);

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

uint64_t InodeOf(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

bool IsNodeExecutable(const std::string& exe) {
  std::string base = std::filesystem::path(exe).filename().string();
  if (base.ends_with(" (deleted)")) base.resize(base.size() - 10);
  std::string_view b = base;
  if (b.starts_with("nodejs")) b.remove_prefix(6);
  else if (b.starts_with("node")) b.remove_prefix(4);
  else return false;
  return b.find_first_not_of("0123456789.") == std::string_view::npos;
}

// Does the process ask for an inspector of its own (command line or NODE_OPTIONS)?
bool HasInspectorFlags(const std::string& proc) {
  for (const std::string& file : {proc + "/cmdline", proc + "/environ"}) {
    const std::string text = ReadFile(file);
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\0', start);
      if (end == std::string::npos) end = text.size();
      std::string_view item(text.data() + start, end - start);
      const bool env = file.ends_with("environ");
      if (!env || item.starts_with("NODE_OPTIONS=")) {
        for (std::string_view flag : {"--inspect", "--debug-port", "--disable-sigusr1"})
          if (item.find(flag) != std::string_view::npos) return true;
      }
      start = end + 1;
    }
  }
  return false;
}

// Is SIGUSR1 caught (SigCgt in /proc/<pid>/status)?
bool CatchesSigusr1(const std::string& proc) {
  std::istringstream in(ReadFile(proc + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("SigCgt:")) continue;
    const uint64_t mask = std::strtoull(line.c_str() + 7, nullptr, 16);
    return (mask >> (SIGUSR1 - 1)) & 1;
  }
  return false;
}

// Inodes of the TCP sockets in the process's network namespace that `keep` selects.
template <typename Keep>
std::vector<uint64_t> TcpSocketInodes(const std::string& proc, Keep keep) {
  std::vector<uint64_t> out;
  for (auto [table, family] : {std::pair{"/net/tcp", AF_INET}, std::pair{"/net/tcp6", AF_INET6}}) {
    auto text = discovery::ReadProcFile(proc + table);
    if (!text.ok()) continue;
    for (const TcpSocketEntry& e : discovery::ParseProcNetTcp(*text, static_cast<uint16_t>(family)))
      if (e.inode != 0 && keep(e)) out.push_back(e.inode);
  }
  return out;
}

// Inodes of the sockets listening on `port` in the process's network namespace.
std::vector<uint64_t> ListenersOn(const std::string& proc, uint16_t port) {
  constexpr uint8_t kTcpListen = 10;
  return TcpSocketInodes(proc, [&](const TcpSocketEntry& e) { return e.state == kTcpListen && e.tuple.local_port == port; });
}

// The process's fd for one of these sockets and what /proc/<pid>/fd/<fd> reads
// ("socket:[inode]"); {-1, ""} when it holds none of them.
std::pair<int, std::string> FdOfSocket(const std::string& proc, const std::vector<uint64_t>& inodes) {
  if (inodes.empty()) return {-1, ""};
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(proc + "/fd", ec)) {
    auto target = discovery::ReadLink(entry.path().string());
    auto inode = target.ok() ? discovery::ParseBracketedInode(*target, "socket") : std::nullopt;
    if (!inode || std::find(inodes.begin(), inodes.end(), *inode) == inodes.end()) continue;
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    return {std::atoi(name.c_str()), *target};
  }
  return {-1, ""};
}

// Is one of these sockets the process's own?
bool OwnsSocket(const std::string& proc, const std::vector<uint64_t>& inodes) {
  return FdOfSocket(proc, inodes).first >= 0;
}

// The Node process's end of the agent's inspector session: the socket on `inspector_port` whose
// peer is the agent's `session_port`. The helper waits for that socket to close before it closes
// the inspector (node_helper_js.h says why). Looked up here, by the agent, so that the
// application's main thread never scans its network namespace's socket table.
std::pair<int, std::string> SessionSocket(const std::string& proc, uint16_t inspector_port,
                                          uint16_t session_port) {
  constexpr uint8_t kTcpEstablished = 1;
  return FdOfSocket(proc, TcpSocketInodes(proc, [&](const TcpSocketEntry& e) {
                      return e.state == kTcpEstablished && e.tuple.local_port == inspector_port &&
                             e.tuple.remote_port == session_port;
                    }));
}

// While alive after Enter, the calling thread is in another network namespace; back home at the
// end (the worker thread must never stay elsewhere).
class ThreadNetns {
 public:
  ThreadNetns() = default;
  ThreadNetns(const ThreadNetns&) = delete;
  ThreadNetns& operator=(const ThreadNetns&) = delete;
  ~ThreadNetns() {
    if (home_.valid() && ::setns(home_.get(), CLONE_NEWNET) != 0)
      spdlog::error("Node async context: cannot return to the agent's network namespace: {}",
                    std::strerror(errno));
  }
  Status Enter(const std::string& ns_path) {
    UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!home.valid()) return Error::FromErrno("open /proc/thread-self/ns/net", errno);
    UniqueFd theirs(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!theirs.valid()) return Error::FromErrno("open " + ns_path, errno);
    if (::setns(theirs.get(), CLONE_NEWNET) != 0) return Error::FromErrno("setns", errno);
    home_ = std::move(home);
    return OkStatus();
  }

 private:
  UniqueFd home_;
};

}  // namespace

NodeAsyncContext::NodeAsyncContext(CaptureProgram& capture, NodeAsyncContextOptions options,
                                   MetricsRegistry& metrics)
    : capture_(capture), options_(std::move(options)), metrics_(metrics) {}

NodeAsyncContext::~NodeAsyncContext() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

Result<std::unique_ptr<NodeAsyncContext>> NodeAsyncContext::Create(CaptureProgram& capture,
                                                                   NodeAsyncContextOptions options,
                                                                   MetricsRegistry& metrics) {
  std::unique_ptr<NodeAsyncContext> n(new NodeAsyncContext(capture, std::move(options), metrics));
  n->markers_fd_ = capture.MapFd("node_markers");
  if (n->markers_fd_ < 0) return Error{"capture object has no map node_markers"};
  n->own_netns_ = InodeOf("/proc/self/ns/net");
  spdlog::info("Node async context on: traced Node.js processes get a helper through their inspector "
               "(127.0.0.1:{}, open only while it loads); see docs/parenting.md",
               n->options_.inspector_port);
  if (n->options_.scan_at_start) {
    for (uint32_t pid : ListPids(n->options_.proc_root)) {
      if (pid == n->options_.agent_pid) continue;
      std::error_code ec;
      const auto exe = std::filesystem::read_symlink(n->options_.proc_root + "/" + std::to_string(pid) + "/exe", ec);
      if (!ec && IsNodeExecutable(exe.string())) n->Schedule(pid, 0, milliseconds(0));
    }
  }
  n->worker_ = std::thread([p = n.get()] { p->Run(); });
  return n;
}

void NodeAsyncContext::Schedule(uint32_t pid, int attempt, milliseconds delay) {
  {
    std::lock_guard lock(mu_);
    if (due_.size() >= 4096) return;  // an exec storm: short-lived processes
    due_.emplace(Clock::now() + delay, std::make_pair(pid, attempt));
  }
  cv_.notify_one();
}

void NodeAsyncContext::OnExec(uint32_t pid) {
  if (pid != options_.agent_pid) Schedule(pid, 0, kAttemptDelays[0]);
}

void NodeAsyncContext::OnExit(uint32_t pid) {
  std::lock_guard lock(mu_);
  auto it = loaded_.find(pid);
  if (it == loaded_.end()) return;
  bpf_map_delete_elem(markers_fd_, &pid);
  if (per_pid_series_.count(pid))
    metrics_.GetGauge("threadline_node_async_context_loaded", {{"pid", std::to_string(pid)}, {"exe", it->second}})
        .Set(0);
  loaded_.erase(it);
  LoadedNow().Set(static_cast<int64_t>(loaded_.size()));
}

void NodeAsyncContext::Run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (due_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = due_.begin();
    if (first->first > Clock::now()) {
      cv_.wait_until(lock, first->first);
      continue;
    }
    const auto [pid, attempt] = first->second;
    due_.erase(first);
    lock.unlock();
    const std::string result = Load(pid);
    const int next = attempt + 1;
    if (result == "not_ready" && next < static_cast<int>(std::size(kAttemptDelays))) {
      Schedule(pid, next, kAttemptDelays[next] - kAttemptDelays[attempt]);
    } else if (result != "not_node" && result != "gone" && result != "already") {
      Count(result == "not_ready" ? "no_signal_handler" : result);
    }
    lock.lock();
  }
}

Gauge& NodeAsyncContext::LoadedNow() {
  return metrics_.GetGauge("threadline_node_async_context_processes", {},
                           "Node.js processes running with the async-context helper loaded");
}

void NodeAsyncContext::Count(const std::string& result) {
  metrics_
      .GetCounter("threadline_node_async_context_total", {{"result", result}},
                  "Node.js processes looked at for the async-context helper, by outcome")
      .Add();
}

std::string NodeAsyncContext::Load(uint32_t pid) {
  const std::string proc = options_.proc_root + "/" + std::to_string(pid);
  std::error_code ec;
  const std::string exe = std::filesystem::read_symlink(proc + "/exe", ec).string();
  if (ec) return "gone";
  if (!IsNodeExecutable(exe)) return "not_node";
  {
    std::lock_guard lock(mu_);
    if (loaded_.count(pid)) return "already";
  }
  if (!options_.traced(pid)) return "not_node";  // not ours to touch: not counted either
  const uint16_t port = options_.inspector_port;
  auto skip = [&](const std::string& result, const std::string& why) {
    spdlog::info("Node async context: pid {} ({}) left alone ({}): {}", pid, exe, result, why);
    return result;
  };
  if (HasInspectorFlags(proc))
    return skip("has_inspector", "it sets its own inspector or debug flags");
  if (!CatchesSigusr1(proc)) return "not_ready";  // SIGUSR1 would end it: not up yet
  if (!ListenersOn(proc, port).empty())
    return skip("port_busy", "something already listens on 127.0.0.1:" + std::to_string(port) +
                                 " (an inspector, or another program)");

  // A process in another network namespace (a container): its inspector listens on that
  // namespace's loopback, so this thread talks to it from there (setns moves only this thread).
  ThreadNetns netns;
  if (InodeOf(proc + "/ns/net") != own_netns_) {
    if (auto entered = netns.Enter(proc + "/ns/net"); !entered.ok())
      return skip("other_netns", "cannot enter its network namespace: " + entered.error().message);
  }

  const auto opened = Clock::now();
  if (::kill(static_cast<pid_t>(pid), SIGUSR1) != 0) return errno == ESRCH ? "gone" : skip("error", std::strerror(errno));
  bool listening = false;
  while (Clock::now() - opened < kInspectorOpenWait) {
    if (OwnsSocket(proc, ListenersOn(proc, port))) {
      listening = true;
      break;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  if (!listening) return skip("refused", "its inspector did not open on 127.0.0.1:" + std::to_string(port));

  std::string detail;
  int marker_fd = -1;
  auto target = ListInspectorTarget(port, kInspectorCallTimeout);
  if (!target.ok()) {
    detail = target.error().message;
  } else {
    auto answer = EvaluateInInspector(
        port, *target,
        [&](uint16_t session_port) {
          const auto [session_fd, session_link] = SessionSocket(proc, port, session_port);
          return NodeAsyncContextHelperJs(session_fd, session_link);
        },
        kInspectorCallTimeout);
    if (!answer.ok()) {
      detail = answer.error().message;
    } else {
      nlohmann::json j = nlohmann::json::parse(*answer, nullptr, false);
      if (j.is_object() && j.value("ok", false) && j.contains("fd") && j["fd"].is_number_integer()) {
        marker_fd = j["fd"].get<int>();
        detail = j.value("node", std::string());
      } else {
        detail = "unexpected answer " + *answer;
      }
    }
  }
  // The helper closes the inspector once we are gone; make sure it did, and when it did not run
  // (or did not get that far), ask the inspector to close itself.
  auto wait_closed = [&](milliseconds budget) {
    const auto until = Clock::now() + budget;
    do {
      if (!OwnsSocket(proc, ListenersOn(proc, port))) return true;
      std::this_thread::sleep_for(milliseconds(10));
    } while (Clock::now() < until);
    return false;
  };
  bool closed = wait_closed(kInspectorCloseWait);
  if (!closed) {
    auto again = target.ok() ? target : ListInspectorTarget(port, kInspectorCallTimeout);
    if (again.ok())
      (void)EvaluateInInspector(
          port, *again,
          [&](uint16_t session_port) {
            const auto [session_fd, session_link] = SessionSocket(proc, port, session_port);
            return NodeInspectorCloseJs(session_fd, session_link);
          },
          kInspectorCallTimeout);
    closed = wait_closed(kInspectorCloseWait);
  }
  const auto open_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - opened).count();
  if (!closed) {
    Count("inspector_left_open");
    spdlog::warn("Node async context: pid {} ({}): its inspector on 127.0.0.1:{} is still open {} ms "
                 "after the helper asked it to close", pid, exe, port, open_ms);
  }
  if (marker_fd < 0) return skip("helper_failed", detail);

  if (bpf_map_update_elem(markers_fd_, &pid, &marker_fd, BPF_ANY) != 0)
    return skip("error", std::string("marker map: ") + std::strerror(errno));
  capture_.SetNodeHelpersOn(true);
  {
    std::lock_guard lock(mu_);
    loaded_[pid] = exe;
    // A series per process, for the first ones: the registry keeps every series it made, so a
    // node that restarts Node processes all day must not grow /metrics without bound.
    if (per_pid_series_.size() < kMaxPerPidSeries || per_pid_series_.count(pid)) {
      per_pid_series_.insert(pid);
      metrics_
          .GetGauge("threadline_node_async_context_loaded", {{"pid", std::to_string(pid)}, {"exe", exe}},
                    "1 while the async-context helper is loaded in this Node.js process (the "
                    "first 256 processes; all are logged)")
          .Set(1);
    }
    LoadedNow().Set(static_cast<int64_t>(loaded_.size()));
  }
  spdlog::info("Node async context: helper loaded into pid {} ({}, Node {}) through its inspector on "
               "127.0.0.1:{}, open {} ms{}; marker fd {}",
               pid, exe, detail, port, open_ms, closed ? " then closed" : " (STILL OPEN)", marker_fd);
  return "loaded";
}

}  // namespace threadline
