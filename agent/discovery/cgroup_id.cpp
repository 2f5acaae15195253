#include "agent/discovery/cgroup_id.h"

#include <algorithm>
#include <vector>

#include "agent/discovery/proc_fs.h"

namespace threadline {

namespace {

constexpr size_t kContainerIdLength = 64;

bool IsContainerId(std::string_view s) {
  return s.size() == kContainerIdLength &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Segment shapes that name a container, as data: "<prefix><id><suffix>". The suffix is optional
// because CRI-O with the cgroupfs driver writes "crio-<id>" without ".scope".
struct ScopeRule {
  std::string_view prefix;
  ContainerRuntime runtime;
};
constexpr ScopeRule kScopeRules[] = {
    {"cri-containerd-", ContainerRuntime::kContainerd},
    {"crio-", ContainerRuntime::kCrio},
    {"docker-", ContainerRuntime::kDocker},
    {"libpod-", ContainerRuntime::kPodman},
};

std::optional<std::pair<std::string_view, ContainerRuntime>> ContainerInSegment(
    std::string_view segment, std::string_view parent) {
  if (IsContainerId(segment)) {
    // cgroupfs driver: the bare id. Only a plain-Docker parent tells the runtime; under
    // kubepods any CRI runtime writes the same thing (the pod's status says which).
    ContainerRuntime rt = parent == "docker" ? ContainerRuntime::kDocker : ContainerRuntime::kUnknown;
    return std::pair{segment, rt};
  }
  std::string_view body = segment;
  if (body.ends_with(".scope")) body.remove_suffix(6);
  for (const auto& rule : kScopeRules) {
    if (!body.starts_with(rule.prefix)) continue;
    std::string_view id = body.substr(rule.prefix.size());
    if (IsContainerId(id)) return std::pair{id, rule.runtime};
  }
  return std::nullopt;
}

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > start) out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

std::string QosName(std::string_view level) {
  if (level == "burstable") return "Burstable";
  if (level == "besteffort") return "BestEffort";
  return "";
}

// The pod part of a path: "kubepods[-<qos>]-pod<uid>.slice" (systemd driver, which escapes '-'
// in unit names as '_'; distinctive enough to be trusted anywhere, which matters for paths seen
// from another cgroup namespace, "/../../kubepods-besteffort-pod<uid>.slice/...") or
// "pod<uid>" under a "kubepods" root (cgroupfs driver). Sets pod_uid and qos_class when found.
void ParsePodSegments(const std::vector<std::string_view>& segs, size_t container_index, ContainerCgroup& out) {
  size_t cgroupfs_root = segs.size();
  for (size_t i = 0; i < container_index; ++i) {
    std::string_view s = segs[i];
    if (s == "kubepods" && cgroupfs_root == segs.size()) {
      cgroupfs_root = i;
      continue;
    }
    if (s.starts_with("kubepods-") && s.ends_with(".slice")) {
      s.remove_suffix(6);
      s.remove_prefix(9);
      size_t pod = s.find("pod");
      if (pod == std::string_view::npos || (pod > 0 && s[pod - 1] != '-')) continue;  // the QoS level
      std::string uid(s.substr(pod + 3));
      std::replace(uid.begin(), uid.end(), '_', '-');
      out.pod_uid = std::move(uid);
      out.qos_class = pod == 0 ? "Guaranteed" : QosName(s.substr(0, pod - 1));
      return;
    }
    if (cgroupfs_root < i && s.starts_with("pod") && s.size() > 3) {
      out.pod_uid = std::string(s.substr(3));
      out.qos_class = i == cgroupfs_root + 1 ? "Guaranteed" : QosName(segs[i - 1]);
      return;
    }
  }
}

}  // namespace

std::string_view ContainerRuntimeName(ContainerRuntime runtime) {
  switch (runtime) {
    case ContainerRuntime::kContainerd: return "containerd";
    case ContainerRuntime::kCrio: return "cri-o";
    case ContainerRuntime::kDocker: return "docker";
    case ContainerRuntime::kPodman: return "podman";
    case ContainerRuntime::kUnknown: break;
  }
  return "";
}

namespace discovery {

std::optional<ContainerCgroup> ParseCgroupPath(std::string_view path) {
  std::vector<std::string_view> segs = Segments(path);
  for (size_t i = segs.size(); i-- > 0;) {
    auto found = ContainerInSegment(segs[i], i > 0 ? segs[i - 1] : std::string_view());
    if (!found) continue;
    ContainerCgroup out;
    out.container_id = std::string(found->first);
    out.runtime = found->second;
    ParsePodSegments(segs, i, out);
    return out;
  }
  return std::nullopt;
}

std::optional<ContainerCgroup> ParseProcCgroup(std::string_view text) {
  std::vector<std::string_view> v1_paths;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(start, nl - start);
    start = nl + 1;
    // "<hierarchy-id>:<controllers>:<path>"; the path itself may contain ':'.
    size_t c1 = line.find(':');
    if (c1 == std::string_view::npos) continue;
    size_t c2 = line.find(':', c1 + 1);
    if (c2 == std::string_view::npos) continue;
    std::string_view path = line.substr(c2 + 1);
    if (line.substr(0, c1) == "0" && c2 == c1 + 1) {
      if (auto found = ParseCgroupPath(path)) return found;
    } else {
      v1_paths.push_back(path);
    }
  }
  for (std::string_view path : v1_paths)
    if (auto found = ParseCgroupPath(path)) return found;
  return std::nullopt;
}

}  // namespace discovery

Result<std::optional<ContainerCgroup>> ReadContainerCgroup(uint32_t pid, const std::string& proc_root) {
  auto text = discovery::ReadProcFile(proc_root + "/" + std::to_string(pid) + "/cgroup", 64 * 1024);
  if (!text.ok()) return text.error();
  return discovery::ParseProcCgroup(*text);
}

}  // namespace threadline
