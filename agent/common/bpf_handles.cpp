#include "agent/common/bpf_handles.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>

namespace threadline {

namespace {
// Enough waiters that a few hundred links cost a couple of grace periods; each thread only
// sleeps in close(), so the count is not a CPU cost.
constexpr size_t kMaxDetachThreads = 64;

// The fds a background detacher must keep: every link's own fd and every perf event (libbpf
// keeps a perf-event-based link's perf event fd to itself; the agent opens no other perf
// events). Sorted.
std::vector<int> LinkFds(const std::vector<BpfLink>& links) {
  std::vector<int> fds;
  for (const auto& l : links) {
    if (l) fds.push_back(bpf_link__fd(l.get()));
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    std::error_code link_ec;
    const auto target = std::filesystem::read_symlink(entry.path(), link_ec);
    if (link_ec || target.native() != "anon_inode:[perf_event]") continue;
    try {
      fds.push_back(std::stoi(entry.path().filename().string()));
    } catch (const std::exception&) {
    }
  }
  std::sort(fds.begin(), fds.end());
  fds.erase(std::unique(fds.begin(), fds.end()), fds.end());
  return fds;
}

// Closes every fd but the sorted `keep` ones (stdout, stderr, sockets, maps, programs...), so
// the detacher holds no pipe a parent reads to EOF and no port a successor binds.
void CloseAllBut(const std::vector<int>& keep) {
  unsigned int from = 0;
  for (int fd : keep) {
    if (fd < 0) continue;
    if (static_cast<unsigned int>(fd) > from) close_range(from, static_cast<unsigned int>(fd) - 1, 0);
    from = static_cast<unsigned int>(fd) + 1;
  }
  close_range(from, ~0u, 0);
}
}  // namespace

size_t DestroyLinksConcurrently(std::vector<BpfLink> links) {
  const size_t n = links.size();
  if (n <= 1) return n;  // the vector's destructor detaches it
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) links[i].reset();
  };
  std::vector<std::thread> threads;
  const size_t helpers = std::min(n, kMaxDetachThreads) - 1;  // the caller is one of them
  threads.reserve(helpers);
  for (size_t i = 0; i < helpers; ++i) {
    try {
      threads.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // a pids limit (containers): fewer threads, same result
    }
  }
  work();
  for (auto& t : threads) t.join();
  return n;
}

BackgroundDetach DestroyLinksInBackground(std::vector<BpfLink> links) {
  BackgroundDetach result{links.size(), 0};
  if (links.empty()) return result;
  const std::vector<int> keep = LinkFds(links);
  int go[2];
  if (pipe2(go, O_CLOEXEC) != 0) {
    DestroyLinksConcurrently(std::move(links));
    return result;
  }
  const pid_t child = fork();
  if (child == 0) {
    // The detacher. Only this thread exists here, and the other threads of the parent may have
    // held locks at the fork: no logging (libbpf's print callback logs), nothing but closes.
    libbpf_set_print(nullptr);
    prctl(PR_SET_NAME, "tl-detach", 0, 0, 0);
    std::vector<int> mine = keep;
    mine.push_back(go[0]);
    std::sort(mine.begin(), mine.end());
    CloseAllBut(mine);  // also the write end: EOF comes when the parent is done or gone
    char byte;
    while (read(go[0], &byte, 1) < 0 && errno == EINTR) {
    }
    // Now this process holds the last reference to each link: the kernel's teardown runs here.
    DestroyLinksConcurrently(std::move(links));
    _exit(0);
  }
  close(go[0]);
  if (child < 0) {
    close(go[1]);
    DestroyLinksConcurrently(std::move(links));
    return result;
  }
  // Drops this process's references: quick, the child holds them too.
  for (auto& l : links) l.reset();
  close(go[1]);
  result.detacher_pid = child;
  return result;
}

}  // namespace threadline
