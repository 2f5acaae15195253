#include "agent/discovery/k8s_metadata.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <nlohmann/json.hpp>

namespace threadline {

namespace {

using Json = nlohmann::json;

// Failed GETs of owners are not repeated for every pod event of the same owner.
constexpr auto kRetryFailedAfter = std::chrono::seconds(60);

// Parsing never throws: a bad document is a discarded value.
std::optional<Json> Parse(std::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

const Json* Field(const Json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string Str(const Json& j, const char* key) {
  const Json* f = Field(j, key);
  return f && f->is_string() ? f->get<std::string>() : std::string();
}

std::optional<K8sOwnerRef> ControllerRef(const Json& metadata) {
  const Json* refs = Field(metadata, "ownerReferences");
  if (!refs || !refs->is_array()) return std::nullopt;
  for (const Json& r : *refs) {
    const Json* c = Field(r, "controller");
    if (!c || !c->is_boolean() || !c->get<bool>()) continue;
    K8sOwnerRef ref{Str(r, "kind"), Str(r, "name"), Str(r, "uid"), true};
    if (!ref.kind.empty() && !ref.name.empty()) return ref;
  }
  return std::nullopt;
}

Result<K8sPod> PodFromJson(const Json& j) {
  const Json* metadata = Field(j, "metadata");
  if (!metadata || !metadata->is_object()) return Error{"pod without metadata", EINVAL};
  K8sPod pod;
  pod.uid = Str(*metadata, "uid");
  pod.name = Str(*metadata, "name");
  pod.namespace_name = Str(*metadata, "namespace");
  if (pod.uid.empty() || pod.name.empty() || pod.namespace_name.empty())
    return Error{"pod without metadata.uid/name/namespace", EINVAL};
  pod.resource_version = Str(*metadata, "resourceVersion");
  if (const Json* labels = Field(*metadata, "labels"); labels && labels->is_object()) {
    for (auto it = labels->begin(); it != labels->end(); ++it)
      if (it.value().is_string()) pod.labels.emplace(it.key(), it.value().get<std::string>());
  }
  pod.controller = ControllerRef(*metadata);
  if (const Json* spec = Field(j, "spec")) pod.node_name = Str(*spec, "nodeName");
  if (const Json* status = Field(j, "status")) {
    for (const char* list : {"containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"}) {
      const Json* statuses = Field(*status, list);
      if (!statuses || !statuses->is_array()) continue;
      for (const Json& s : *statuses) {
        K8sContainerStatus c;
        c.name = Str(s, "name");
        auto [runtime, id] = k8s::SplitContainerId(Str(s, "containerID"));
        c.runtime = std::move(runtime);
        c.container_id = std::move(id);
        if (!c.name.empty()) pod.containers.push_back(std::move(c));
      }
    }
  }
  return pod;
}

std::string LowerKind(std::string_view kind) {
  std::string out(kind);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

namespace k8s {

std::pair<std::string, std::string> SplitContainerId(std::string_view container_id) {
  size_t sep = container_id.find("://");
  if (sep == std::string_view::npos || sep == 0 || sep + 3 >= container_id.size()) return {};
  return {std::string(container_id.substr(0, sep)), std::string(container_id.substr(sep + 3))};
}

Result<K8sPodList> DecodePodList(std::string_view json) {
  auto j = Parse(json);
  if (!j || !j->is_object()) return Error{"pod list: not a JSON object", EINVAL};
  if (Str(*j, "kind") == "Status") return Error{"pod list: got a Status: " + Str(*j, "message"), EINVAL};
  K8sPodList list;
  if (const Json* metadata = Field(*j, "metadata")) {
    list.resource_version = Str(*metadata, "resourceVersion");
    list.continue_token = Str(*metadata, "continue");
  }
  const Json* items = Field(*j, "items");
  // "items": null is what the API server sends for an empty list.
  if (items && !items->is_array() && !items->is_null()) return Error{"pod list: items is not an array", EINVAL};
  if (items && items->is_array()) {
    for (const Json& item : *items) {
      auto pod = PodFromJson(item);
      if (pod.ok()) {
        list.items.push_back(std::move(pod).value());
      } else {
        ++list.undecodable_items;
      }
    }
  }
  return list;
}

Result<K8sWatchEvent> DecodeWatchEvent(std::string_view line) {
  auto j = Parse(line);
  if (!j || !j->is_object()) return Error{"watch event: not a JSON object", EINVAL};
  K8sWatchEvent ev;
  std::string type = Str(*j, "type");
  const Json* object = Field(*j, "object");
  if (!object || !object->is_object()) return Error{"watch event without object", EINVAL};
  if (type == "ADDED") {
    ev.type = K8sWatchEvent::Type::kAdded;
  } else if (type == "MODIFIED") {
    ev.type = K8sWatchEvent::Type::kModified;
  } else if (type == "DELETED") {
    ev.type = K8sWatchEvent::Type::kDeleted;
  } else if (type == "BOOKMARK") {
    ev.type = K8sWatchEvent::Type::kBookmark;
  } else if (type == "ERROR") {
    ev.type = K8sWatchEvent::Type::kError;
    const Json* code = Field(*object, "code");
    ev.error_code = code && code->is_number_integer() ? code->get<int>() : 0;
    ev.error_message = Str(*object, "message");
    return ev;
  } else {
    return Error{"watch event of unknown type \"" + type + "\"", EINVAL};
  }
  if (const Json* metadata = Field(*object, "metadata")) ev.resource_version = Str(*metadata, "resourceVersion");
  if (ev.type == K8sWatchEvent::Type::kBookmark) return ev;  // only metadata.resourceVersion is set
  ASSIGN_OR_RETURN(ev.pod, PodFromJson(*object));
  return ev;
}

Result<std::optional<K8sOwnerRef>> DecodeControllerOf(std::string_view json) {
  auto j = Parse(json);
  if (!j || !j->is_object()) return Error{"owner object: not a JSON object", EINVAL};
  const Json* metadata = Field(*j, "metadata");
  if (!metadata || Str(*metadata, "name").empty()) return Error{"owner object without metadata.name", EINVAL};
  return ControllerRef(*metadata);
}

int DecodeStatusCode(std::string_view json) {
  auto j = Parse(json);
  if (!j || Str(*j, "kind") != "Status") return 0;
  const Json* code = Field(*j, "code");
  return code && code->is_number_integer() ? code->get<int>() : 0;
}

std::vector<std::pair<std::string, std::string>> ResourceAttributes(const K8sContainerMetadata& c) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!c.pod) return out;
  const K8sPodMetadata& p = *c.pod;
  out.emplace_back("k8s.pod.name", p.name);
  out.emplace_back("k8s.pod.uid", p.uid);
  out.emplace_back("k8s.namespace.name", p.namespace_name);
  if (!c.container_name.empty()) out.emplace_back("k8s.container.name", c.container_name);
  if (!p.node_name.empty()) out.emplace_back("k8s.node.name", p.node_name);
  // Kinds of the conventions only: an owner of another kind (an operator's custom resource)
  // has no k8s.<kind>.name attribute to go in.
  static constexpr std::string_view kKnownKinds[] = {"Deployment", "ReplicaSet", "StatefulSet",
                                                     "DaemonSet",  "Job",        "CronJob"};
  for (const auto& w : p.owners) {
    if (std::find(std::begin(kKnownKinds), std::end(kKnownKinds), w.kind) == std::end(kKnownKinds)) continue;
    out.emplace_back("k8s." + LowerKind(w.kind) + ".name", w.name);
  }
  return out;
}

}  // namespace k8s

// ---- K8sOwnerResolver ------------------------------------------------------------------------

K8sOwnerResolver::K8sOwnerResolver(Getter get, size_t capacity, MetricsRegistry& metrics)
    : get_(std::move(get)),
      capacity_(std::max<size_t>(capacity, 1)),
      gets_ok_(metrics.GetCounter("threadline_k8s_owner_lookups_total", {{"result", "ok"}},
                                  "GETs of ReplicaSets/Jobs to name the Deployment/CronJob owning a pod")),
      gets_failed_(metrics.GetCounter("threadline_k8s_owner_lookups_total", {{"result", "error"}})) {}

std::optional<K8sOwnerRef> K8sOwnerResolver::ControllerOf(const std::string& api_path, const std::string& cache_key) {
  const auto now = std::chrono::steady_clock::now();
  if (auto it = cache_.find(cache_key); it != cache_.end()) {
    if (!it->second.failed || now - it->second.at < kRetryFailedAfter) return it->second.controller;
  }
  Cached entry{std::nullopt, true, now};
  auto got = get_(api_path);
  if (got.ok() && got->first == 200) {
    auto decoded = k8s::DecodeControllerOf(got->second);
    if (decoded.ok()) {
      entry.controller = std::move(decoded).value();
      entry.failed = false;
    }
  }
  if (entry.failed) {
    gets_failed_.Add();
    spdlog::debug("kubernetes: GET {} failed ({}); owner chain stops there", api_path,
                  got.ok() ? "HTTP " + std::to_string(got->first) : got.error().message);
  } else {
    gets_ok_.Add();
  }
  // Owners rarely change and pods of one owner come in bursts: a simple bound is enough.
  if (cache_.size() >= capacity_) cache_.clear();
  cache_[cache_key] = entry;
  return entry.controller;
}

std::vector<K8sWorkload> K8sOwnerResolver::Resolve(const K8sPod& pod) {
  std::vector<K8sWorkload> chain;
  if (!pod.controller) return chain;
  const K8sOwnerRef& owner = *pod.controller;
  chain.push_back({owner.kind, owner.name});
  const std::string ns = pod.namespace_name;
  if (owner.kind == "ReplicaSet") {
    auto parent = ControllerOf("/apis/apps/v1/namespaces/" + ns + "/replicasets/" + owner.name,
                               "rs/" + ns + "/" + owner.name + "/" + owner.uid);
    if (parent) {
      chain.push_back({parent->kind, parent->name});
    } else if (const std::string_view hash = pod.PodTemplateHash();
               !hash.empty() && owner.name.size() > hash.size() + 1 &&
               owner.name.ends_with(hash) && owner.name[owner.name.size() - hash.size() - 1] == '-') {
      chain.push_back({"Deployment", owner.name.substr(0, owner.name.size() - hash.size() - 1)});
    }
  } else if (owner.kind == "Job") {
    auto parent = ControllerOf("/apis/batch/v1/namespaces/" + ns + "/jobs/" + owner.name,
                               "job/" + ns + "/" + owner.name + "/" + owner.uid);
    if (parent) chain.push_back({parent->kind, parent->name});
  }
  return chain;
}

// ---- K8sPodStore -----------------------------------------------------------------------------

K8sPodStore::K8sPodStore(size_t max_pods, MetricsRegistry& metrics)
    : max_pods_(std::max<size_t>(max_pods, 1)),
      evictions_(metrics.GetCounter("threadline_k8s_pod_cache_evictions_total", {},
                                    "Pods dropped from the Kubernetes metadata cache because it was full")),
      pods_gauge_(metrics.GetGauge("threadline_k8s_pods_cached", {}, "Pods in the Kubernetes metadata cache")) {}

void K8sPodStore::UpsertInto(Tables& t, const K8sPod& pod, std::vector<K8sWorkload> owners) {
  auto meta = std::make_shared<K8sPodMetadata>();
  meta->uid = pod.uid;
  meta->name = pod.name;
  meta->namespace_name = pod.namespace_name;
  meta->node_name = pod.node_name;
  meta->owners = std::move(owners);
  meta->labels = pod.labels;

  auto it = t.pods.find(pod.uid);
  if (it == t.pods.end()) {
    t.lru.push_front(pod.uid);
    it = t.pods.emplace(pod.uid, Entry{}).first;
    it->second.lru_pos = t.lru.begin();
  } else {
    t.lru.splice(t.lru.begin(), t.lru, it->second.lru_pos);
    // A restarted container has a new id; the old one must not keep naming this pod.
    for (const auto& c : it->second.containers) {
      auto ref = t.containers.find(c.container_id);
      if (ref != t.containers.end() && ref->second.pod_uid == pod.uid) t.containers.erase(ref);
    }
  }
  Entry& e = it->second;
  e.meta = std::move(meta);
  e.containers.clear();
  for (const auto& c : pod.containers) {
    if (c.container_id.empty()) continue;
    e.containers.push_back(c);
    t.containers[c.container_id] = ContainerRef{pod.uid, c.name};
  }
  while (t.pods.size() > max_pods_) {
    RemoveFrom(t, t.lru.back());
    evictions_.Add();
  }
}

void K8sPodStore::RemoveFrom(Tables& t, const std::string& uid) {
  auto it = t.pods.find(uid);
  if (it == t.pods.end()) return;
  for (const auto& c : it->second.containers) {
    auto ref = t.containers.find(c.container_id);
    if (ref != t.containers.end() && ref->second.pod_uid == uid) t.containers.erase(ref);
  }
  t.lru.erase(it->second.lru_pos);
  t.pods.erase(it);
}

void K8sPodStore::Replace(const std::vector<std::pair<K8sPod, std::vector<K8sWorkload>>>& pods) {
  // Built aside and swapped in: lookups wait for a pointer swap, not for the whole list.
  Tables fresh;
  for (const auto& [pod, owners] : pods) UpsertInto(fresh, pod, owners);
  {
    std::lock_guard lock(mu_);
    std::swap(t_, fresh);
    pods_gauge_.Set(static_cast<int64_t>(t_.pods.size()));
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  // The old tables are freed here, outside the lock.
}

void K8sPodStore::Upsert(const K8sPod& pod, std::vector<K8sWorkload> owners) {
  std::lock_guard lock(mu_);
  UpsertInto(t_, pod, std::move(owners));
  pods_gauge_.Set(static_cast<int64_t>(t_.pods.size()));
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

void K8sPodStore::Remove(const std::string& uid) {
  std::lock_guard lock(mu_);
  RemoveFrom(t_, uid);
  pods_gauge_.Set(static_cast<int64_t>(t_.pods.size()));
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

std::optional<K8sContainerMetadata> K8sPodStore::Lookup(std::string_view container_id) const {
  std::lock_guard lock(mu_);
  auto ref = t_.containers.find(std::string(container_id));
  if (ref == t_.containers.end()) return std::nullopt;
  auto pod = t_.pods.find(ref->second.pod_uid);
  if (pod == t_.pods.end()) return std::nullopt;
  return K8sContainerMetadata{pod->second.meta, ref->second.container_name};
}

size_t K8sPodStore::size() const {
  std::lock_guard lock(mu_);
  return t_.pods.size();
}

std::vector<std::string> K8sPodStore::PodUids() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [uid, e] : t_.pods) out.push_back(uid);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace threadline
