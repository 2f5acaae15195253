// Kubernetes metadata: decoding the API server's recorded JSON (tests/fixtures/k8s/), owner
// chains, the pod store, and the resource attributes a span gets.
#include "agent/discovery/k8s_metadata.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace threadline {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(THREADLINE_SOURCE_DIR) / "tests" / "fixtures" / "k8s";

constexpr char kCheckoutId[] = "c7761e58969f7edd498186641b2021e8477e1bcd230de4cf3435242da4a40d14";
constexpr char kEnvoyId[] = "84532b306f259587c364bd7301e0813963d5b84fd27c9338f0862dab8f0499d7";
constexpr char kRedisId[] = "34fb46c847bb9df96e5205a39d382f648a6e8dce1e014cd85b4ca6a88d88ed03";
constexpr char kRedisRestartedId[] = "7e0da8c9ec365e33377bd1828bdc989b6fff6a18547bd4d6b030d166e229b591";
constexpr char kReportInitId[] = "bd65cde9ada18ea92e144357b0be7f8c25973666cdfa33316c133bda6f787883";

std::string ReadFixture(const std::string& name) {
  std::ifstream in(kFixtures / name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

const K8sPod* FindPod(const std::vector<K8sPod>& pods, const std::string& name) {
  for (const auto& p : pods)
    if (p.name == name) return &p;
  return nullptr;
}

TEST(K8sDecode, PodList) {
  auto list = k8s::DecodePodList(ReadFixture("pod_list.json"));
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_EQ(list->resource_version, "1000");
  EXPECT_EQ(list->continue_token, "");
  ASSERT_EQ(list->items.size(), 5u);
  EXPECT_EQ(list->undecodable_items, 0u);

  const K8sPod* checkout = FindPod(list->items, "checkout-7c9f8b6d5-x2x9k");
  ASSERT_TRUE(checkout);
  EXPECT_EQ(checkout->uid, "3f1c6a2e-8b4d-4e1a-9c7f-2d5e8a1b4c60");
  EXPECT_EQ(checkout->namespace_name, "shop");
  EXPECT_EQ(checkout->node_name, "worker-1");
  EXPECT_EQ(checkout->resource_version, "981");
  EXPECT_EQ(checkout->PodTemplateHash(), "7c9f8b6d5");
  EXPECT_EQ(checkout->labels, (K8sLabels{{"app", "checkout"}, {"pod-template-hash", "7c9f8b6d5"}}));
  ASSERT_TRUE(checkout->controller);
  EXPECT_EQ(*checkout->controller,
            (K8sOwnerRef{"ReplicaSet", "checkout-7c9f8b6d5", "6a0e2b1c-55f3-4d0b-8f2e-0c3b1a9d7e11", true}));
  ASSERT_EQ(checkout->containers.size(), 2u);
  EXPECT_EQ(checkout->containers[0], (K8sContainerStatus{"checkout", kCheckoutId, "containerd"}));
  EXPECT_EQ(checkout->containers[1], (K8sContainerStatus{"envoy", kEnvoyId, "containerd"}));

  const K8sPod* report = FindPod(list->items, "report-29312340-5xk2p");
  ASSERT_TRUE(report);
  ASSERT_TRUE(report->controller);
  EXPECT_EQ(report->controller->kind, "Job");
  // Init containers count too: their processes make requests (fetching input, migrations).
  ASSERT_EQ(report->containers.size(), 2u);
  EXPECT_EQ(report->containers[1].name, "fetch-input");
  EXPECT_EQ(report->containers[1].container_id, kReportInitId);

  const K8sPod* debug = FindPod(list->items, "debug-shell");
  ASSERT_TRUE(debug);
  EXPECT_FALSE(debug->controller);
}

TEST(K8sDecode, WatchEventsOfEveryType) {
  auto lines = Lines(ReadFixture("watch_events.jsonl"));
  ASSERT_EQ(lines.size(), 5u);
  std::vector<K8sWatchEvent> events;
  for (const auto& l : lines) {
    auto ev = k8s::DecodeWatchEvent(l);
    ASSERT_TRUE(ev.ok()) << ev.error().message;
    events.push_back(std::move(ev).value());
  }
  EXPECT_EQ(events[0].type, K8sWatchEvent::Type::kAdded);
  ASSERT_TRUE(events[0].pod);
  EXPECT_EQ(events[0].pod->name, "web-5d8f7c9b4-qq7wz");
  EXPECT_EQ(events[0].resource_version, "1001");
  // Pending: the container has no id yet.
  ASSERT_EQ(events[0].pod->containers.size(), 1u);
  EXPECT_EQ(events[0].pod->containers[0].container_id, "");
  EXPECT_EQ(events[1].type, K8sWatchEvent::Type::kModified);
  EXPECT_EQ(events[1].pod->containers[0].container_id,
            "4b5e57f6eb2f42b9039b3d1e13929295f231749c510cbe341cd68036d9af97e2");
  EXPECT_EQ(events[2].type, K8sWatchEvent::Type::kModified);
  EXPECT_EQ(events[2].pod->containers[0].container_id, kRedisRestartedId);
  EXPECT_EQ(events[3].type, K8sWatchEvent::Type::kDeleted);
  EXPECT_EQ(events[3].pod->name, "debug-shell");
  EXPECT_EQ(events[4].type, K8sWatchEvent::Type::kBookmark);
  EXPECT_FALSE(events[4].pod);
  EXPECT_EQ(events[4].resource_version, "1010");
}

TEST(K8sDecode, ErrorEventAndStatus) {
  auto lines = Lines(ReadFixture("watch_gone.jsonl"));
  ASSERT_EQ(lines.size(), 2u);
  auto ev = k8s::DecodeWatchEvent(lines[1]);
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(ev->type, K8sWatchEvent::Type::kError);
  EXPECT_EQ(ev->error_code, 410);
  EXPECT_EQ(ev->error_message, "too old resource version: 1000 (1450)");
  EXPECT_EQ(k8s::DecodeStatusCode(ReadFixture("status_410.json")), 410);
  EXPECT_EQ(k8s::DecodeStatusCode(ReadFixture("status_403.json")), 403);
  EXPECT_EQ(k8s::DecodeStatusCode(ReadFixture("pod_list.json")), 0);
  EXPECT_FALSE(k8s::DecodePodList(ReadFixture("status_410.json")).ok());
}

TEST(K8sDecode, OwnersOfReplicaSetAndJob) {
  auto rs = k8s::DecodeControllerOf(ReadFixture("replicaset_checkout.json"));
  ASSERT_TRUE(rs.ok());
  ASSERT_TRUE(rs->has_value());
  EXPECT_EQ((*rs)->kind, "Deployment");
  EXPECT_EQ((*rs)->name, "checkout");
  auto job = k8s::DecodeControllerOf(ReadFixture("job_report.json"));
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(job->has_value());
  EXPECT_EQ((*job)->kind, "CronJob");
  EXPECT_EQ((*job)->name, "report");
  // A bare ReplicaSet has no controller.
  auto bare = k8s::DecodeControllerOf(R"({"kind":"ReplicaSet","metadata":{"name":"x","ownerReferences":[
      {"kind":"Deployment","name":"not-controller","uid":"u","controller":false}]}})");
  ASSERT_TRUE(bare.ok());
  EXPECT_FALSE(bare->has_value());
}

