#include "agent/discovery/pod_selection.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>

namespace threadline {
namespace {

namespace fs = std::filesystem;

constexpr char kWebId[] = "c7761e58969f7edd498186641b2021e8477e1bcd230de4cf3435242da4a40d14";
constexpr char kSidecarId[] = "84532b306f259587c364bd7301e0813963d5b84fd27c9338f0862dab8f0499d7";
constexpr char kBatchId[] = "34fb46c847bb9df96e5205a39d382f648a6e8dce1e014cd85b4ca6a88d88ed03";
constexpr char kUnknownId[] = "7e0da8c9ec365e33377bd1828bdc989b6fff6a18547bd4d6b030d166e229b591";

K8sPodMetadata PodMeta(const std::string& ns, K8sLabels labels) {
  K8sPodMetadata m;
  m.uid = ns + "-uid";
  m.name = ns + "-pod";
  m.namespace_name = ns;
  m.labels = std::move(labels);
  return m;
}

TEST(PodSelectionRule, NamespacesAreGlobsLabelsMustAllMatch) {
  auto rule = PodSelectionRule::Create({"shop", "web-*"}, {"app=checkout", "tier=front"});
  ASSERT_TRUE(rule.ok());
  EXPECT_TRUE(rule->active());
  EXPECT_TRUE(rule->Matches(PodMeta("shop", {{"app", "checkout"}, {"tier", "front"}, {"x", "y"}})));
  EXPECT_TRUE(rule->Matches(PodMeta("web-eu", {{"app", "checkout"}, {"tier", "front"}})));
  EXPECT_FALSE(rule->Matches(PodMeta("shopping", {{"app", "checkout"}, {"tier", "front"}})));
  EXPECT_FALSE(rule->Matches(PodMeta("shop", {{"app", "checkout"}})));                     // tier missing
  EXPECT_FALSE(rule->Matches(PodMeta("shop", {{"app", "checkout"}, {"tier", "back"}})));   // tier differs
  EXPECT_EQ(rule->Describe(), "namespaces [shop, web-*], labels [app=checkout, tier=front]");

  auto labels_only = PodSelectionRule::Create({}, {"app="});  // an empty value is a value
  ASSERT_TRUE(labels_only.ok());
  EXPECT_TRUE(labels_only->Matches(PodMeta("any", {{"app", ""}})));
  EXPECT_FALSE(labels_only->Matches(PodMeta("any", {})));

  EXPECT_FALSE(PodSelectionRule::Create({}, {"app"}).ok());
  EXPECT_FALSE(PodSelectionRule::Create({}, {"=x"}).ok());
  EXPECT_FALSE(PodSelectionRule::Create({}, {}).value().active());
}

// A directory tree shaped like a node's cgroup v2 hierarchy (plain directories: the walk only
// reads names and inode numbers, which is what it reads on cgroupfs too).
class CgroupTree : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("tl-cgroups-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "system.slice" / "sshd.service");
    fs::create_directories(root_ / "user.slice");
  }
  void TearDown() override { fs::remove_all(root_); }

  // The systemd-driver containerd cgroup of one container; returns its path.
  fs::path AddContainer(const std::string& pod_uid, const std::string& id) {
    std::string uid = pod_uid;
    for (char& c : uid)
      if (c == '-') c = '_';
    fs::path dir = root_ / "kubepods.slice" / "kubepods-burstable.slice" /
                   ("kubepods-burstable-pod" + uid + ".slice") / ("cri-containerd-" + std::string(id) + ".scope");
    fs::create_directories(dir);
    return dir;
  }
  static uint64_t Inode(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_ino;
  }

  fs::path root_;
};

TEST_F(CgroupTree, ScanFindsContainersTheirNestedCgroupsAndInodes) {
  fs::path web = AddContainer("11111111-2222-3333-4444-555555555555", kWebId);
  fs::create_directories(web / "init.scope");  // a nested cgroup of the container (systemd inside)
  fs::path docker = root_ / "system.slice" / ("docker-" + std::string(kBatchId) + ".scope");
  fs::create_directories(docker);

  CgroupScanResult scan = ScanContainerCgroups(root_.string());
  EXPECT_FALSE(scan.truncated);
  std::map<std::string, std::pair<uint64_t, std::string>> by_path;
  for (const auto& c : scan.containers) by_path[c.path] = {c.cgroup_id, c.container_id};
  const std::string web_rel = "/" + fs::relative(web, root_).string();
  ASSERT_EQ(by_path.size(), 3u) << ::testing::PrintToString(scan.containers.size());
  EXPECT_EQ(by_path[web_rel], std::make_pair(Inode(web), std::string(kWebId)));
  EXPECT_EQ(by_path[web_rel + "/init.scope"], std::make_pair(Inode(web / "init.scope"), std::string(kWebId)));
  EXPECT_EQ(by_path["/system.slice/docker-" + std::string(kBatchId) + ".scope"],
            std::make_pair(Inode(docker), std::string(kBatchId)));
  // Every directory is visited once, container or not.
  EXPECT_EQ(scan.directories, 9u);

  CgroupScanResult bounded = ScanContainerCgroups(root_.string(), 3);
  EXPECT_TRUE(bounded.truncated);
  EXPECT_LE(bounded.directories, 3u);
  EXPECT_TRUE(ScanContainerCgroups((root_ / "absent").string()).containers.empty());
}

class FakePods : public ContainerMetadataSource {
 public:
  std::optional<K8sContainerMetadata> Lookup(std::string_view id) const override {
    auto it = pods_.find(std::string(id));
    if (it == pods_.end()) return std::nullopt;
    return K8sContainerMetadata{std::make_shared<K8sPodMetadata>(it->second), "c"};
  }
  uint64_t generation() const override { return generation_; }
  void Set(const std::string& id, K8sPodMetadata m) {
    pods_[id] = std::move(m);
    ++generation_;
  }

