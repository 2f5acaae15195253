// Kubernetes metadata of the containers on this node: what the API server says about pods
// (decoded from its JSON), who owns them (Pod -> ReplicaSet -> Deployment, Job -> CronJob,
// StatefulSet, DaemonSet), and a bounded store that maps a container id to its pod, container
// name and workload. The store is filled by the watcher thread (k8s_watcher.h) and read by
// the resource cache on the span path: lookups take one mutex and never wait on the network.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/common/result.h"

namespace threadline {

// metadata.ownerReferences[i] of an object.
struct K8sOwnerRef {
  std::string kind;  // "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob", "Deployment", ...
  std::string name;
  std::string uid;
  bool controller = false;

  bool operator==(const K8sOwnerRef&) const = default;
};

// One running (or starting) container of a pod: status.{,init,ephemeral}ContainerStatuses[i].
struct K8sContainerStatus {
  std::string name;
  std::string container_id;  // 64 hex, without the "containerd://" prefix; empty before start
  std::string runtime;       // the prefix: "containerd", "cri-o", "docker"

  bool operator==(const K8sContainerStatus&) const = default;
};

// metadata.labels, by key (selection by label, agent/discovery/pod_selection.h).
using K8sLabels = std::map<std::string, std::string, std::less<>>;

// The parts of a Pod object the agent uses.
struct K8sPod {
  std::string uid;
  std::string name;
  std::string namespace_name;
  std::string node_name;  // spec.nodeName
  std::string resource_version;
  K8sLabels labels;

  // The label the Deployment controller sets on its pods; empty without it.
  std::string_view PodTemplateHash() const {
    auto it = labels.find("pod-template-hash");
    return it == labels.end() ? std::string_view() : std::string_view(it->second);
  }
  std::optional<K8sOwnerRef> controller;  // the ownerReference with controller=true
  std::vector<K8sContainerStatus> containers;
};

// A workload in an owner chain, e.g. {"ReplicaSet", "web-7d4b9c"} then {"Deployment", "web"}.
struct K8sWorkload {
  std::string kind;
  std::string name;

  bool operator==(const K8sWorkload&) const = default;
};

// What a span's resource gets for a pod: the pod and its owners, pod's controller first.
struct K8sPodMetadata {
  std::string uid;
  std::string name;
  std::string namespace_name;
  std::string node_name;
  std::vector<K8sWorkload> owners;
  K8sLabels labels;  // for selection (pod_selection.h); not exported as attributes

  // The workload people name the service after: the top of the chain (Deployment over its
  // ReplicaSet, CronJob over its Job); nullptr for a bare pod.
  const K8sWorkload* TopWorkload() const { return owners.empty() ? nullptr : &owners.back(); }
};

struct K8sContainerMetadata {
  std::shared_ptr<const K8sPodMetadata> pod;
  std::string container_name;
};

// A watch line: {"type": ..., "object": ...}.
struct K8sWatchEvent {
  enum class Type { kAdded, kModified, kDeleted, kBookmark, kError };
  Type type = Type::kError;
  std::optional<K8sPod> pod;       // ADDED/MODIFIED/DELETED
  std::string resource_version;    // of the object (also BOOKMARK's)
  int error_code = 0;              // ERROR: the Status object's code (410 = too old)
  std::string error_message;
};

struct K8sPodList {
  std::string resource_version;
  std::string continue_token;  // metadata.continue: more pages follow
  std::vector<K8sPod> items;
  size_t undecodable_items = 0;  // items skipped for a missing uid/name/namespace
};

namespace k8s {

// JSON decoding. Unknown fields are ignored; a missing required field (metadata.uid, name,
// namespace) is an Error, never an exception.
Result<K8sPodList> DecodePodList(std::string_view json);
Result<K8sWatchEvent> DecodeWatchEvent(std::string_view line);
// A ReplicaSet or Job: its controller owner (a Deployment, a CronJob), or nullopt without one.
Result<std::optional<K8sOwnerRef>> DecodeControllerOf(std::string_view json);
// A Status object ({"kind":"Status","code":410,...}): its code, 0 when not a Status.
int DecodeStatusCode(std::string_view json);

// "containerd://<id>" -> {"containerd", "<id>"}; {"", ""} when the form is wrong.
std::pair<std::string, std::string> SplitContainerId(std::string_view container_id);

// The resource attributes of a container per the OpenTelemetry k8s conventions:
// k8s.pod.name, k8s.pod.uid, k8s.namespace.name, k8s.container.name, k8s.node.name and
// k8s.<kind>.name for each owner (deployment, replicaset, statefulset, daemonset, job, cronjob).
std::vector<std::pair<std::string, std::string>> ResourceAttributes(const K8sContainerMetadata& c);

}  // namespace k8s

// Pod -> owner chain. A ReplicaSet's Deployment and a Job's CronJob need one GET each; results
// are cached (a ReplicaSet serves every pod of a rollout). Runs on the watcher thread only.
//
// When the ReplicaSet cannot be read (no RBAC for replicasets, API error) the Deployment is
// still named when the pod carries the Deployment controller's pod-template-hash label and the
// ReplicaSet is named "<deployment>-<hash>", which is how that controller names them.
class K8sOwnerResolver {
 public:
  // get(path) -> the HTTP status and body of a GET on the API server.
  using Getter = std::function<Result<std::pair<long, std::string>>(const std::string& path)>;

