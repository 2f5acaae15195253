#include "agent/capabilities/probe_triggers.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

#include <spdlog/spdlog.h>

extern "C" __attribute__((noinline, used)) uint64_t threadline_capability_uprobe_target(
    uint64_t value) {
  // An opaque barrier: keeps the body distinct from any other `x + 1` (identical code folding
  // would merge them) and the argument in a register at entry.
  asm volatile("" : "+r"(value));
  return value + 1;
}

namespace threadline::capabilities {
namespace {

constexpr std::string_view kCgroupPrefix = "threadline-probe-";

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// The child's side of ChildPlan::loopback_exchange_bytes: an exit code, 0 when the accepted end
// received exactly what was sent. Async-signal-safe calls only (it runs in a forked child).
int LoopbackExchange(const ChildPlan& plan) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  const int client = ::socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0 || client < 0) return 14;
  sockaddr_in addr = Loopback(0);
  socklen_t len = sizeof(addr);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return 14;
  if (plan.loopback_exchange_mss > 0 &&
      ::setsockopt(client, IPPROTO_TCP, TCP_MAXSEG, &plan.loopback_exchange_mss,
                   sizeof(plan.loopback_exchange_mss)) != 0)
    return 14;
  if (::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return 12;
  const int server = ::accept(listener, nullptr, nullptr);
  if (server < 0) return 14;
  static uint8_t sent[kHdrOptProbeBytes];
  static uint8_t received[kHdrOptProbeBytes];
  const uint32_t total = plan.loopback_exchange_bytes < sizeof(sent) ? plan.loopback_exchange_bytes
                                                                     : sizeof(sent);
  for (uint32_t i = 0; i < total; ++i) sent[i] = static_cast<uint8_t>(i * 7 + i / 251);
  // Loopback buffers take the whole payload before the receiver reads.
  for (uint32_t off = 0; off < total;) {
    const ssize_t n = ::write(client, sent + off, total - off);
    if (n <= 0) return 13;
    off += static_cast<uint32_t>(n);
  }
  for (uint32_t off = 0; off < total;) {
    const ssize_t n = ::read(server, received + off, total - off);
    if (n <= 0) return 13;
    off += static_cast<uint32_t>(n);
  }
  return std::memcmp(sent, received, total) == 0 ? 0 : 13;
}

// A probe cgroup whose creator is gone was left by a crash; it holds no processes (its only
// member was a child that exited), so it can be removed.
void RemoveStaleProbeCgroups(const std::string& root) {
  DIR* dir = ::opendir(root.c_str());
  if (dir == nullptr) return;
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name.substr(0, kCgroupPrefix.size()) != kCgroupPrefix) continue;
    // threadline-probe-<pid>-<tid>
    const std::string pid_text(name.substr(kCgroupPrefix.size()));
    char* end = nullptr;
    const long pid = std::strtol(pid_text.c_str(), &end, 10);
    if (end == pid_text.c_str() || (*end != '\0' && *end != '-') || pid <= 0) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    const std::string path = root + "/" + std::string(name);
    if (::rmdir(path.c_str()) == 0) spdlog::info("removed stale probe cgroup {}", path);
  }
  ::closedir(dir);
}

}  // namespace

void TriggerGetppid() { ::syscall(SYS_getppid); }

void TriggerNanosleep() {
  const timespec shortest{0, 1};
  ::nanosleep(&shortest, nullptr);
}

uint64_t CallUprobeTarget(uint64_t value) {
  uint64_t (*volatile target)(uint64_t) = &threadline_capability_uprobe_target;
  return target(value);
}

