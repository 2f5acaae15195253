// Shared preconditions for kernel tests: they load real BPF programs, so they need root and a
// kernel that accepts BPF. Where that is missing a developer's run skips with the reason, but
// CI (tests/support/ci_mode.h) fails: a CI job whose kernel tests silently skip would prove nothing.
//
//   TEST(Foo, Bar) { REQUIRE_BPF(); ... }          // in a test body
//   void SetUp() override { RequireBpfOrSkip(); }  // in a fixture
#pragma once

#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "tests/support/ci_mode.h"

namespace threadline::testing {

// Empty when BPF programs can be loaded here; else why not. Checked by loading a trivial
// program (libbpf's own probe), not by looking at capabilities or config.
inline std::string BpfUnavailableReason() {
  if (::geteuid() != 0) return "not running as root (kernel tests load BPF programs)";
  const int ok = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCKET_FILTER, nullptr);
  if (ok < 0) return std::string("cannot load a BPF program: ") + std::strerror(-ok);
  if (ok == 0) return "this kernel does not load BPF socket filter programs";
  return "";
}

// Records a skip (or, in CI mode, a fatal failure) when BPF is unusable. From a fixture's
// SetUp() that stops the test body; in a test body use REQUIRE_BPF(), which also returns.
inline void RequireBpfOrSkip() {
  const std::string reason = BpfUnavailableReason();
  if (reason.empty()) return;
  if (InCi()) {
    GTEST_FAIL() << "BPF unavailable in CI mode (kernel tests must run in CI): " << reason;
  }
  GTEST_SKIP() << "BPF unavailable: " << reason << " (set CI=true to make this a failure)";
}

// The running kernel's build configuration (/proc/config.gz, else /boot/config-<release>), or
// empty when neither is readable. A test oracle only: the agent itself decides by attaching.
inline std::string KernelConfigText() {
  if (gzFile gz = gzopen("/proc/config.gz", "rb")) {
    std::string text;
    char buffer[16384];
    int n = 0;
    while ((n = gzread(gz, buffer, sizeof(buffer))) > 0) text.append(buffer, static_cast<size_t>(n));
    gzclose(gz);
    if (!text.empty()) return text;
  }
  utsname uts{};
  if (::uname(&uts) != 0) return "";
  std::ifstream file(std::string("/boot/config-") + uts.release);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// True when the running kernel's release is major.minor or later.
inline bool KernelAtLeast(int major, int minor) {
  utsname uts{};
  if (::uname(&uts) != 0) return false;
  int have_major = 0, have_minor = 0;
  std::sscanf(uts.release, "%d.%d", &have_major, &have_minor);
  return have_major > major || (have_major == major && have_minor >= minor);
}

// "y", "m", a value, or "n" for "# CONFIG_X is not set"; nullopt when the config is unknown
// or does not mention the option.
inline std::optional<std::string> KernelConfigValue(std::string_view option) {
  static const std::string config = KernelConfigText();
  if (config.empty()) return std::nullopt;
  std::istringstream lines(config);
  const std::string set_prefix = std::string(option) + "=";
  const std::string unset_line = "# " + std::string(option) + " is not set";
  for (std::string line; std::getline(lines, line);) {
    if (line == unset_line) return "n";
    if (line.rfind(set_prefix, 0) == 0) return line.substr(set_prefix.size());
  }
  return std::nullopt;
}

}  // namespace threadline::testing

#define REQUIRE_BPF()                                                              \
  do {                                                                             \
    ::threadline::testing::RequireBpfOrSkip();                                     \
    if (::testing::Test::IsSkipped() || ::testing::Test::HasFatalFailure()) return; \
  } while (0)
