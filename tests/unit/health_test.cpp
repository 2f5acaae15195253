// Liveness and readiness (agent/app/health.h) through their phases with a driven clock, the
// capability report's JSON (agent/capabilities/capability_json.h), and /healthz, /readyz and
// /capabilities served by the real metrics endpoint.
#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "agent/app/health.h"
#include "agent/capabilities/capability_json.h"
#include "exporter/metrics_server.h"

namespace threadline {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint64_t kS = 1'000'000'000ull;

TEST(HealthState, StartingIsAliveButNotReady) {
  HealthState h;
  h.SetStarting("loading and attaching BPF programs");
  EXPECT_TRUE(h.Liveness(100 * kS).ok);
  auto r = h.Readiness(100 * kS);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.reason, "starting: loading and attaching BPF programs");
}

TEST(HealthState, RunningIsReadyUntilTheLoopStalls) {
  HealthState h;
  h.SetRunning(10 * kS, "42 BPF hooks attached");
  EXPECT_TRUE(h.Readiness(10 * kS).ok);
  EXPECT_EQ(h.Readiness(10 * kS).reason, "ready: 42 BPF hooks attached");
  h.Heartbeat(14 * kS);
  EXPECT_TRUE(h.Readiness(18 * kS).ok);
  auto stalled = h.Readiness(20 * kS);  // 6 s without a turn of the consumer loop
  EXPECT_FALSE(stalled.ok);
  EXPECT_EQ(stalled.reason, "ring consumer loop stalled for 6.0 s");
  EXPECT_TRUE(h.Liveness(20 * kS).ok);  // not yet dead: the kubelet would restart too eagerly
  auto dead = h.Liveness(45 * kS);
  EXPECT_FALSE(dead.ok);
  EXPECT_THAT(dead.reason, HasSubstr("stalled for 31.0 s"));
  h.Heartbeat(45 * kS);
  EXPECT_TRUE(h.Liveness(45 * kS).ok);
  EXPECT_TRUE(h.Readiness(45 * kS).ok);
}

TEST(HealthState, FailedAndStoppingAreNotReady) {
  HealthState h;
  h.SetRunning(1 * kS, "x");
  h.SetStopping();
  EXPECT_FALSE(h.Readiness(1 * kS).ok);
  EXPECT_THAT(h.Readiness(1 * kS).reason, HasSubstr("stopping"));
  EXPECT_TRUE(h.Liveness(1 * kS).ok);
  h.SetFailed("ring buffer poll: EBADF");
  EXPECT_FALSE(h.Liveness(1 * kS).ok);
  EXPECT_EQ(h.Readiness(1 * kS).reason, "failed: ring buffer poll: EBADF");
}

CapabilityReport LockedDownReport() {
  CapabilityReport r;
  r.kernel_release = "6.18.0";
  r.btf = false;
  r.lockdown = "integrity";
  r.cgroup2_root = "/sys/fs/cgroup";
  r.can_run = true;
  ProbeResult up;
  up.kind = ProbeKind::kUprobe;
  up.name = "uprobe";
  up.target = "own binary";
  up.detail = "attach failed: \"EPERM\"\n";
  up.error_code = 1;
  r.results.push_back(up);
  ProbeResult kp;
  kp.kind = ProbeKind::kKprobe;
  kp.name = "kprobe";
  kp.detail = "attach failed: ENOENT";
  r.results.push_back(kp);
  HookChoice tls;
  tls.hook = "TLS libraries (OpenSSL)";
  tls.chosen = "not traced: TLS connections carry ciphertext only";
  tls.degraded = true;
  tls.reason = "no uprobe";
  r.choices.push_back(tls);
  HookChoice sys;
  sys.hook = "socket syscalls";
  sys.chosen = "syscall tracepoints";
  sys.active = true;
  sys.required = true;
  r.choices.push_back(sys);
  return r;
}

