// Resources of containerised processes: container.id from the cgroup, k8s.* from the metadata
// source, service.name precedence, and the upgrade of a resource built before the pod was known.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "agent/discovery/resource.h"

namespace threadline {
namespace {

namespace fs = std::filesystem;

constexpr char kId[] = "c7761e58969f7edd498186641b2021e8477e1bcd230de4cf3435242da4a40d14";
constexpr char kUidSystemd[] = "3f1c6a2e_8b4d_4e1a_9c7f_2d5e8a1b4c60";

class FakeProcRoot {
 public:
  FakeProcRoot() {
    std::string tmpl = (fs::temp_directory_path() / "threadline-cres-XXXXXX").string();
    root_ = ::mkdtemp(tmpl.data());
    Write("sys/kernel/hostname", "node-1\n");
  }
  ~FakeProcRoot() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  void Add(uint32_t pid, const std::string& cgroup, const std::string& environ = "") {
    const std::string d = std::to_string(pid);
    Write(d + "/stat", d + " (python3) S 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 5000 0 0\n");
    Write(d + "/comm", "python3\n");
    Write(d + "/cmdline", std::string("python3\0-m\0http.server\0", 23));
    Write(d + "/environ", environ);
    Write(d + "/cgroup", cgroup);
  }
  const std::string& root() const { return root_; }

