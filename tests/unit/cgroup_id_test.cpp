// Container ids from /proc/<pid>/cgroup, on path samples as each runtime, cgroup driver and
// cgroup version writes them (taken from nodes running kubelet 1.2x with containerd 1.6/1.7,
// CRI-O 1.28, Docker 20-26 with cri-dockerd, Podman 4; cgroup v1 and v2).
#include "agent/discovery/cgroup_id.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>

namespace threadline {
namespace {

using discovery::ParseCgroupPath;
using discovery::ParseProcCgroup;

constexpr char kId[] = "c7761e58969f7edd498186641b2021e8477e1bcd230de4cf3435242da4a40d14";
constexpr char kUid[] = "3f1c6a2e-8b4d-4e1a-9c7f-2d5e8a1b4c60";
constexpr char kUidSystemd[] = "3f1c6a2e_8b4d_4e1a_9c7f_2d5e8a1b4c60";

struct Sample {
  const char* what;
  std::string cgroup_file;
  ContainerRuntime runtime;
  std::string pod_uid;
  std::string qos;
};

void PrintTo(const Sample& s, std::ostream* os) { *os << s.what; }

class CgroupSamples : public ::testing::TestWithParam<Sample> {};

TEST_P(CgroupSamples, ContainerIdRuntimePodAndQos) {
  const Sample& s = GetParam();
  auto got = ParseProcCgroup(s.cgroup_file);
  ASSERT_TRUE(got.has_value()) << s.what;
  EXPECT_EQ(got->container_id, kId) << s.what;
  EXPECT_EQ(got->runtime, s.runtime) << s.what;
  EXPECT_EQ(got->pod_uid, s.pod_uid) << s.what;
  EXPECT_EQ(got->qos_class, s.qos) << s.what;
}

const std::string id = kId;
const std::string uid = kUid;
const std::string uid_ = kUidSystemd;

INSTANTIATE_TEST_SUITE_P(
    Runtimes, CgroupSamples,
    ::testing::Values(
        Sample{"containerd, systemd driver, cgroup v2, Burstable",
               "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uid_ +
                   ".slice/cri-containerd-" + id + ".scope\n",
               ContainerRuntime::kContainerd, uid, "Burstable"},
        Sample{"containerd, systemd driver, cgroup v2, BestEffort",
               "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uid_ +
                   ".slice/cri-containerd-" + id + ".scope\n",
               ContainerRuntime::kContainerd, uid, "BestEffort"},
        Sample{"containerd, systemd driver, cgroup v2, Guaranteed (no QoS level)",
               "0::/kubepods.slice/kubepods-pod" + uid_ + ".slice/cri-containerd-" + id + ".scope\n",
               ContainerRuntime::kContainerd, uid, "Guaranteed"},
        Sample{"containerd, cgroupfs driver, cgroup v1 (k3s, older kubeadm)",
               "12:hugetlb:/kubepods/burstable/pod" + uid + "/" + id + "\n" +
                   "11:cpu,cpuacct:/kubepods/burstable/pod" + uid + "/" + id + "\n" +
                   "10:memory:/kubepods/burstable/pod" + uid + "/" + id + "\n" +
                   "1:name=systemd:/kubepods/burstable/pod" + uid + "/" + id + "\n0::/\n",
               ContainerRuntime::kUnknown, uid, "Burstable"},
        Sample{"containerd, cgroupfs driver, cgroup v2, Guaranteed",
               "0::/kubepods/pod" + uid + "/" + id + "\n", ContainerRuntime::kUnknown, uid, "Guaranteed"},
        Sample{"containerd, systemd driver, cgroup v1 (hybrid: v2 line is '/')",
               "12:pids:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uid_ +
                   ".slice/cri-containerd-" + id + ".scope\n" +
                   "4:memory:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uid_ +
                   ".slice/cri-containerd-" + id + ".scope\n0::/\n",
               ContainerRuntime::kContainerd, uid, "BestEffort"},
        Sample{"CRI-O, systemd driver, cgroup v2",
               "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uid_ + ".slice/crio-" + id +
                   ".scope\n",
               ContainerRuntime::kCrio, uid, "Burstable"},
        Sample{"CRI-O, cgroupfs driver, cgroup v1",
               "9:memory:/kubepods/besteffort/pod" + uid + "/crio-" + id + "\n", ContainerRuntime::kCrio, uid,
               "BestEffort"},
        Sample{"cri-dockerd, systemd driver, cgroup v2",
               "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uid_ + ".slice/docker-" + id +
                   ".scope\n",
               ContainerRuntime::kDocker, uid, "Burstable"},
        Sample{"Docker, systemd driver, cgroup v2", "0::/system.slice/docker-" + id + ".scope\n",
               ContainerRuntime::kDocker, "", ""},
        Sample{"Docker, cgroupfs driver, cgroup v1",
               "13:misc:/\n12:cpuset:/docker/" + id + "\n11:memory:/docker/" + id + "\n0::/docker/" + id + "\n",
               ContainerRuntime::kDocker, "", ""},
        Sample{"Podman rootful, cgroup v2", "0::/machine.slice/libpod-" + id + ".scope/container\n",
               ContainerRuntime::kPodman, "", ""},
        Sample{"seen from the agent's own cgroup namespace",
               "0::/../../kubepods-besteffort.slice/kubepods-besteffort-pod" + uid_ + ".slice/cri-containerd-" +
                   id + ".scope\n",
               ContainerRuntime::kContainerd, uid, "BestEffort"},
        Sample{"a process in a sub-cgroup of its container (systemd inside)",
               "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uid_ +
                   ".slice/cri-containerd-" + id + ".scope/init.scope\n",
               ContainerRuntime::kContainerd, uid, "Burstable"}),
    // Test names from the descriptions ("containerd_systemd_driver_cgroup_v2_Burstable"), not
    // gtest's byte dump of the parameter.
    [](const ::testing::TestParamInfo<Sample>& info) {
      std::string name;
      for (const char* c = info.param.what; *c; ++c) {
        if (std::isalnum(static_cast<unsigned char>(*c))) {
          name += *c;
        } else if (!name.empty() && name.back() != '_') {
          name += '_';
        }
      }
      while (!name.empty() && name.back() == '_') name.pop_back();
      return name;
    });

TEST(CgroupId, HostProcessesAreNotContainers) {
  EXPECT_FALSE(ParseProcCgroup("0::/\n"));
  EXPECT_FALSE(ParseProcCgroup("0::/system.slice/sshd.service\n"));
  EXPECT_FALSE(ParseProcCgroup("0::/user.slice/user-1000.slice/session-3.scope\n"));
  EXPECT_FALSE(ParseProcCgroup("0::/kubepods.slice/kubepods-burstable.slice\n"));  // the kubelet's own
  EXPECT_FALSE(ParseProcCgroup("12:memory:/system.slice/containerd.service\n0::/\n"));
  EXPECT_FALSE(ParseProcCgroup(""));
}

TEST(CgroupId, RejectsLookAlikes) {
  // CRI-O's conmon watches the container from its own scope: not the container.
  EXPECT_FALSE(ParseCgroupPath("/kubepods.slice/kubepods-pod" + uid_ + ".slice/crio-conmon-" + id + ".scope"));
  // Not 64 lowercase hex.
  EXPECT_FALSE(ParseCgroupPath("/docker/" + id.substr(1)));
  EXPECT_FALSE(ParseCgroupPath("/docker/" + id + "0"));
  std::string upper = id;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_FALSE(ParseCgroupPath("/docker/" + upper));
  EXPECT_FALSE(ParseCgroupPath("/system.slice/cri-containerd-" + id.substr(0, 12) + ".scope"));
  // Garbage lines are skipped, not fatal.
  EXPECT_FALSE(ParseProcCgroup("no colons here\n1:only-one-colon\n"));
}

TEST(CgroupId, InnermostContainerWins) {
  const std::string inner = "84532b306f259587c364bd7301e0813963d5b84fd27c9338f0862dab8f0499d7";
  auto got = ParseCgroupPath("/docker/" + id + "/docker/" + inner);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->container_id, inner);
}

TEST(CgroupId, V2LineBeatsV1Lines) {
  const std::string other = "84532b306f259587c364bd7301e0813963d5b84fd27c9338f0862dab8f0499d7";
  auto got = ParseProcCgroup("4:memory:/docker/" + other + "\n0::/system.slice/docker-" + id + ".scope\n");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->container_id, id);
}

