// The Kubernetes client and pod watcher against a local server replaying recorded API-server
// answers (tests/tools/k8s_replay_server.py, tests/fixtures/k8s/): a list then a watch with
// ADDED/MODIFIED/DELETED/BOOKMARK, a 410 Gone as an ERROR event and as an HTTP status, a
// connection dropped in the middle of an event, token rotation. After each, the pod store must
// hold what the API server holds. Real HTTP over loopback, real libcurl, no privileges.
#include "agent/discovery/k8s_client.h"
#include "agent/discovery/k8s_watcher.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

extern char** environ;

namespace threadline {
namespace {

namespace fs = std::filesystem;

const fs::path kTestsDir = fs::path(THREADLINE_SOURCE_DIR) / "tests";
const fs::path kFixtures = kTestsDir / "fixtures" / "k8s";
const fs::path kReplayServer = kTestsDir / "tools" / "k8s_replay_server.py";

constexpr char kNode[] = "worker-1";
constexpr char kCheckoutId[] = "c7761e58969f7edd498186641b2021e8477e1bcd230de4cf3435242da4a40d14";
constexpr char kRedisId[] = "34fb46c847bb9df96e5205a39d382f648a6e8dce1e014cd85b4ca6a88d88ed03";
constexpr char kRedisRestartedId[] = "7e0da8c9ec365e33377bd1828bdc989b6fff6a18547bd4d6b030d166e229b591";
constexpr char kReportId[] = "845e91831319e89c4d656bdb80c278ac09a7230d61e5dfd2e1b1fbb436ac8917";
constexpr char kShellId[] = "ce635c4eabff5e4f56dba8fb1e39ca235530aa2b6b18533eef1af3862016c577";
constexpr char kWebId[] = "4b5e57f6eb2f42b9039b3d1e13929295f231749c510cbe341cd68036d9af97e2";
constexpr char kPaymentsId[] = "25389d597745ae12128a7e9200d23400c23eba0201e49210406666971d4055f3";

constexpr auto kWait = std::chrono::seconds(20);  // a loaded 2-core machine; normally < 1 s

// A temporary directory, removed at the end.
struct TempDir {
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "threadline-k8s-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

// The replay server as a child process; its port is read from its first stdout line.
class ReplayServer {
 public:
  ReplayServer(const std::string& scenario, const fs::path& log) {
    int fds[2];
    if (::pipe(fds) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<std::string> args = {"python3",    kReplayServer.string(), "--scenario",
                                     (kFixtures / scenario).string(), "--fixtures", kFixtures.string(),
                                     "--log",      log.string()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    std::FILE* out = ::fdopen(fds[0], "r");
    char line[128] = {};
    if (out && std::fgets(line, sizeof(line), out)) std::sscanf(line, "listening on %d", &port_);
    if (out) std::fclose(out);
  }
  ~ReplayServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool ok() const { return pid_ > 0 && port_ > 0; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

std::vector<nlohmann::json> ReadLog(const fs::path& log) {
  std::vector<nlohmann::json> out;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

bool WaitFor(const std::function<bool()>& pred) {
  const auto end = std::chrono::steady_clock::now() + kWait;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

std::string TopWorkload(const K8sPodStore& store, const std::string& container_id) {
  auto m = store.Lookup(container_id);
  if (!m) return "<unknown container>";
  const K8sWorkload* w = m->pod->TopWorkload();
  return w ? w->kind + "/" + w->name : "<none>";
}

// Client + store + watcher against one scenario, with a token file.
class WatcherTest : public ::testing::Test {
 protected:
  void Start(const std::string& scenario) {
    log_ = dir_.path / "requests.jsonl";
    token_ = dir_.path / "token";
    std::ofstream(token_) << "token-1\n";
    server_ = std::make_unique<ReplayServer>(scenario, log_);
    ASSERT_TRUE(server_->ok()) << "replay server did not start (python3 " << kReplayServer << ")";
    K8sClientConfig cc;
    cc.api_server = server_->url();
    cc.token_file = token_.string();
    cc.ca_file = "/nonexistent/ca.crt";  // http: unused
    auto client = K8sClient::Create(cc, metrics_);
    ASSERT_TRUE(client.ok()) << client.error().message;
    client_ = std::move(client).value();
    store_ = std::make_unique<K8sPodStore>(100, metrics_);
    K8sWatcherOptions wo;
    wo.node_name = kNode;
    wo.backoff_initial = std::chrono::milliseconds(50);
    wo.backoff_max = std::chrono::milliseconds(200);
    watcher_ = std::make_unique<K8sPodWatcher>(*client_, *store_, wo, metrics_);
    watcher_->Start();
  }
  void TearDown() override {
    if (watcher_) watcher_->Stop();
  }
  std::vector<nlohmann::json> Requests(bool watch) const {
    std::vector<nlohmann::json> out;
    for (auto& r : ReadLog(log_)) {
      if (r["path"] != "/api/v1/pods") continue;
      bool is_watch = r["query"].contains("watch");
      if (is_watch == watch) out.push_back(r);
    }
    return out;
  }

  TempDir dir_;
  fs::path log_, token_;
  MetricsRegistry metrics_;
  std::unique_ptr<ReplayServer> server_;
  std::unique_ptr<K8sClient> client_;
  std::unique_ptr<K8sPodStore> store_;
  std::unique_ptr<K8sPodWatcher> watcher_;
};

TEST_F(WatcherTest, ListThenWatchAddedModifiedDeletedBookmark) {
  Start("scenario_watch.json");
  // The end state of the watch stream: web's container started, redis restarted, debug gone.
  ASSERT_TRUE(WaitFor([&] {
    return store_->Lookup(kWebId) && !store_->Lookup(kShellId) &&
           metrics_.CounterTotal("threadline_k8s_watch_events_total") == 5;  // the BOOKMARK too
  })) << "store: " << store_->size() << " pods";
  EXPECT_EQ(store_->PodUids(), (std::vector<std::string>{
                                   "0e9d8c7b-6a5f-4e3d-2c1b-0a9f8e7d6c5b",    // report (Job)
                                   "3f1c6a2e-8b4d-4e1a-9c7f-2d5e8a1b4c60",    // checkout
                                   "9b2d4f6a-1c3e-4a5b-8d7f-6e1a2c3b4d50",    // redis-0
                                   "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",    // node-exporter
                                   "d4c3b2a1-0f9e-4d8c-b7a6-958473625140"}));  // web (added)
  EXPECT_EQ(TopWorkload(*store_, kCheckoutId), "Deployment/checkout");
  EXPECT_EQ(TopWorkload(*store_, kWebId), "Deployment/web");
  EXPECT_EQ(TopWorkload(*store_, kReportId), "CronJob/report");
  EXPECT_EQ(TopWorkload(*store_, kRedisRestartedId), "StatefulSet/redis");
  EXPECT_FALSE(store_->Lookup(kRedisId)) << "the container id from before the restart";
  auto web = store_->Lookup(kWebId);
  EXPECT_EQ(web->container_name, "web");
  EXPECT_EQ(web->pod->namespace_name, "shop");
  EXPECT_EQ(web->pod->node_name, kNode);

  // What was asked: one LIST of this node's pods with the token, then a WATCH from the list's
  // resourceVersion, with bookmarks.
  auto lists = Requests(false);
  ASSERT_EQ(lists.size(), 1u);
  EXPECT_EQ(lists[0]["query"]["fieldSelector"], "spec.nodeName=worker-1");
  EXPECT_EQ(lists[0]["authorization"], "Bearer token-1");
  EXPECT_EQ(lists[0]["accept"], "application/json");
  auto watches = Requests(true);
  ASSERT_EQ(watches.size(), 1u);
  EXPECT_EQ(watches[0]["query"]["resourceVersion"], "1000");
  EXPECT_EQ(watches[0]["query"]["fieldSelector"], "spec.nodeName=worker-1");
  EXPECT_EQ(watches[0]["query"]["allowWatchBookmarks"], "true");
  EXPECT_EQ(watches[0]["authorization"], "Bearer token-1");
  EXPECT_EQ(metrics_.CounterTotal("threadline_k8s_watch_events_total"), 5u);
  EXPECT_EQ(metrics_.CounterTotal("threadline_k8s_resyncs_total"), 0u);
  EXPECT_EQ(watcher_->lists_completed(), 1u);
}

// Final state of the replayed API after a resync: pod_list_resync.json (report's pod is gone,
// redis restarted, web running), then watch_after_drop.jsonl deletes debug-shell.
void ExpectResyncedState(const K8sPodStore& store) {
  EXPECT_EQ(store.PodUids(), (std::vector<std::string>{
                                 "3f1c6a2e-8b4d-4e1a-9c7f-2d5e8a1b4c60",    // checkout
                                 "9b2d4f6a-1c3e-4a5b-8d7f-6e1a2c3b4d50",    // redis-0
                                 "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",    // node-exporter
                                 "d4c3b2a1-0f9e-4d8c-b7a6-958473625140"}));  // web
  EXPECT_FALSE(store.Lookup(kReportId)) << "a pod missing from the new list must go";
  EXPECT_EQ(TopWorkload(store, kRedisRestartedId), "StatefulSet/redis");
  EXPECT_EQ(TopWorkload(store, kWebId), "Deployment/web");
}

TEST_F(WatcherTest, GoneAsAnErrorEventRelists) {
  Start("scenario_gone_event.json");
  ASSERT_TRUE(WaitFor([&] { return watcher_->lists_completed() >= 2 && !store_->Lookup(kShellId); }));
  ExpectResyncedState(*store_);
  auto watches = Requests(true);
  ASSERT_EQ(watches.size(), 2u);
  EXPECT_EQ(watches[0]["query"]["resourceVersion"], "1000");
  EXPECT_EQ(watches[1]["query"]["resourceVersion"], "1500") << "the second watch starts from the new list";
  EXPECT_EQ(Requests(false).size(), 2u);
  EXPECT_EQ(metrics_.GetCounter("threadline_k8s_resyncs_total", {{"reason", "gone"}}).Value(), 1u);
}

TEST_F(WatcherTest, GoneAsAnHttpStatusRelists) {
  Start("scenario_gone_status.json");
  ASSERT_TRUE(WaitFor([&] { return watcher_->lists_completed() >= 2 && !store_->Lookup(kShellId); }));
  ExpectResyncedState(*store_);
  EXPECT_EQ(Requests(false).size(), 2u);
  EXPECT_EQ(metrics_.GetCounter("threadline_k8s_resyncs_total", {{"reason", "gone"}}).Value(), 1u);
}

TEST_F(WatcherTest, AnUndecodableEventLineIsCountedAndRelists) {
  // A proxy's error page in the middle of the stream: an event may be lost, so list again.
  Start("scenario_garbage.json");
  ASSERT_TRUE(WaitFor([&] { return watcher_->lists_completed() >= 2 && !store_->Lookup(kShellId); }));
  ExpectResyncedState(*store_);
  EXPECT_EQ(metrics_.GetCounter("threadline_k8s_decode_errors_total", {{"what", "watch_event"}}).Value(), 1u);
}

TEST_F(WatcherTest, DroppedConnectionResumesFromTheLastResourceVersion) {
  Start("scenario_drop.json");
  // The first stream added payments and then broke in the middle of debug-shell's DELETED; the
  // resumed watch delivers that event whole.
  ASSERT_TRUE(WaitFor([&] { return store_->Lookup(kPaymentsId) && !store_->Lookup(kShellId); }));
  // payments' ReplicaSet is forbidden (403): the Deployment comes from the pod-template-hash.
  EXPECT_EQ(TopWorkload(*store_, kPaymentsId), "Deployment/payments");
  EXPECT_EQ(store_->size(), 5u);
  auto watches = Requests(true);
  ASSERT_EQ(watches.size(), 2u);
  EXPECT_EQ(watches[1]["query"]["resourceVersion"], "1001")
      << "resumes after the last whole event, not from the list and not from the cut one";
  EXPECT_EQ(Requests(false).size(), 1u) << "a dropped connection does not need a LIST";
  EXPECT_EQ(metrics_.CounterTotal("threadline_k8s_watch_dropped_total"), 1u);
  EXPECT_EQ(metrics_.CounterTotal("threadline_k8s_decode_errors_total"), 0u)
      << "the cut line must not be decoded";
}

TEST(K8sClient, RereadsTheRotatedTokenAndSendsNoneWithoutAFile) {
  TempDir dir;
  const fs::path log = dir.path / "requests.jsonl";
  const fs::path token = dir.path / "token";
  std::ofstream(token) << "token-1\n";
  ReplayServer server("scenario_watch.json", log);
  ASSERT_TRUE(server.ok());
  MetricsRegistry metrics;
  K8sClientConfig cc;
  cc.api_server = server.url() + "/";  // a trailing slash is tolerated
  cc.token_file = token.string();
  cc.token_reload = std::chrono::seconds(0);  // re-read at every request
  auto client = K8sClient::Create(cc, metrics);
  ASSERT_TRUE(client.ok());
  auto r1 = (*client)->Get("/apis/apps/v1/namespaces/shop/replicasets/checkout-7c9f8b6d5");
  ASSERT_TRUE(r1.ok()) << r1.error().message;
  EXPECT_EQ(r1->status, 200);
  EXPECT_NE(r1->body.find("\"Deployment\""), std::string::npos);
  // The kubelet rotates the projected token by replacing the file.
  std::ofstream(dir.path / "token.new") << "token-2\n";
  fs::rename(dir.path / "token.new", token);
  auto r2 = (*client)->Get("/apis/apps/v1/namespaces/shop/replicasets/missing");
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->status, 404);
  auto log_lines = ReadLog(log);
  ASSERT_EQ(log_lines.size(), 2u);
  EXPECT_EQ(log_lines[0]["authorization"], "Bearer token-1");
  EXPECT_EQ(log_lines[1]["authorization"], "Bearer token-2");
  EXPECT_EQ(log_lines[0]["path"], "/apis/apps/v1/namespaces/shop/replicasets/checkout-7c9f8b6d5");

  // No token file: the request still goes (anonymous), without an Authorization header.
  fs::remove(token);
  K8sClientConfig no_token = cc;
  no_token.token_file = (dir.path / "absent").string();
  auto anon = K8sClient::Create(no_token, metrics);
  ASSERT_TRUE(anon.ok());
  ASSERT_TRUE((*anon)->Get("/api/v1/pods").ok());
  EXPECT_EQ(ReadLog(log).back()["authorization"], "");
}

TEST(K8sClient, ConnectionRefusedIsAnErrorAndBadUrlsAreRejected) {
  EXPECT_FALSE(K8sClient::Create({.api_server = "10.96.0.1:443"}).ok());
  EXPECT_FALSE(K8sClient::Create({.api_server = ""}).ok());
  // Port 1 on loopback: nothing listens there.
  auto client = K8sClient::Create({.api_server = "http://127.0.0.1:1"});
  ASSERT_TRUE(client.ok());
  EXPECT_FALSE((*client)->Get("/api/v1/pods").ok());
}

TEST(K8sMetadataService, NeedsANodeNameAndAnApiServer) {
  EXPECT_FALSE(K8sMetadataService::Start({.api_server = "https://10.96.0.1:443", .node_name = ""}).ok());
  EXPECT_FALSE(K8sMetadataService::Start({.api_server = "", .node_name = "n"}).ok());
}

}  // namespace
}  // namespace threadline
