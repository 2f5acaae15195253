#include "agent/kernel/tracefs.h"

#include <sys/mount.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <string_view>

#include <spdlog/spdlog.h>

namespace threadline {
namespace {

constexpr std::string_view kTracefsMountPoint = "/sys/kernel/tracing";

// libbpf 1.1 uses /sys/kernel/debug/tracing when that path exists, else /sys/kernel/tracing.
// With debugfs mounted, the former is an automount of the same tracefs, so either answers
// whether tracepoints can be resolved.
constexpr std::array<std::string_view, 2> kTracefsRoots = {"/sys/kernel/tracing",
                                                          "/sys/kernel/debug/tracing"};

// 0 when root/events exists, else the errno of looking for it (ENOENT: not mounted there;
// EACCES: tracefs is root-only, so we are not privileged enough to use it anyway).
int EventsErrno(std::string_view root) {
  const std::string events = std::string(root) + "/events";
  return ::access(events.c_str(), F_OK) == 0 ? 0 : errno;
}

bool HasEvents(std::string_view root) { return EventsErrno(root) == 0; }

}  // namespace

std::optional<std::string> TracefsRoot() {
  for (std::string_view root : kTracefsRoots) {
    if (HasEvents(root)) return std::string(root);
  }
  return std::nullopt;
}

Status EnsureTracefs() {
  if (TracefsRoot()) return OkStatus();
  for (std::string_view root : kTracefsRoots) {
    if (const int err = EventsErrno(root); err == EACCES || err == EPERM) {
      return Error::FromErrno("tracefs at " + std::string(root) + " is not accessible", err);
    }
  }
  const std::string target(kTracefsMountPoint);
  if (::mount("tracefs", target.c_str(), "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    const int err = errno;
    // Someone else (another agent, systemd) may have mounted it between our check and mount.
    if (TracefsRoot()) return OkStatus();
    return Error::FromErrno("tracefs is not mounted and mounting it at " + target +
                                " failed (mount -t tracefs nodev " + target + " to fix)",
                            err);
  }
  if (!HasEvents(target)) {
    return Error{"mounted tracefs at " + target + " but it has no events/ directory", ENOENT};
  }
  spdlog::info("tracefs was not mounted; mounted it at {} (needed to attach tracepoints)", target);
  return OkStatus();
}

}  // namespace threadline
