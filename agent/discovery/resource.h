// The OpenTelemetry Resource of a traced process: who produced a span. Built from /proc the way
// an SDK inside the process would build it from its own environment, so a service configured
// with OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES looks the same with or without an SDK.
//
// Attributes, in this order:
//   service.name             OTEL_SERVICE_NAME, else service.name from OTEL_RESOURCE_ATTRIBUTES,
//                            else ServiceNameFromCommand (executable or script name)
//   service.instance.id      UUIDv5 (semconv namespace 4d63009a-8d0f-11ee-aad7-4c796ed8e320) of
//                            "<boot_id>:<pid>:<start_time_ticks>": stable for the life of the
//                            process, different for a restart, a reused pid or another machine
//   host.name                ResourceOptions::host_name, else <proc_root>/sys/kernel/hostname,
//                            else gethostname()
//   process.pid, process.parent_pid (int)
//   process.executable.name  basename of /proc/<pid>/exe, else comm
//   process.executable.path  /proc/<pid>/exe (omitted when unreadable)
//   process.command_line     argv joined by ' ', after RedactCommandLine (omitted when empty)
//   telemetry.distro.name    "threadline", telemetry.distro.version kScopeVersion
//   container.id             from the process's cgroup (cgroup_id.h), when it is in a container
//   k8s.*                    the pod, namespace, container, node and workload of that container
//                            when the Kubernetes API named it (k8s_metadata.h); service.name
//                            then defaults to the workload's name (Deployment, StatefulSet,
//                            DaemonSet, CronJob, else Job/ReplicaSet), else the container's name,
//                            instead of the command (OTEL_* settings of the process still win)
//   ...then every other key of OTEL_RESOURCE_ATTRIBUTES, in order. Those keys also override the
//   detected ones above (the user said so), except process.* and telemetry.*, which record what
//   the agent observed.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/common/result.h"
#include "agent/discovery/cgroup_id.h"
#include "agent/discovery/k8s_metadata.h"
#include "agent/discovery/process_info.h"
#include "agent/spans/span.h"

namespace threadline {

inline constexpr std::string_view kDistroName = "threadline";
// environ can be large (CI runners, shells with big exports); the OTEL_* variables we want are
// usually near the start, and reading more per process is not worth it.
inline constexpr size_t kMaxEnvironBytes = 256 * 1024;

// What the resource needs to know about the machine; read once, shared by every process.
struct HostIdentity {
  std::string host_name;
  std::string boot_id;  // /proc/sys/kernel/random/boot_id; empty if unreadable

  // host_name_override wins when non-empty (in a container, the agent's own UTS hostname is the
  // pod's, not the node's, so deployments pass the node name).
  static HostIdentity Read(const std::string& proc_root = "/proc",
                           std::string_view host_name_override = "");
};

namespace discovery {

// The value of `name` in a NUL-separated environ block (the first occurrence, like getenv).
std::optional<std::string_view> EnvironValue(std::string_view environ, std::string_view name);

// OTEL_RESOURCE_ATTRIBUTES: "k1=v1,k2=v2" with OWS trimmed around keys and values, keys and
// values percent-decoded, empty list-members skipped, values kept as strings. Any error (no '=',
// empty key, bad %-escape) fails the whole value, as the SDK spec asks (EINVAL).
Result<Attributes> ParseResourceAttributes(std::string_view value);

// The service name of a process with no configured one:
//   python*/pythonX.Y:  "-m mod" -> "mod"; a script -> its basename without ".py"
//   node/nodejs:        a script -> its basename without .js/.mjs/.cjs/.ts
//   java:               "-jar x.jar" -> "x"; "-m mod/cls" -> "mod"; a main class -> its simple
//                       name ("com.acme.Orders" -> "Orders")
//   ruby/perl/php:      a script -> its basename without extension
//   a script named index or __main__ is named after its directory ("/srv/orders/index.js" ->
//   "orders"); "-c"/"-e" code, a REPL, or anything unrecognised -> the executable's basename
//   (exe_path, else argv[0], else comm), else "unknown_service".
std::string ServiceNameFromCommand(std::string_view exe_path, const std::vector<std::string>& argv,
                                   std::string_view comm);

// RFC 4122 version-5 UUID (SHA-1) of `name` in `namespace_id`, lowercase 8-4-4-4-12.
std::string UuidV5(const std::array<uint8_t, 16>& namespace_id, std::string_view name);

// The semconv namespace for service.instance.id UUIDv5s.
inline constexpr std::array<uint8_t, 16> kServiceInstanceNamespace = {
    0x4d, 0x63, 0x00, 0x9a, 0x8d, 0x0f, 0x11, 0xee, 0xaa, 0xd7, 0x4c, 0x79, 0x6e, 0xd8, 0xe3, 0x20};

std::string ServiceInstanceId(const HostIdentity& host, uint32_t pid, uint64_t start_time_ticks);

}  // namespace discovery

// The resource of a process from what was read about it and its environ (may be empty), and
// the container it runs in (nullptr: none, or unknown) and that container's Kubernetes
// metadata (nullptr: not known).
std::shared_ptr<const Resource> BuildResource(const ProcessInfo& info, std::string_view environ,
                                              const HostIdentity& host,
                                              const ContainerCgroup* container = nullptr,
                                              const K8sContainerMetadata* k8s = nullptr);

// For a process that is gone before it could be read: service.name "unknown_service:<comm>" (or
// "unknown_service:<pid>" without a comm), process.pid, host.name, telemetry.distro.*.
std::shared_ptr<const Resource> MinimalResource(uint32_t pid, std::string_view comm,
                                                const HostIdentity& host);

// What the kernel reported at a process's exec (ProcExecEvent): enough to name the process when
// it is gone, and reaped, before the agent reads /proc/<pid> (the agent is behind the ring, and
// a client like curl lives ~10 ms).
struct ExecSnapshot {
  uint32_t pid = 0;
  uint32_t ppid = 0;
  uint64_t start_time_ticks = 0;  // as /proc/<pid>/stat field 22 (BootNsToClockTicks); 0: unknown
  std::string_view comm;
  std::string_view filename;  // the path passed to exec
  std::string_view exe_name;  // the executable's file name; empty: unknown
  std::string_view args;      // argv, NUL-separated, possibly cut short
};

// The process an exec snapshot describes, as far as it tells: no environ, cgroup or netns.
// exe_path is the path passed to exec when that path names the executable (execve of
// "/usr/bin/curl"); for a script run by its #! line or a symlink ("/usr/bin/python3" ->
// python3.11) only exe_name is known.
ProcessInfo ProcessInfoFromExec(const ExecSnapshot& exec);

struct ResourceCacheOptions {
  size_t capacity = 4096;
  std::string proc_root = "/proc";
  std::string host_name;  // empty: detected, see HostIdentity::Read
  // Get(pid) trusts a cached entry this long before re-reading /proc/<pid>/stat to check that
  // the pid still names the same process (in case an exit notification was lost).
  std::chrono::milliseconds revalidate_after{5000};
  // Kubernetes metadata of containers (the pod store); nullptr: container.id only. Must outlive
  // the cache.
  const ContainerMetadataSource* kubernetes = nullptr;
};

// (pid, start_time_ticks) -> Resource, built lazily from /proc. Never fails: a process that
// vanished gets MinimalResource, or the resource it had if it was cached before it exited, so
// the last spans of a process keep its service.name. Bounded (LRU). Thread-safe.
//
// Counters: threadline_resource_builds_total, threadline_resource_cache_evictions_total,
// threadline_resource_environ_unreadable_total (environ needs ptrace-read access, i.e. root or
// the same user; without it the process is named by its command),
// threadline_resource_from_exec_total (see OnExecSeen).
//
// A containerised process whose pod the metadata source does not know yet (a pod that just
// started, the first list still running) gets a resource without k8s.* attributes at once
// (threadline_k8s_metadata_misses_total): span building never waits for the API. The entry
// remembers what it was built from, and the first Get after the source learns the container
// rebuilds it with the pod's metadata (threadline_k8s_resource_upgrades_total).
class ResourceCache {
 public:
  explicit ResourceCache(ResourceCacheOptions options = {},
                         MetricsRegistry& metrics = MetricsRegistry::Global());