TEST(K8sDecode, BadInputIsAnErrorNotACrash) {
  for (const char* bad : {"", "{", "[]", "null", R"({"type":"ADDED"})", R"({"type":"ADDED","object":[]})",
                          R"({"type":"ADDED","object":{"metadata":{"name":"x"}}})",
                          R"({"type":"SOMETHING","object":{}})", R"({"type":"ADDED","object":{"metadata":7}})"}) {
    EXPECT_FALSE(k8s::DecodeWatchEvent(bad).ok()) << bad;
  }
  EXPECT_FALSE(k8s::DecodePodList("{\"items\": 3}").ok());
  // Wrong types inside an item: the item is skipped and counted, the list still decodes.
  auto list = k8s::DecodePodList(R"({"metadata":{"resourceVersion":"5"},"items":[
      {"metadata":{"name":"a","namespace":"n","uid":"u1"},"status":{"containerStatuses":[{"name":1}]}},
      {"metadata":{"name":"b","namespace":"n"}},
      {"metadata":{"name":"c","namespace":"n","uid":"u3","ownerReferences":"nope"},
       "status":{"containerStatuses":"nope"}}]})");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->items.size(), 2u);
  EXPECT_EQ(list->undecodable_items, 1u);
  // An empty list is "items": null.
  auto empty = k8s::DecodePodList(R"({"kind":"PodList","metadata":{"resourceVersion":"9"},"items":null})");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->items.empty());
}

TEST(K8sDecode, SplitContainerId) {
  EXPECT_EQ(k8s::SplitContainerId("containerd://abc"), (std::pair<std::string, std::string>{"containerd", "abc"}));
  EXPECT_EQ(k8s::SplitContainerId("cri-o://abc"), (std::pair<std::string, std::string>{"cri-o", "abc"}));
  EXPECT_EQ(k8s::SplitContainerId("abc"), (std::pair<std::string, std::string>{}));
  EXPECT_EQ(k8s::SplitContainerId("docker://"), (std::pair<std::string, std::string>{}));
}