Result<UprobeSite> LocateOwnCode(uintptr_t address) {
  std::ifstream maps("/proc/self/maps");
  if (!maps) return Error::FromErrno("open /proc/self/maps", errno);
  std::string line;
  while (std::getline(maps, line)) {
    // start-end perms offset dev inode path
    std::istringstream in(line);
    std::string range, perms, offset_text, dev, inode, path;
    if (!(in >> range >> perms >> offset_text >> dev >> inode)) continue;
    std::getline(in >> std::ws, path);
    const size_t dash = range.find('-');
    if (dash == std::string::npos) continue;
    const uintptr_t start = std::stoull(range.substr(0, dash), nullptr, 16);
    const uintptr_t end = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (address < start || address >= end) continue;
    if (path.empty() || path[0] != '/') {
      return Error{"the probe target is not in a file-backed mapping: " + line, ENOENT};
    }
    if (path.ends_with(" (deleted)")) {
      return Error{"the agent binary was replaced on disk since it started: " + path, ENOENT};
    }
    return UprobeSite{path, address - start + std::stoull(offset_text, nullptr, 16)};
  }
  return Error{"the probe target address is not in /proc/self/maps", ENOENT};
}

Result<LoopbackListener> LoopbackListener::Create() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::FromErrno("socket", errno);
  sockaddr_in addr = Loopback(0);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Error::FromErrno("bind 127.0.0.1:0", errno);
  }
  if (::listen(fd.get(), 4) != 0) return Error::FromErrno("listen", errno);
  socklen_t len = sizeof(addr);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Error::FromErrno("getsockname", errno);
  }
  LoopbackListener listener;
  listener.fd = std::move(fd);
  listener.port = ntohs(addr.sin_port);
  return listener;
}

Result<UniqueFd> ConnectLoopback(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::FromErrno("socket", errno);
  sockaddr_in addr = Loopback(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Error::FromErrno("connect 127.0.0.1:" + std::to_string(port), errno);
  }
  return fd;
}

Result<UniqueFd> AcceptWithin(const LoopbackListener& listener, int timeout_ms) {
  pollfd pfd{listener.fd.get(), POLLIN, 0};
  const int ready = ::poll(&pfd, 1, timeout_ms);
  if (ready < 0) return Error::FromErrno("poll", errno);
  if (ready == 0) return Error{"no connection within " + std::to_string(timeout_ms) + " ms", ETIMEDOUT};
  UniqueFd fd(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!fd.valid()) return Error::FromErrno("accept", errno);
  return fd;
}

Result<std::string> ReceiveWithin(int fd, size_t expected, int timeout_ms) {
  std::string data;
  char buffer[256];
  while (data.size() < expected) {
    pollfd pfd{fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, timeout_ms);
    if (ready < 0) return Error::FromErrno("poll", errno);
    if (ready == 0) {
      return Error{"received " + std::to_string(data.size()) + " of " + std::to_string(expected) +
                       " bytes within " + std::to_string(timeout_ms) + " ms",
                   ETIMEDOUT};
    }
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0) return Error::FromErrno("recv", errno);
    if (n == 0) break;
    data.append(buffer, static_cast<size_t>(n));
  }
  return data;
}

Result<ScopedCgroup> ScopedCgroup::Create(const std::string& root) {
  RemoveStaleProbeCgroups(root);
  // One per probing thread: the kinds probe concurrently, and two needing a cgroup must not
  // share one (the first to finish would remove it under the other).
  const std::string path = root + "/" + std::string(kCgroupPrefix) + std::to_string(::getpid()) +
                           "-" + std::to_string(::gettid());
  if (::mkdir(path.c_str(), 0755) != 0) {
    // Same pid as a crashed earlier run (pid reuse): its directory is empty, reuse it.
    if (errno != EEXIST) return Error::FromErrno("mkdir " + path, errno);
  }
  return ScopedCgroup(path);
}

ScopedCgroup::ScopedCgroup(ScopedCgroup&& other) noexcept : path_(std::move(other.path_)) {
  other.path_.clear();
}

ScopedCgroup& ScopedCgroup::operator=(ScopedCgroup&& other) noexcept {
  if (this != &other) {
    Remove();
    path_ = std::exchange(other.path_, std::string());
  }
  return *this;
}

