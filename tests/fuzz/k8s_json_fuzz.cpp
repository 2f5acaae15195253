// libFuzzer target for the Kubernetes API JSON the agent decodes (pod lists, watch event
// lines, owner objects, Status objects). The API server is trusted, but a proxy in front of it,
// a truncated stream or a version skew must only ever yield an Error, never a crash or a hang.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/discovery/k8s_metadata.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)threadline::k8s::DecodeWatchEvent(text);
  (void)threadline::k8s::DecodeControllerOf(text);
  (void)threadline::k8s::DecodeStatusCode(text);
  auto list = threadline::k8s::DecodePodList(text);
  if (list.ok()) {
    // Whatever decodes must be usable: feed it through the store as the watcher would.
    threadline::MetricsRegistry metrics;
    threadline::K8sPodStore store(4, metrics);
    for (const auto& pod : list->items) {
      store.Upsert(pod, {});
      for (const auto& c : pod.containers) (void)store.Lookup(c.container_id);
    }
    if (!list->items.empty()) store.Remove(list->items.front().uid);
  }
  return 0;
}
