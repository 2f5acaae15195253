// RAII owners for libbpf objects: a skeleton in a unique_ptr whose deleter calls its
// __destroy, and a move-only bpf_link. Destroying them detaches everything, so an agent that
// stops (or dies: the kernel closes its fds) leaves no attachment behind.
#pragma once

#include <bpf/libbpf.h>

#include <memory>
#include <utility>
#include <vector>

namespace threadline {

template <typename Skel, void (*Destroy)(Skel*)>
struct SkeletonDeleter {
  void operator()(Skel* s) const {
    if (s) Destroy(s);
  }
};

// Usage: SkeletonPtr<capture_bpf, capture_bpf__destroy>
template <typename Skel, void (*Destroy)(Skel*)>
using SkeletonPtr = std::unique_ptr<Skel, SkeletonDeleter<Skel, Destroy>>;

class BpfLink {
 public:
  BpfLink() = default;
  explicit BpfLink(bpf_link* link) : link_(link) {}
  ~BpfLink() { reset(); }
  BpfLink(BpfLink&& o) noexcept : link_(std::exchange(o.link_, nullptr)) {}
  BpfLink& operator=(BpfLink&& o) noexcept {
    if (this != &o) {
      reset();
      link_ = std::exchange(o.link_, nullptr);
    }
    return *this;
  }
  BpfLink(const BpfLink&) = delete;
  BpfLink& operator=(const BpfLink&) = delete;

  bpf_link* get() const { return link_; }
  explicit operator bool() const { return link_ != nullptr; }
  void reset() {
    if (link_) bpf_link__destroy(link_);
    link_ = nullptr;
  }

 private:
  bpf_link* link_ = nullptr;
};

// Destroys `links` from several threads at once and returns when all are gone. Why: detaching a
// perf-event link (every tracepoint and uprobe of the agent) waits in the kernel for RCU grace
// periods (perf_event_detach_bpf_prog's tasks-trace RCU, the uprobe and tracepoint unregister
// syncs), 50-150 ms each on a loaded machine; one after the other, the agent's 60-200 links took
// 4-10 s to stop. Waiters in different threads share grace periods, so a batch costs a few.
// Falls back to the calling thread when no thread can be started. Returns the number destroyed.
size_t DestroyLinksConcurrently(std::vector<BpfLink> links);

// Where DestroyLinksInBackground left the links.
struct BackgroundDetach {
  size_t links = 0;
  int detacher_pid = 0;  // the process finishing the detach; 0: done here, synchronously
};

// Detaches `links` without making this process wait for the kernel's teardown, for a process
// that is about to exit: exit_group itself closes the fds one after the other, just as slowly
// (measured: 5-10 s), because perf_trace_destroy and perf_uprobe_destroy hold the global
// event_mutex across their grace periods, so no number of threads overlaps them. A forked
// child keeps a reference to every link (and its perf event) and closes nothing else; this
// process closes its own copies (quick: not the last reference) and goes on; the child then
// destroys them concurrently and exits. Until it has, the programs still run (libbpf's
// PERF_EVENT_IOC_DISABLE does not stop a tracepoint's or uprobe's BPF program), writing to a
// ring nobody reads. Falls back to DestroyLinksConcurrently here when fork fails.
BackgroundDetach DestroyLinksInBackground(std::vector<BpfLink> links);

}  // namespace threadline