TEST(CapabilityJson, SaysWhyTheNodeTracesLess) {
  const CapabilityReport r = LockedDownReport();
  auto limits = CapabilityLimitations(r);
  ASSERT_EQ(limits.size(), 3u) << ::testing::PrintToString(limits);
  EXPECT_THAT(limits[0], HasSubstr("no kernel BTF"));
  EXPECT_THAT(limits[1], HasSubstr("tracefs not mounted"));
  EXPECT_THAT(limits[2], HasSubstr("TLS libraries (OpenSSL): not traced"));
  auto notes = CapabilityNotes(r);
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_THAT(notes[0], HasSubstr("lockdown (integrity)"));
  EXPECT_THAT(notes[1], HasSubstr("kprobe unavailable"));

  const std::string j = CapabilityReportJson(r);
  EXPECT_THAT(j, HasSubstr("\"btf\":false"));
  EXPECT_THAT(j, HasSubstr("\"lockdown\":\"integrity\""));
  EXPECT_THAT(j, HasSubstr("\"tracefs_root\":null"));
  EXPECT_THAT(j, HasSubstr("\"detail\":\"attach failed: \\\"EPERM\\\"\\n\""));  // escaped
  EXPECT_THAT(j, HasSubstr("{\"hook\":\"socket syscalls\",\"chosen\":\"syscall tracepoints\",\"active\":true"));
  EXPECT_EQ(j.front(), '{');
  EXPECT_EQ(j.back(), '}');

  CapabilityReport full;
  full.btf = true;
  full.lockdown = "none";
  full.tracefs_root = "/sys/kernel/tracing";
  full.cgroup2_root = "/sys/fs/cgroup";
  full.can_run = true;
  EXPECT_TRUE(CapabilityLimitations(full).empty());
  EXPECT_THAT(CapabilityReportJson(full), HasSubstr("\"limitations\":[],\"notes\":[]"));
}

// ---- over HTTP -------------------------------------------------------------------------------

size_t Collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct Answer {
  long status = 0;
  std::string body;
  std::string content_type;
};

Answer Get(const std::string& url) {
  Answer a;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> c(curl_easy_init(), &curl_easy_cleanup);
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &a.body);
  curl_easy_setopt(c.get(), CURLOPT_TIMEOUT_MS, 5000L);
  if (curl_easy_perform(c.get()) != CURLE_OK) return a;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &a.status);
  char* ct = nullptr;
  curl_easy_getinfo(c.get(), CURLINFO_CONTENT_TYPE, &ct);
  if (ct != nullptr) a.content_type = ct;
  return a;
}

TEST(MetricsServerHealth, ServesProbesAndCapabilities) {
  MetricsRegistry m;
  HealthState health;
  std::atomic<uint64_t> now{100 * kS};  // the test's clock, read by the server thread
  MetricsServerHandlers handlers;
  handlers.liveness = [&] {
    auto h = health.Liveness(now);
    return ProbeAnswer{h.ok, h.reason};
  };
  handlers.readiness = [&] {
    auto h = health.Readiness(now);
    return ProbeAnswer{h.ok, h.reason};
  };
  handlers.capabilities_json = [json = CapabilityReportJson(LockedDownReport())] { return json; };
  health.SetStarting("loading and attaching BPF programs");
  auto server = MetricsServer::Start("127.0.0.1:0", m, std::move(handlers));
  ASSERT_TRUE(server.ok()) << server.error().message;
  const std::string base = "http://127.0.0.1:" + std::to_string((*server)->port());

  Answer ready = Get(base + "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body, "starting: loading and attaching BPF programs\n");
  EXPECT_EQ(Get(base + "/healthz").status, 200);

  health.SetRunning(now, "3 BPF hooks attached");
  ready = Get(base + "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "ready: 3 BPF hooks attached\n");

  now += 7 * kS;
  ready = Get(base + "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_THAT(ready.body, HasSubstr("stalled for 7.0 s"));

  Answer caps = Get(base + "/capabilities");
  EXPECT_EQ(caps.status, 200);
  EXPECT_EQ(caps.content_type, "application/json");
  EXPECT_THAT(caps.body, HasSubstr("\"limitations\":[\"no kernel BTF"));

  health.SetFailed("ring buffer poll: EBADF");
  Answer live = Get(base + "/healthz");
  EXPECT_EQ(live.status, 503);
  EXPECT_EQ(live.body, "failed: ring buffer poll: EBADF\n");
}

TEST(MetricsServerHealth, WithoutHandlersOnlyTheOldEndpoints) {
  MetricsRegistry m;
  auto server = MetricsServer::Start("127.0.0.1:0", m);
  ASSERT_TRUE(server.ok()) << server.error().message;
  const std::string base = "http://127.0.0.1:" + std::to_string((*server)->port());
  EXPECT_EQ(Get(base + "/healthz").body, "ok\n");
  EXPECT_EQ(Get(base + "/readyz").status, 404);
  EXPECT_EQ(Get(base + "/capabilities").status, 404);
  EXPECT_THAT(Get(base + "/nope").body, Not(HasSubstr("ok")));
}

}  // namespace
}  // namespace threadline