ScopedCgroup::~ScopedCgroup() { Remove(); }

void ScopedCgroup::Remove() {
  if (path_.empty()) return;
  const std::string path = std::exchange(path_, std::string());
  // A just-reaped child can keep the cgroup populated for a moment: retry briefly on EBUSY.
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) break;
    const timespec pause{0, 1'000'000};
    ::nanosleep(&pause, nullptr);
  }
  spdlog::warn("could not remove probe cgroup {}: {}", path, std::strerror(errno));
}

Status RunProbeChild(const ChildPlan& plan, const std::function<void(pid_t)>& before_child_runs) {
  int go_pipe[2];
  if (::pipe2(go_pipe, O_CLOEXEC) != 0) return Error::FromErrno("pipe2", errno);
  UniqueFd go_read(go_pipe[0]);
  UniqueFd go_write(go_pipe[1]);

  const pid_t pid = ::fork();
  if (pid < 0) return Error::FromErrno("fork", errno);
  if (pid == 0) {
    // Child: async-signal-safe calls only. Exit codes say which step failed.
    ::close(go_write.get());  // else our own copy keeps the pipe from ever reaching EOF
    char go = 0;
    // The parent writes a byte to say go. EOF (the parent gave up, or died) is as good as a go:
    // the child only has to exit. But a probe child forked meanwhile on another probing thread
    // holds a copy of our write end (fork copies every fd), so EOF never comes if the parent
    // dies before writing: a generous alarm bounds that wait (an agent killed mid-probe left
    // such children asleep).
    ::alarm(120);
    while (::read(go_read.get(), &go, 1) < 0 && errno == EINTR) {
    }
    // The alarm guards the child's own steps only, from the go on: the parent's setup before
    // it (loading and attaching the probe's BPF program) took over 2 s on a loaded machine,
    // and an alarm started at fork then killed a healthy probe and the agent refused to run.
    ::alarm(10);
    if (plan.cgroup_procs_fd >= 0 && ::write(plan.cgroup_procs_fd, "0", 1) != 1) ::_exit(10);
    if (plan.connect_port != 0) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      if (fd < 0) ::_exit(11);
      sockaddr_in addr = Loopback(plan.connect_port);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) ::_exit(12);
    }
    if (plan.loopback_exchange_bytes > 0) ::_exit(LoopbackExchange(plan));
    ::_exit(0);
  }
  if (before_child_runs) before_child_runs(pid);
  // A byte, not only EOF: a probe child forked meanwhile on another probing thread holds a copy
  // of this write end, so EOF alone would not reach ours until that one exits, and two such
  // children waited for each other forever (the agent hung in its capability probe).
  const char go = 'g';
  while (::write(go_write.get(), &go, 1) < 0 && errno == EINTR) {
  }
  go_write.reset();
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Error::FromErrno("waitpid", errno);
  }
  if (WIFSIGNALED(status)) {
    return Error{"probe child killed by signal " + std::to_string(WTERMSIG(status)), EINTR};
  }
  switch (WEXITSTATUS(status)) {
    case 0: return OkStatus();
    case 10: return Error{"probe child could not join the probe cgroup", EPERM};
    case 11: return Error{"probe child could not create a socket", EIO};
    case 12: return Error{"probe child could not connect to the loopback listener", ECONNREFUSED};
    case 13: return Error{"the loopback exchange arrived altered or short", EIO};
    case 14: return Error{"probe child could not set up its loopback exchange", EIO};
    default: return Error{"probe child exited with " + std::to_string(WEXITSTATUS(status)), EIO};
  }
}

std::string ErrnoText(int err) {
  if (err < 0) err = -err;
  const char* name = ::strerrorname_np(err);
  return std::string(name ? name : "errno " + std::to_string(err)) + " (" + std::strerror(err) + ")";
}

}  // namespace threadline::capabilities