 private:
  std::map<std::string, K8sPodMetadata> pods_;
  uint64_t generation_ = 0;
};

struct FakeKernelSet {
  std::set<uint64_t> ids;
  bool full = false;
  CgroupSetWriter Writer() {
    return {[this](uint64_t id) -> Status {
              if (full) return Error{"map full", E2BIG};
              ids.insert(id);
              return OkStatus();
            },
            [this](uint64_t id) -> Status {
              ids.erase(id);
              return OkStatus();
            }};
  }
};

TEST_F(CgroupTree, SelectorKeepsTheKernelSetEqualToMatchingPods) {
  fs::path web = AddContainer("11111111-2222-3333-4444-555555555555", kWebId);
  fs::create_directories(web / "worker");
  fs::path sidecar = AddContainer("11111111-2222-3333-4444-555555555555", kSidecarId);
  fs::path batch = AddContainer("99999999-2222-3333-4444-555555555555", kBatchId);
  AddContainer("88888888-2222-3333-4444-555555555555", kUnknownId);

  FakePods pods;
  pods.Set(kWebId, PodMeta("shop", {{"app", "web"}}));
  pods.Set(kSidecarId, PodMeta("shop", {{"app", "web"}}));
  pods.Set(kBatchId, PodMeta("batch", {{"app", "report"}}));
  FakeKernelSet kernel;
  MetricsRegistry metrics;
  PodCgroupSelector selector(PodSelectionRule::Create({"shop"}, {"app=web"}).value(), pods, kernel.Writer(),
                             {.cgroup_root = root_.string()}, metrics);

  auto r = selector.Sync();
  EXPECT_EQ(kernel.ids, (std::set<uint64_t>{Inode(web), Inode(web / "worker"), Inode(sidecar)}));
  EXPECT_EQ(r.containers_seen, 5u);
  EXPECT_EQ(r.unknown, 1u);
  EXPECT_EQ(r.added, 3u);
  EXPECT_EQ(r.selected, 3u);
  EXPECT_EQ(metrics.GetGauge("threadline_selection_cgroups").Value(), 3);

  // Relabelled: the web pod leaves the selection, the batch pod joins it (namespace aside).
  pods.Set(kWebId, PodMeta("shop", {{"app", "web-old"}}));
  pods.Set(kSidecarId, PodMeta("shop", {{"app", "web-old"}}));
  pods.Set(kBatchId, PodMeta("shop", {{"app", "web"}}));
  r = selector.Sync();
  EXPECT_EQ(kernel.ids, (std::set<uint64_t>{Inode(batch)}));
  EXPECT_EQ(r.added, 1u);
  EXPECT_EQ(r.removed, 3u);

  // A pass with nothing changed writes nothing.
  r = selector.Sync();
  EXPECT_EQ(r.added + r.removed, 0u);

  // A removed container cgroup leaves the set.
  fs::remove(batch);
  r = selector.Sync();
  EXPECT_TRUE(kernel.ids.empty());
  EXPECT_EQ(selector.selected(), 0u);

  // The kernel map refuses: counted, retried on the next pass.
  pods.Set(kWebId, PodMeta("shop", {{"app", "web"}}));
  kernel.full = true;
  r = selector.Sync();
  EXPECT_EQ(r.failed, 2u);
  EXPECT_EQ(metrics.GetCounter("threadline_selection_cgroup_errors_total").Value(), 2u);
  kernel.full = false;
  r = selector.Sync();
  EXPECT_EQ(kernel.ids, (std::set<uint64_t>{Inode(web), Inode(web / "worker")}));
}

TEST_F(CgroupTree, BackgroundThreadFollowsThePodStore) {
  fs::path web = AddContainer("11111111-2222-3333-4444-555555555555", kWebId);
  K8sPodStore store(16);
  FakeKernelSet kernel;
  std::mutex mu;  // the selector's thread writes kernel.ids
  CgroupSetWriter writer{[&](uint64_t id) -> Status {
                           std::lock_guard l(mu);
                           kernel.ids.insert(id);
                           return OkStatus();
                         },
                         [&](uint64_t id) -> Status {
                           std::lock_guard l(mu);
                           kernel.ids.erase(id);
                           return OkStatus();
                         }};
  MetricsRegistry metrics;
  PodCgroupSelector selector(PodSelectionRule::Create({"shop"}, {}).value(), store, writer,
                             {.cgroup_root = root_.string(), .poll_interval = std::chrono::milliseconds(10),
                              .rescan_interval = std::chrono::hours(1)},
                             metrics);
  selector.Start();
  auto wait_for = [&](size_t n) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard l(mu);
        if (kernel.ids.size() == n) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  EXPECT_TRUE(wait_for(0));
  K8sPod pod;
  pod.uid = "11111111-2222-3333-4444-555555555555";
  pod.name = "web-0";
  pod.namespace_name = "shop";
  pod.containers.push_back({"web", kWebId, "containerd"});
  store.Upsert(pod, {});  // the watch delivered the pod: selected without any other call
  EXPECT_TRUE(wait_for(1));
  store.Remove(pod.uid);
  EXPECT_TRUE(wait_for(0));
  selector.Stop();
  EXPECT_GE(selector.passes(), 2u);  // the first pass may already see the pod
}

}  // namespace
}  // namespace threadline
