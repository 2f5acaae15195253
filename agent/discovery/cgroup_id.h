// The container a process runs in, from its cgroup path (/proc/<pid>/cgroup). Every container
// runtime puts each container in a cgroup named after the container id, and the kubelet puts
// that cgroup under one per pod named after the pod's uid, so the path alone tells container id,
// runtime, pod uid and QoS class, with no runtime socket and no API call.
//
// Shapes recognised (cgroup v2 "0::<path>" lines and v1 "<n>:<controllers>:<path>" lines):
//   systemd driver  .../kubepods.slice/kubepods-burstable.slice/
//                       kubepods-burstable-pod<uid with '_'>.slice/cri-containerd-<id>.scope
//                   (crio-<id>.scope for CRI-O, docker-<id>.scope for Docker/cri-dockerd,
//                   libpod-<id>.scope for Podman; Guaranteed pods have no QoS level:
//                   kubepods-pod<uid>.slice)
//   cgroupfs driver /kubepods/burstable/pod<uid>/<id>  (/kubepods/pod<uid>/<id> for Guaranteed;
//                   CRI-O writes crio-<id>)
//   plain Docker    /system.slice/docker-<id>.scope, /docker/<id>
// Paths seen from another cgroup namespace start with "/../.."; only the segments matter. When
// several segments name a container (nested runtimes), the innermost wins. CRI-O's conmon
// (crio-conmon-<id>.scope) is the runtime's monitor, not the container, so it is not one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "agent/common/result.h"

namespace threadline {

enum class ContainerRuntime { kUnknown, kContainerd, kCrio, kDocker, kPodman };

// "containerd", "cri-o", "docker", "podman", "" for unknown (the prefixes of a pod's
// status.containerStatuses[].containerID, minus "://").
std::string_view ContainerRuntimeName(ContainerRuntime runtime);

struct ContainerCgroup {
  std::string container_id;  // 64 lowercase hex digits
  ContainerRuntime runtime = ContainerRuntime::kUnknown;  // unknown for cgroupfs-driver paths
  std::string pod_uid;    // with '-' (the API's form); empty outside a pod
  std::string qos_class;  // "Guaranteed", "Burstable", "BestEffort" (status.qosClass); or empty

  bool operator==(const ContainerCgroup&) const = default;
};

namespace discovery {

// One cgroup path ("/kubepods/..."). nullopt when no segment names a container.
std::optional<ContainerCgroup> ParseCgroupPath(std::string_view path);

// The text of /proc/<pid>/cgroup: the v2 line is tried first (the unified hierarchy is what
// the runtimes manage on current nodes), then each v1 line in order.
std::optional<ContainerCgroup> ParseProcCgroup(std::string_view text);

}  // namespace discovery

// Reads <proc_root>/<pid>/cgroup. Ok(nullopt) for a process outside any container (host
// processes); an Error when the file cannot be read (the process is gone).
Result<std::optional<ContainerCgroup>> ReadContainerCgroup(uint32_t pid,
                                                           const std::string& proc_root = "/proc");

}  // namespace threadline