 private:
  void Write(const std::string& rel, const std::string& content) {
    fs::path p = fs::path(root_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
  }
  std::string root_;
};

class FakeSource : public ContainerMetadataSource {
 public:
  std::optional<K8sContainerMetadata> Lookup(std::string_view id) const override {
    ++lookups;
    auto it = known.find(std::string(id));
    if (it == known.end()) return std::nullopt;
    return it->second;
  }
  uint64_t generation() const override { return gen; }
  void Learn(const std::string& id, K8sContainerMetadata m) {
    known[id] = std::move(m);
    ++gen;
  }
  std::map<std::string, K8sContainerMetadata> known;
  uint64_t gen = 1;
  mutable int lookups = 0;
};

std::string Attr(const Resource& r, std::string_view key) {
  const AttributeValue* v = FindAttribute(r.attributes, key);
  if (!v || !std::holds_alternative<std::string>(*v)) return "<missing>";
  return std::get<std::string>(*v);
}

K8sContainerMetadata CheckoutPod(std::vector<K8sWorkload> owners = {{"ReplicaSet", "checkout-7c9f8b6d5"},
                                                                     {"Deployment", "checkout"}}) {
  auto pod = std::make_shared<K8sPodMetadata>();
  pod->uid = "3f1c6a2e-8b4d-4e1a-9c7f-2d5e8a1b4c60";
  pod->name = "checkout-7c9f8b6d5-x2x9k";
  pod->namespace_name = "shop";
  pod->node_name = "worker-1";
  pod->owners = std::move(owners);
  return {pod, "server"};
}

const std::string kCgroup = std::string("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod") +
                            kUidSystemd + ".slice/cri-containerd-" + kId + ".scope\n";

TEST(ContainerResource, ContainerIdWithoutKubernetes) {
  FakeProcRoot proc;
  proc.Add(10, "0::/system.slice/docker-" + std::string(kId) + ".scope\n");
  proc.Add(11, "0::/user.slice/user-0.slice/session-1.scope\n");
  MetricsRegistry metrics;
  ResourceCache cache({.proc_root = proc.root()}, metrics);
  auto r = cache.Get(10);
  EXPECT_EQ(Attr(*r, "container.id"), kId);
  EXPECT_EQ(Attr(*r, "service.name"), "http.server");
  EXPECT_EQ(Attr(*r, "k8s.pod.name"), "<missing>");
  EXPECT_EQ(Attr(*cache.Get(11), "container.id"), "<missing>");
  EXPECT_EQ(metrics.CounterTotal("threadline_k8s_metadata_misses_total"), 0u);
}

TEST(ContainerResource, KnownPodGivesK8sAttributesAndTheWorkloadAsServiceName) {
  FakeProcRoot proc;
  proc.Add(10, kCgroup);
  FakeSource source;
  source.Learn(kId, CheckoutPod());
  MetricsRegistry metrics;
  ResourceCache cache({.proc_root = proc.root(), .kubernetes = &source}, metrics);
  auto r = cache.Get(10);
  EXPECT_EQ(Attr(*r, "service.name"), "checkout");
  EXPECT_EQ(Attr(*r, "container.id"), kId);
  EXPECT_EQ(Attr(*r, "k8s.pod.name"), "checkout-7c9f8b6d5-x2x9k");
  EXPECT_EQ(Attr(*r, "k8s.pod.uid"), "3f1c6a2e-8b4d-4e1a-9c7f-2d5e8a1b4c60");
  EXPECT_EQ(Attr(*r, "k8s.namespace.name"), "shop");
  EXPECT_EQ(Attr(*r, "k8s.container.name"), "server");
  EXPECT_EQ(Attr(*r, "k8s.node.name"), "worker-1");
  EXPECT_EQ(Attr(*r, "k8s.replicaset.name"), "checkout-7c9f8b6d5");
  EXPECT_EQ(Attr(*r, "k8s.deployment.name"), "checkout");
  EXPECT_EQ(Attr(*r, "process.executable.name"), "python3") << "the process attributes stay";
  EXPECT_EQ(metrics.CounterTotal("threadline_k8s_metadata_misses_total"), 0u);
}

TEST(ContainerResource, ServiceNamePrecedence) {
  const ContainerCgroup container{kId, ContainerRuntime::kContainerd, "", ""};
  ProcessInfo info;
  info.pid = 10;
  info.comm = "python3";
  info.cmdline = {"python3", "-m", "http.server"};
  HostIdentity host{"node-1", ""};
  auto with = [&](const std::string& environ, const K8sContainerMetadata& k8s) {
    return Attr(*BuildResource(info, environ, host, &container, &k8s), "service.name");
  };
  const K8sContainerMetadata deployment = CheckoutPod();
  const K8sContainerMetadata bare = CheckoutPod({});
  // The process's own configuration wins over anything Kubernetes says.
  EXPECT_EQ(with(std::string("OTEL_SERVICE_NAME=orders\0", 25), deployment), "orders");
  EXPECT_EQ(with(std::string("OTEL_RESOURCE_ATTRIBUTES=service.name=billing\0", 46), deployment), "billing");
  // Then the workload, then the container's name (a bare pod), then the command.
  EXPECT_EQ(with("", deployment), "checkout");
  EXPECT_EQ(with("", bare), "server");
  EXPECT_EQ(Attr(*BuildResource(info, "", host, &container, nullptr), "service.name"), "http.server");
  // OTEL_RESOURCE_ATTRIBUTES may correct a detected k8s attribute (the user said so).
  auto r = BuildResource(info, std::string("OTEL_RESOURCE_ATTRIBUTES=k8s.namespace.name=prod\0", 49), host,
                         &container, &deployment);
  EXPECT_EQ(Attr(*r, "k8s.namespace.name"), "prod");
}

TEST(ContainerResource, MissIsCountedAndTheResourceUpgradedWhenThePodArrives) {
  FakeProcRoot proc;
  proc.Add(10, kCgroup, std::string("OTEL_RESOURCE_ATTRIBUTES=team=payments\0", 39));
  FakeSource source;
  MetricsRegistry metrics;
  ResourceCache cache({.proc_root = proc.root(), .kubernetes = &source}, metrics);

  auto before = cache.Get(10);
  EXPECT_EQ(Attr(*before, "container.id"), kId);
  EXPECT_EQ(Attr(*before, "k8s.pod.name"), "<missing>");
  EXPECT_EQ(Attr(*before, "service.name"), "http.server");
  EXPECT_EQ(metrics.CounterTotal("threadline_k8s_metadata_misses_total"), 1u);

  // Nothing new in the source: the cached resource is served without asking it again.
  const int lookups = source.lookups;
  EXPECT_EQ(cache.Get(10).get(), before.get());
  EXPECT_EQ(source.lookups, lookups);

  // Another pod arrives: asked once, still unknown, same resource.
  source.Learn("84532b306f259587c364bd7301e0813963d5b84fd27c9338f0862dab8f0499d7", CheckoutPod());
  EXPECT_EQ(cache.Get(10).get(), before.get());
  EXPECT_EQ(source.lookups, lookups + 1);

  // Ours arrives: rebuilt, even after the process has exited and left /proc.
  source.Learn(kId, CheckoutPod());
  cache.OnExit(10);
  fs::remove_all(fs::path(proc.root()) / "10");
  auto after = cache.Get(10);
  EXPECT_NE(after.get(), before.get());
  EXPECT_EQ(Attr(*after, "k8s.pod.name"), "checkout-7c9f8b6d5-x2x9k");
  EXPECT_EQ(Attr(*after, "service.name"), "checkout");
  EXPECT_EQ(Attr(*after, "team"), "payments") << "rebuilt from the same environment";
  EXPECT_EQ(Attr(*after, "service.instance.id"), Attr(*before, "service.instance.id"));
  EXPECT_EQ(metrics.CounterTotal("threadline_k8s_resource_upgrades_total"), 1u);
  EXPECT_EQ(metrics.CounterTotal("threadline_resource_builds_total"), 1u) << "no /proc re-read";
  EXPECT_EQ(cache.Get(10).get(), after.get());
}

}  // namespace
}  // namespace threadline