// A fake API for owner lookups: path -> (status, body), and how often each path was asked.
struct FakeApi {
  std::map<std::string, std::pair<long, std::string>> answers;
  std::map<std::string, int> calls;
  K8sOwnerResolver::Getter Getter() {
    return [this](const std::string& path) -> Result<std::pair<long, std::string>> {
      ++calls[path];
      auto it = answers.find(path);
      if (it == answers.end()) return std::pair<long, std::string>{404, "{}"};
      return it->second;
    };
  }
};

TEST(K8sOwnerResolver, ChainsToDeploymentCronJobAndStopsAtSetsAndBarePods) {
  FakeApi api;
  api.answers["/apis/apps/v1/namespaces/shop/replicasets/checkout-7c9f8b6d5"] = {200, ReadFixture("replicaset_checkout.json")};
  api.answers["/apis/batch/v1/namespaces/batch/jobs/report-29312340"] = {200, ReadFixture("job_report.json")};
  MetricsRegistry metrics;
  K8sOwnerResolver resolver(api.Getter(), 16, metrics);
  auto list = k8s::DecodePodList(ReadFixture("pod_list.json"));
  ASSERT_TRUE(list.ok());
  std::map<std::string, std::vector<K8sWorkload>> chains;
  for (const auto& p : list->items) chains[p.name] = resolver.Resolve(p);
  EXPECT_EQ(chains["checkout-7c9f8b6d5-x2x9k"],
            (std::vector<K8sWorkload>{{"ReplicaSet", "checkout-7c9f8b6d5"}, {"Deployment", "checkout"}}));
  EXPECT_EQ(chains["redis-0"], (std::vector<K8sWorkload>{{"StatefulSet", "redis"}}));
  EXPECT_EQ(chains["node-exporter-7xk4p"], (std::vector<K8sWorkload>{{"DaemonSet", "node-exporter"}}));
  EXPECT_EQ(chains["report-29312340-5xk2p"],
            (std::vector<K8sWorkload>{{"Job", "report-29312340"}, {"CronJob", "report"}}));
  EXPECT_TRUE(chains["debug-shell"].empty());
  // Sets and bare pods need no GET; the ReplicaSet and the Job one each.
  EXPECT_EQ(api.calls.size(), 2u);

  // Every pod of a rollout shares the ReplicaSet: asked once.
  for (int i = 0; i < 3; ++i) (void)resolver.Resolve(*FindPod(list->items, "checkout-7c9f8b6d5-x2x9k"));
  EXPECT_EQ(api.calls["/apis/apps/v1/namespaces/shop/replicasets/checkout-7c9f8b6d5"], 1);
  EXPECT_EQ(metrics.CounterTotal("threadline_k8s_owner_lookups_total"), 2u);
}

TEST(K8sOwnerResolver, ForbiddenReplicaSetFallsBackToThePodTemplateHash) {
  FakeApi api;
  api.answers["/apis/apps/v1/namespaces/shop/replicasets/payments-6f7d8c9b5"] = {403, ReadFixture("status_403.json")};
  K8sOwnerResolver resolver(api.Getter());
  K8sPod pod;
  pod.uid = "u";
  pod.name = "payments-6f7d8c9b5-m4n8r";
  pod.namespace_name = "shop";
  pod.labels["pod-template-hash"] = "6f7d8c9b5";
  pod.controller = K8sOwnerRef{"ReplicaSet", "payments-6f7d8c9b5", "rs-uid", true};
  EXPECT_EQ(resolver.Resolve(pod),
            (std::vector<K8sWorkload>{{"ReplicaSet", "payments-6f7d8c9b5"}, {"Deployment", "payments"}}));
  // Without the label (a ReplicaSet made by hand), the chain stops at the ReplicaSet.
  pod.labels.erase("pod-template-hash");
  EXPECT_EQ(resolver.Resolve(pod), (std::vector<K8sWorkload>{{"ReplicaSet", "payments-6f7d8c9b5"}}));
  // The failure is remembered for a while: not one GET per pod event.
  EXPECT_EQ(api.calls["/apis/apps/v1/namespaces/shop/replicasets/payments-6f7d8c9b5"], 1);
}

K8sPod MakePod(const std::string& uid, const std::string& name, std::vector<K8sContainerStatus> containers) {
  K8sPod p;
  p.uid = uid;
  p.name = name;
  p.namespace_name = "ns";
  p.node_name = "worker-1";
  p.containers = std::move(containers);
  return p;
}

