// Keeps K8sPodStore equal to the API server's view of this node's pods, on a thread of its own:
//
//   LIST  /api/v1/pods?fieldSelector=spec.nodeName=<node>          (paged; replaces the store)
//   WATCH the same, from the list's resourceVersion, with bookmarks (ADDED/MODIFIED upsert,
//         DELETED removes, BOOKMARK moves the resourceVersion on)
//
// and again from the LIST when the watch cannot continue: a 410 Gone (as an HTTP status or an
// ERROR event: the resourceVersion is too old), any other ERROR event, an undecodable event
// line, or a failed request. A dropped connection or a watch the server timed out resumes from
// the last resourceVersion seen (what client-go's reflector does; a 410 then sends it to
// LIST). Failures back off exponentially (with jitter) up to backoff_max; a LIST that works
// resets the backoff.
//
// Owner chains are resolved before a pod is published, so a span never sees a pod without
// its workload when the API could name it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "agent/common/metrics.h"
#include "agent/discovery/k8s_client.h"
#include "agent/discovery/k8s_metadata.h"

namespace threadline {

struct K8sWatcherOptions {
  std::string node_name;
  std::chrono::milliseconds backoff_initial{1000};
  std::chrono::milliseconds backoff_max{30000};
  int watch_timeout_s = 300;  // timeoutSeconds asked of the server per watch
  int list_page_size = 500;
};

class K8sPodWatcher {
 public:
  K8sPodWatcher(K8sClient& client, K8sPodStore& store, K8sWatcherOptions options,
                MetricsRegistry& metrics = MetricsRegistry::Global());
  ~K8sPodWatcher();  // Stop()
  K8sPodWatcher(const K8sPodWatcher&) = delete;
  K8sPodWatcher& operator=(const K8sPodWatcher&) = delete;

  void Start();
  // Ends the thread: an open watch is abandoned within about a second.
  void Stop();

  // LISTs completed (tests wait on it); the store holds a full list once it is not 0.
  uint64_t lists_completed() const { return lists_.load(std::memory_order_acquire); }

 private:
  void Run();
  // One LIST into the store; false on failure. Sets resource_version_.
  bool List();
  enum class WatchEnd { kResume, kRelist, kFailed, kStopped };
  WatchEnd Watch();
  // Sleeps the current backoff (interruptible by Stop) and doubles it.
  void Backoff();
  std::string PodsPath() const;

  K8sClient& client_;
  K8sPodStore& store_;
  K8sWatcherOptions options_;
  MetricsRegistry& metrics_;
  K8sOwnerResolver owners_;
  std::string resource_version_;
  std::chrono::milliseconds backoff_;
  std::atomic<uint64_t> lists_{0};
  std::atomic<bool> stop_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::thread thread_;
};

// What the agent configures (AgentOptions::kubernetes, resolved).
struct K8sMetadataConfig {
  std::string api_server;  // https://... in a cluster; http:// for tests against a recorded API
  std::string node_name;
  std::string token_file = kServiceAccountTokenFile;
  std::string ca_file = kServiceAccountCaFile;
  size_t cache_max_pods = 5000;
};

// The client, the pod store and the watcher thread: all the agent holds for Kubernetes
// metadata. The store is what the resource cache reads.
class K8sMetadataService {
 public:
  // Fails only on a bad configuration (no node name, not an http(s) URL); an API server that
  // does not answer is retried in the background.
  static Result<std::unique_ptr<K8sMetadataService>> Start(K8sMetadataConfig config,
                                                           MetricsRegistry& metrics = MetricsRegistry::Global());
  ~K8sMetadataService();

  const K8sPodStore& store() const { return *store_; }

 private:
  K8sMetadataService() = default;
  std::unique_ptr<K8sClient> client_;
  std::unique_ptr<K8sPodStore> store_;
  std::unique_ptr<K8sPodWatcher> watcher_;
};

}  // namespace threadline
