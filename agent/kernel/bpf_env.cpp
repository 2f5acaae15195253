#include "agent/kernel/bpf_env.h"

#include <sys/resource.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "agent/kernel/tracefs.h"

namespace threadline {
namespace {

thread_local LibbpfMessageCapture* t_capture = nullptr;

int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  char buffer[1024];
  va_list copy;
  va_copy(copy, args);
  const int n = std::vsnprintf(buffer, sizeof(buffer), format, copy);
  va_end(copy);
  if (n < 0) return 0;
  std::string message;
  if (static_cast<size_t>(n) < sizeof(buffer)) {
    message.assign(buffer, static_cast<size_t>(n));
  } else {
    // Verifier logs arrive as one message and can be many kilobytes long.
    message.resize(static_cast<size_t>(n) + 1);
    std::vsnprintf(message.data(), message.size(), format, args);
    message.resize(static_cast<size_t>(n));
  }
  if (t_capture != nullptr) t_capture->Append(message);

  std::string_view line = message;
  while (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  // libbpf starts its own messages with "libbpf: "; verifier logs arrive without it.
  if (level == LIBBPF_WARN && t_capture == nullptr) {
    spdlog::warn("{}", line);
  } else {
    spdlog::debug("{}", line);
  }
  return 0;
}

// Mount points in /proc/self/mounts escape space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const std::string_view oct = field.substr(i + 1, 3);
      if (oct.find_first_not_of("01234567") == std::string_view::npos) {
        out.push_back(static_cast<char>((oct[0] - '0') * 64 + (oct[1] - '0') * 8 + (oct[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

}  // namespace

LibbpfMessageCapture::LibbpfMessageCapture() : previous_(t_capture) {
  InstallLibbpfLogging();
  t_capture = this;
}

LibbpfMessageCapture::~LibbpfMessageCapture() {
  t_capture = previous_;
  if (previous_ != nullptr) previous_->Append(text_);
}

void InstallLibbpfLogging() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(LibbpfPrint); });
}

Status PrepareBpfEnvironment() {
  InstallLibbpfLogging();

  static std::once_flag rlimit_once;
  std::call_once(rlimit_once, [] {
    const rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
    if (::setrlimit(RLIMIT_MEMLOCK, &unlimited) != 0) {
      // Not fatal: since 5.11 the kernel charges BPF memory to the cgroup instead.
      spdlog::debug("could not raise RLIMIT_MEMLOCK: {}", std::strerror(errno));
    }
  });

  return EnsureTracefs();
}

std::optional<std::string> CgroupV2Root() {
  std::ifstream mounts("/proc/self/mounts");
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string source, mount_point, fstype;
    if (!(fields >> source >> mount_point >> fstype)) continue;
    if (fstype == "cgroup2") return UnescapeMountField(mount_point);
  }
  return std::nullopt;
}

std::string LockdownMode() {
  // Format: "none [integrity] confidentiality", the active mode in brackets.
  std::ifstream file("/sys/kernel/security/lockdown");
  std::string content;
  if (!file || !std::getline(file, content)) return "unknown";
  const size_t open = content.find('[');
  const size_t close = content.find(']', open == std::string::npos ? 0 : open);
  if (open == std::string::npos || close == std::string::npos) return "unknown";
  return content.substr(open + 1, close - open - 1);
}

bool HasKernelBtf() { return ::access("/sys/kernel/btf/vmlinux", R_OK) == 0; }

std::string LibbpfFailureHint(std::string_view messages, int err) {
  std::vector<std::string_view> lines;
  while (!messages.empty()) {
    const size_t nl = messages.find('\n');
    std::string_view line = messages.substr(0, nl);
    if (!line.empty()) lines.push_back(line);
    if (nl == std::string_view::npos) break;
    messages.remove_prefix(nl + 1);
  }

  // The verifier states its reason last, before the statistics it always appends.
  auto begin = std::find_if(lines.begin(), lines.end(), [](std::string_view l) {
    return l.find("-- BEGIN PROG LOAD LOG --") != std::string_view::npos;
  });
  auto end = std::find_if(begin, lines.end(), [](std::string_view l) {
    return l.find("-- END PROG LOAD LOG --") != std::string_view::npos;
  });
  if (begin != lines.end() && end != lines.end()) {
    for (auto it = end; it != begin + 1;) {
      std::string_view l = *--it;
      if (l.starts_with("processed ") || l.starts_with("verification time") ||
          l.starts_with("stack depth")) {
        continue;
      }
      return "verifier: " + std::string(l);
    }
  }

  const std::string restated = std::string(": ") + std::strerror(err < 0 ? -err : err);
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    std::string_view l = *it;
    if (!l.starts_with("libbpf: prog '")) continue;
    l.remove_prefix(std::string_view("libbpf: prog '").size());
    if (const size_t close = l.find("': "); close != std::string_view::npos) {
      l.remove_prefix(close + 3);
    }
    if (l.ends_with(restated)) l.remove_suffix(restated.size());
    // "failed to load: -1" and "BPF program load failed" only restate the errno; "skipped
    // loading" is about programs that were not part of the operation.
    if (l.starts_with("failed to load") || l == "BPF program load failed" ||
        l == "skipped loading") {
      continue;
    }
    return std::string(l);
  }
  return "";
}

}  // namespace threadline
