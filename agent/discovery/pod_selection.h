// Selection by Kubernetes namespace and pod labels (--namespace, --label; config
// selection.namespaces / selection.labels).
//
// The kernel filters on the task's cgroup: every container runs in a cgroup of its own, and
// bpf_get_current_cgroup_id() is one helper call, so the kernel needs a set of cgroup ids
// (the "selected_cgroups" map, bpf/capture/shared.bpf.h), not a per-process decision. That set
// follows the pods by itself: processes a container forks or execs later are in it at once,
// and nothing per process is read in userspace.
//
// PodCgroupSelector keeps the set: it walks the cgroup v2 tree, reads the container id each
// directory's path names (cgroup_id.h: containerd, CRI-O, Docker; systemd and cgroupfs
// drivers; a container's nested cgroups too), asks the pod store (k8s_metadata.h) for the
// container's pod, and selects the directory when the pod matches the rule. It runs again on
// its own thread whenever the pod store changes (a pod added, relabelled, a container
// restarted with a new id) and every `rescan_interval` (nested cgroups created later), and
// applies only the difference to the kernel map.
//
// What follows from this design, and is said in the README:
//   - cgroup v2 is required (the unified hierarchy of hybrid hosts will do);
//   - processes outside any pod (the node's own services) are never selected by this rule;
//   - a container's first moments, before the API server reports its container id and the
//     watch delivers it, are not traced (typically well under a second after the container
//     starts; the same holds for every API-driven tracer);
//   - combined with --pid/--exe, both must match (AND), so "--namespace shop --exe java"
//     traces the Java processes of namespace shop.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/common/result.h"
#include "agent/discovery/k8s_metadata.h"

namespace threadline {

struct PodSelectionRule {
  std::vector<std::string> namespaces;  // fnmatch(3) globs on the pod's namespace; empty: any
  std::vector<std::pair<std::string, std::string>> labels;  // each must equal; empty: any

  // From the settings: namespaces as given, labels as "key=value" items (an item without '='
  // or with an empty key is an error).
  static Result<PodSelectionRule> Create(std::vector<std::string> namespaces,
                                         const std::vector<std::string>& label_items);

  bool active() const { return !namespaces.empty() || !labels.empty(); }
  bool Matches(const K8sPodMetadata& pod) const;
  // "namespaces [shop, web-*], labels [app=checkout]", for logs.
  std::string Describe() const;
};

// One directory of the cgroup tree whose path names a container.
struct ContainerCgroupDir {
  uint64_t cgroup_id = 0;    // the directory's inode number: the kernel's cgroup id on cgroup v2
  std::string container_id;  // 64 hex
  std::string path;          // relative to the root, starting with '/'
};

struct CgroupScanResult {
  std::vector<ContainerCgroupDir> containers;
  size_t directories = 0;  // directories visited
  bool truncated = false;  // stopped at max_directories or max_depth somewhere
};

// Walks the cgroup tree under `root` (a cgroup v2 mount point). Unreadable directories (a
// cgroup removed during the walk) are skipped.
CgroupScanResult ScanContainerCgroups(const std::string& root, size_t max_directories = 200000,
                                      int max_depth = 24);

struct PodCgroupSelectorOptions {
  std::string cgroup_root;  // the cgroup v2 mount point
  std::chrono::milliseconds poll_interval{200};     // how often the pod store's generation is checked
  std::chrono::milliseconds rescan_interval{10000}; // full rescan even without a pod change
};

// The kernel side of the set: adds and removes cgroup ids (CaptureProgram::SelectCgroup).
struct CgroupSetWriter {
  std::function<Status(uint64_t)> add;
  std::function<Status(uint64_t)> remove;
};

class PodCgroupSelector {
 public:
  // `pods` and the writer's targets must outlive the selector.
  PodCgroupSelector(PodSelectionRule rule, const ContainerMetadataSource& pods, CgroupSetWriter writer,
                    PodCgroupSelectorOptions options, MetricsRegistry& metrics = MetricsRegistry::Global());
  ~PodCgroupSelector();  // Stop()
  PodCgroupSelector(const PodCgroupSelector&) = delete;
  PodCgroupSelector& operator=(const PodCgroupSelector&) = delete;

  struct SyncReport {
    size_t containers_seen = 0;  // container cgroups found in the tree
    size_t unknown = 0;          // ... whose pod the store does not know (yet)
    size_t selected = 0;         // cgroups in the kernel set after the pass
    size_t added = 0;
    size_t removed = 0;
    size_t failed = 0;           // kernel map updates that failed (e.g. the map is full)
  };
  // One pass, on the caller's thread (start-up and tests).
  SyncReport Sync();

  // The background thread: a pass whenever the pod store's generation changes, and every
  // rescan_interval.
  void Start();
  void Stop();

  size_t selected() const;
  uint64_t passes() const { return passes_.load(std::memory_order_acquire); }

 private:
  void Run();

  const PodSelectionRule rule_;
  const ContainerMetadataSource& pods_;
  const CgroupSetWriter writer_;
  const PodCgroupSelectorOptions options_;
  Gauge& selected_gauge_;
  Counter& passes_counter_;
  Counter& failures_;
  Counter& truncated_;
  mutable std::mutex mu_;             // guards selected_ and serialises passes
  std::unordered_set<uint64_t> selected_;
  bool logged_truncation_ = false;
  std::atomic<uint64_t> passes_{0};
  std::atomic<bool> stop_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::thread thread_;
};

}  // namespace threadline