  K8sOwnerResolver(Getter get, size_t capacity = 1024, MetricsRegistry& metrics = MetricsRegistry::Global());

  std::vector<K8sWorkload> Resolve(const K8sPod& pod);

 private:
  // The controller of namespace/kind/name, from the cache or the API.
  std::optional<K8sOwnerRef> ControllerOf(const std::string& api_path, const std::string& cache_key);

  struct Cached {
    std::optional<K8sOwnerRef> controller;
    bool failed = false;  // the GET failed: retried after kRetryFailedAfter
    std::chrono::steady_clock::time_point at;
  };
  Getter get_;
  size_t capacity_;
  Counter& gets_ok_;
  Counter& gets_failed_;
  std::map<std::string, Cached> cache_;
};

// What the resource cache and the pod selection ask: the metadata of a container id, if known
// yet. generation() changes whenever a pod is added, changed or removed, so a caller holding an
// answer built without metadata (or with old metadata) knows when asking again can help.
class ContainerMetadataSource {
 public:
  virtual ~ContainerMetadataSource() = default;
  virtual std::optional<K8sContainerMetadata> Lookup(std::string_view container_id) const = 0;
  virtual uint64_t generation() const = 0;
};

// Pods of this node, bounded: past max_pods the least recently changed pod is evicted (counted
// in threadline_k8s_pod_cache_evictions_total). Thread-safe.
class K8sPodStore : public ContainerMetadataSource {
 public:
  explicit K8sPodStore(size_t max_pods = 1024, MetricsRegistry& metrics = MetricsRegistry::Global());

  // A full list (initial or resync): pods not in it are dropped.
  void Replace(const std::vector<std::pair<K8sPod, std::vector<K8sWorkload>>>& pods);
  void Upsert(const K8sPod& pod, std::vector<K8sWorkload> owners);
  void Remove(const std::string& uid);

  std::optional<K8sContainerMetadata> Lookup(std::string_view container_id) const override;
  uint64_t generation() const override { return generation_.load(std::memory_order_acquire); }

  size_t size() const;
  // Pod uids, sorted (tests and debugging).
  std::vector<std::string> PodUids() const;

 private:
  struct Entry {
    std::shared_ptr<const K8sPodMetadata> meta;
    std::vector<K8sContainerStatus> containers;
    std::list<std::string>::iterator lru_pos;
  };
  struct ContainerRef {
    std::string pod_uid;
    std::string container_name;
  };
  struct Tables {
    std::list<std::string> lru;  // front = most recently changed
    std::unordered_map<std::string, Entry> pods;
    std::unordered_map<std::string, ContainerRef> containers;
  };
  void UpsertInto(Tables& t, const K8sPod& pod, std::vector<K8sWorkload> owners);
  static void RemoveFrom(Tables& t, const std::string& uid);

  const size_t max_pods_;
  Counter& evictions_;
  Gauge& pods_gauge_;
  mutable std::mutex mu_;
  Tables t_;  // guarded by mu_
  std::atomic<uint64_t> generation_{0};
};

}  // namespace threadline