TEST(K8sPodStore, LookupUpsertRestartRemove) {
  MetricsRegistry metrics;
  K8sPodStore store(10, metrics);
  const uint64_t g0 = store.generation();
  store.Upsert(MakePod("u1", "redis-0", {{"redis", kRedisId, "containerd"}}), {{"StatefulSet", "redis"}});
  EXPECT_GT(store.generation(), g0);
  auto m = store.Lookup(kRedisId);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->container_name, "redis");
  EXPECT_EQ(m->pod->name, "redis-0");
  ASSERT_TRUE(m->pod->TopWorkload());
  EXPECT_EQ(m->pod->TopWorkload()->name, "redis");

  // The container restarted: the new id names the pod, the old one no longer does.
  store.Upsert(MakePod("u1", "redis-0", {{"redis", kRedisRestartedId, "containerd"}}), {{"StatefulSet", "redis"}});
  EXPECT_FALSE(store.Lookup(kRedisId));
  EXPECT_TRUE(store.Lookup(kRedisRestartedId));
  // Lookups hold their own reference: a pod removed later does not pull it from under them.
  auto held = store.Lookup(kRedisRestartedId);
  store.Remove("u1");
  EXPECT_FALSE(store.Lookup(kRedisRestartedId));
  EXPECT_EQ(held->pod->name, "redis-0");
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(metrics.GetGauge("threadline_k8s_pods_cached").Value(), 0);
}

TEST(K8sPodStore, BoundedEvictsLeastRecentlyChangedAndCounts) {
  MetricsRegistry metrics;
  K8sPodStore store(2, metrics);
  store.Upsert(MakePod("u1", "a", {{"c", kCheckoutId, "containerd"}}), {});
  store.Upsert(MakePod("u2", "b", {{"c", kEnvoyId, "containerd"}}), {});
  store.Upsert(MakePod("u1", "a", {{"c", kCheckoutId, "containerd"}}), {});  // u1 fresh again
  store.Upsert(MakePod("u3", "c", {{"c", kRedisId, "containerd"}}), {});
  EXPECT_EQ(store.PodUids(), (std::vector<std::string>{"u1", "u3"}));
  EXPECT_FALSE(store.Lookup(kEnvoyId));
  EXPECT_EQ(metrics.CounterTotal("threadline_k8s_pod_cache_evictions_total"), 1u);
  EXPECT_EQ(metrics.GetGauge("threadline_k8s_pods_cached").Value(), 2);
}

TEST(K8sPodStore, ReplaceDropsPodsNotListed) {
  K8sPodStore store(10);
  store.Upsert(MakePod("gone", "old", {{"c", kCheckoutId, "containerd"}}), {});
  store.Replace({{MakePod("u2", "b", {{"c", kEnvoyId, "containerd"}}), {}}});
  EXPECT_EQ(store.PodUids(), (std::vector<std::string>{"u2"}));
  EXPECT_FALSE(store.Lookup(kCheckoutId));
  EXPECT_TRUE(store.Lookup(kEnvoyId));
}

TEST(K8sResourceAttributes, SemanticConventionNames) {
  auto pod = std::make_shared<K8sPodMetadata>();
  pod->uid = "3f1c6a2e-8b4d-4e1a-9c7f-2d5e8a1b4c60";
  pod->name = "checkout-7c9f8b6d5-x2x9k";
  pod->namespace_name = "shop";
  pod->node_name = "worker-1";
  pod->owners = {{"ReplicaSet", "checkout-7c9f8b6d5"}, {"Deployment", "checkout"}};
  auto attrs = k8s::ResourceAttributes({pod, "checkout"});
  std::vector<std::pair<std::string, std::string>> want = {
      {"k8s.pod.name", "checkout-7c9f8b6d5-x2x9k"},
      {"k8s.pod.uid", "3f1c6a2e-8b4d-4e1a-9c7f-2d5e8a1b4c60"},
      {"k8s.namespace.name", "shop"},
      {"k8s.container.name", "checkout"},
      {"k8s.node.name", "worker-1"},
      {"k8s.replicaset.name", "checkout-7c9f8b6d5"},
      {"k8s.deployment.name", "checkout"},
  };
  EXPECT_EQ(attrs, want);
  pod->owners = {{"Job", "report-29312340"}, {"CronJob", "report"}};
  attrs = k8s::ResourceAttributes({pod, "report"});
  EXPECT_EQ(attrs[attrs.size() - 2], (std::pair<std::string, std::string>{"k8s.job.name", "report-29312340"}));
  EXPECT_EQ(attrs.back(), (std::pair<std::string, std::string>{"k8s.cronjob.name", "report"}));
  pod->owners = {{"StatefulSet", "redis"}};
  EXPECT_EQ(k8s::ResourceAttributes({pod, "redis"}).back().first, "k8s.statefulset.name");
  pod->owners = {{"DaemonSet", "node-exporter"}};
  EXPECT_EQ(k8s::ResourceAttributes({pod, "x"}).back().first, "k8s.daemonset.name");
  // An operator's custom resource has no convention attribute: left out, not invented.
  pod->owners = {{"Rollout", "canary"}};
  EXPECT_EQ(k8s::ResourceAttributes({pod, "x"}).back().first, "k8s.node.name");
}

}  // namespace
}  // namespace threadline