  // The resource of whatever process has `pid` now.
  std::shared_ptr<const Resource> Get(uint32_t pid);
  // The resource of exactly the process `info` describes (its pid and start time); the caller
  // already read /proc/<pid>, so only environ is read on a miss.
  std::shared_ptr<const Resource> Get(const ProcessInfo& info);

  // exec replaces the program (and possibly OTEL_SERVICE_NAME) under the same pid and start time.
  void OnExec(uint32_t pid);
  // A traced process exec'd: drops what was cached for the pid and builds the new image's
  // resource at once, from /proc while the process lives, else (gone already) from the exec
  // event's snapshot, without what only /proc has (OTEL_* variables, container, full exe path
  // of a script or symlink): threadline_resource_from_exec_total counts those.
  void OnExecSeen(const ExecSnapshot& exec);
  // The entry is kept (spans of the process may still be in flight) but Get(pid) re-checks
  // /proc every time until the pid is reused or the entry ages out of the LRU.
  void OnExit(uint32_t pid);

  size_t size() const;
  const HostIdentity& host() const { return host_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    uint64_t start_time_ticks = 0;  // 0 for a minimal resource of a vanished pid
    std::shared_ptr<const Resource> resource;
    Clock::time_point verified_at;
    bool exited = false;
    std::list<uint32_t>::iterator lru_pos;
    // Set while the resource lacks the Kubernetes metadata of its container: what it was built
    // from, to rebuild it when the metadata arrives.
    struct PendingK8s {
      ProcessInfo info;
      std::string environ;  // only the OTEL_* entries BuildResource reads
      ContainerCgroup container;
      uint64_t source_generation = 0;  // of options_.kubernetes when last looked up
    };
    std::shared_ptr<PendingK8s> pending_k8s;
  };
  struct Built {
    std::shared_ptr<const Resource> resource;
    std::shared_ptr<Entry::PendingK8s> pending_k8s;
  };

  Built Build(const ProcessInfo& info);
  // Stores and returns `built.resource` unless an OnExec/OnExit arrived since `epoch_before`.
  std::shared_ptr<const Resource> Insert(uint32_t pid, uint64_t start_time_ticks, Built built,
                                         uint64_t epoch_before);
  // Rebuilds a pending entry's resource if its container's metadata is known now. mu_ held.
  void UpgradeIfKnownLocked(Entry& e);

  const ResourceCacheOptions options_;
  const HostIdentity host_;
  Counter& builds_;
  Counter& evictions_;
  Counter& environ_unreadable_;
  Counter& k8s_misses_;
  Counter& k8s_upgrades_;
  Counter& from_exec_;
  mutable std::mutex mu_;
  uint64_t invalidation_epoch_ = 0;
  std::list<uint32_t> lru_;  // front = most recently used
  std::unordered_map<uint32_t, Entry> entries_;
};

}  // namespace threadline