TEST(CgroupId, RuntimeNames) {
  EXPECT_EQ(ContainerRuntimeName(ContainerRuntime::kContainerd), "containerd");
  EXPECT_EQ(ContainerRuntimeName(ContainerRuntime::kCrio), "cri-o");
  EXPECT_EQ(ContainerRuntimeName(ContainerRuntime::kDocker), "docker");
  EXPECT_EQ(ContainerRuntimeName(ContainerRuntime::kUnknown), "");
}

TEST(CgroupId, ReadsProcFiles) {
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "threadline-cgroup-XXXXXX").string();
  const std::string root = ::mkdtemp(tmpl.data());
  fs::create_directories(root + "/42");
  std::ofstream(root + "/42/cgroup") << "0::/kubepods/besteffort/pod" << uid << "/" << id << "\n";
  fs::create_directories(root + "/43");
  std::ofstream(root + "/43/cgroup") << "0::/user.slice\n";
  auto in = ReadContainerCgroup(42, root);
  ASSERT_TRUE(in.ok());
  ASSERT_TRUE(in->has_value());
  EXPECT_EQ((*in)->container_id, id);
  auto host = ReadContainerCgroup(43, root);
  ASSERT_TRUE(host.ok());
  EXPECT_FALSE(host->has_value());
  EXPECT_FALSE(ReadContainerCgroup(44, root).ok());  // gone
  fs::remove_all(root);
}

}  // namespace
}  // namespace threadline
