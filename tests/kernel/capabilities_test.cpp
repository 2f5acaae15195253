// The capability report against the real kernel: every kind is really loaded, attached and
// triggered, so these assertions are about this machine, not about our bookkeeping.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>

#include "agent/capabilities/capability_probe.h"
#include "agent/kernel/bpf_env.h"
#include "tests/kernel/kernel_env.h"

namespace threadline {
namespace {

bool EnvIs(const char* name, std::string_view value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::string_view(v) == value;
}

const ProbeResult& ResultFor(const CapabilityReport& report, ProbeKind kind) {
  const ProbeResult* r = report.Find(kind);
  if (r == nullptr) {
    ADD_FAILURE() << "no result for " << ProbeKindName(kind);
    static const ProbeResult missing;
    return missing;
  }
  return *r;
}

class CapabilitiesTest : public ::testing::Test {
 protected:
  void SetUp() override { testing::RequireBpfOrSkip(); }
};

TEST_F(CapabilitiesTest, EveryKindIsReportedWithADetail) {
  const CapabilityReport& report = ProbeCapabilities();
  ASSERT_EQ(report.results.size(), AllProbeKinds().size());
  for (ProbeKind kind : AllProbeKinds()) {
    const ProbeResult& r = ResultFor(report, kind);
    EXPECT_EQ(r.name, ProbeKindName(kind));
    EXPECT_FALSE(r.detail.empty()) << r.name;
    EXPECT_GT(r.elapsed_ms, 0.0) << r.name;
    // fired implies available; a failure always carries an errno.
    if (r.fired) {
      EXPECT_TRUE(r.available) << r.name;
    }
    if (!r.works()) {
      EXPECT_NE(r.error_code, 0) << r.name << ": " << r.detail;
    }
  }
}

// What the agent's base path needs: present on every kernel it supports.
TEST_F(CapabilitiesTest, BaseKindsAreAvailableAndFire) {
  const CapabilityReport& report = ProbeCapabilities();
  for (ProbeKind kind :
       {ProbeKind::kSyscallTracepoint, ProbeKind::kSockTracepoint, ProbeKind::kSchedTracepoint,
        ProbeKind::kTpBtf, ProbeKind::kRawTracepoint, ProbeKind::kUprobe, ProbeKind::kUretprobe,
        ProbeKind::kRingBuffer, ProbeKind::kSkMsg, ProbeKind::kSockops}) {
    const ProbeResult& r = ResultFor(report, kind);
    EXPECT_TRUE(r.available) << r.name << ": " << r.detail;
    EXPECT_TRUE(r.fired) << r.name << ": " << r.detail;
  }
  EXPECT_TRUE(report.can_run) << report.cannot_run_reason;
  EXPECT_TRUE(report.environment_error.empty()) << report.environment_error;
  EXPECT_TRUE(report.tracefs_root.has_value());
}

// What the kernel's own configuration says must be refused, is. The kernel config is only the
// test's oracle; the probe never reads it. fentry's EPERM has no config switch to predict it,
// so hosts where it is refused (like the project's dev VM) set
// THREADLINE_EXPECT_RESTRICTED_KERNEL=1 to pin kprobe, fentry and write_user down.
TEST_F(CapabilitiesTest, RestrictedKindsAreReportedUnavailable) {
  const CapabilityReport& report = ProbeCapabilities();
  const std::string lockdown = LockdownMode();
  if (lockdown == "integrity" || lockdown == "confidentiality" ||
      testing::KernelConfigValue("CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY") == "y" ||
      testing::KernelConfigValue("CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY") == "y") {
    const ProbeResult& r = ResultFor(report, ProbeKind::kProbeWriteUser);
    EXPECT_FALSE(r.available) << "kernel lockdown must refuse it: " << r.detail;
  }
  if (testing::KernelConfigValue("CONFIG_KPROBES") == "n") {
    const ProbeResult& r = ResultFor(report, ProbeKind::kKprobe);
    EXPECT_FALSE(r.available) << "kernel built without kprobes: " << r.detail;
  }
  if (EnvIs("THREADLINE_EXPECT_RESTRICTED_KERNEL", "1")) {
    for (ProbeKind kind : {ProbeKind::kKprobe, ProbeKind::kFentry, ProbeKind::kProbeWriteUser}) {
      const ProbeResult& r = ResultFor(report, kind);
      EXPECT_FALSE(r.available) << r.name << ": " << r.detail;
      EXPECT_FALSE(r.fired) << r.name;
    }
    const HookChoice* fast = report.FindChoice("fast path acceleration");
    ASSERT_NE(fast, nullptr);
    EXPECT_FALSE(fast->active);
    EXPECT_EQ(fast->chosen, "none (tracepoints only)");
  }
  // Whatever the kernel, the agent never depends on them.
  EXPECT_TRUE(report.can_run) << report.cannot_run_reason;
}

TEST_F(CapabilitiesTest, HookChoicesFollowTheProbes) {
  const CapabilityReport& report = ProbeCapabilities();
  const HookChoice* syscalls = report.FindChoice("socket syscalls");
  ASSERT_NE(syscalls, nullptr);
  EXPECT_TRUE(syscalls->required);
  EXPECT_EQ(syscalls->chosen, "syscall tracepoints");
  EXPECT_NE(syscalls->alternatives.find("kprobe"), std::string::npos);
  EXPECT_NE(syscalls->alternatives.find("fentry"), std::string::npos);

  const HookChoice* transport = report.FindChoice("event transport");
  ASSERT_NE(transport, nullptr);
  EXPECT_TRUE(transport->required);
  EXPECT_EQ(transport->active, report.Works(ProbeKind::kRingBuffer));

  const HookChoice* injection = report.FindChoice("traceparent injection");
  ASSERT_NE(injection, nullptr);
  EXPECT_EQ(injection->active,
            report.Works(ProbeKind::kSkMsg) && report.Works(ProbeKind::kSockops));
  EXPECT_NE(injection->alternatives.find("bpf_probe_write_user"), std::string::npos);

  const HookChoice* go_tls = report.FindChoice("Go crypto/tls");
  ASSERT_NE(go_tls, nullptr);
  EXPECT_EQ(go_tls->chosen, "uprobes at return instructions");
}

TEST_F(CapabilitiesTest, ReportTextNamesEveryKindAndHook) {
  const CapabilityReport& report = ProbeCapabilities();
  const std::string text = FormatReport(report);
  for (ProbeKind kind : AllProbeKinds()) {
    EXPECT_NE(text.find(std::string(ProbeKindName(kind))), std::string::npos) << ProbeKindName(kind);
  }
  for (const char* hook :
       {"socket syscalls", "connection state", "process lifecycle", "event transport",
        "TLS libraries (OpenSSL)", "Go crypto/tls", "traceparent injection",
        "fast path acceleration"}) {
    EXPECT_NE(text.find(hook), std::string::npos) << hook;
    EXPECT_NE(report.FindChoice(hook), nullptr) << hook;
  }
  EXPECT_NE(text.find(report.kernel_release), std::string::npos);
  std::cout << text;  // the report for this machine, in the test log
}

TEST_F(CapabilitiesTest, ProbeIsQuickAndCached) {
  const CapabilityReport& first = ProbeCapabilities();
  EXPECT_LT(first.elapsed_ms, 1000.0);
  EXPECT_EQ(&first, &ProbeCapabilities());
}

// A second, uncached run leaves nothing behind that breaks the next one (links, cgroups,
// sockhash entries) and reaches the same answers.
TEST_F(CapabilitiesTest, RerunGivesTheSameAnswers) {
  const CapabilityReport& first = ProbeCapabilities();
  const CapabilityReport again = RunCapabilityProbe();
  ASSERT_EQ(again.results.size(), first.results.size());
  for (size_t i = 0; i < first.results.size(); ++i) {
    EXPECT_EQ(again.results[i].works(), first.results[i].works()) << first.results[i].name;
  }
  if (first.cgroup2_root) {
    std::ifstream probe_cgroup(*first.cgroup2_root + "/threadline-probe-" +
                               std::to_string(::getpid()) + "/cgroup.procs");
    EXPECT_FALSE(probe_cgroup.good()) << "probe cgroup left behind";
  }
}

}  // namespace
}  // namespace threadline
