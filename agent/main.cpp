// threadline: zero-code distributed tracing with eBPF. See README.md.
#include <malloc.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
#include <string_view>

#include "agent/app/agent.h"
#include "agent/app/options.h"
#include "agent/app/view_command.h"
#include "agent/capabilities/capability_probe.h"
#include "agent/kernel/bpf_env.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }
}  // namespace

int main(int argc, char** argv) {
  using namespace threadline;
  // Idle RSS (issue #18: 79 MiB, 16 MiB of it free heap). Start-up frees large blocks (libbpf's
  // verifier logs, 16 MiB, and kernel BTF, ~11 MiB, per object load). glibc then raises its
  // mmap threshold to their size and its trim threshold to twice that, so every later block
  // up to 32 MiB comes from the threads' heaps, whose free tops malloc_trim never returns (it
  // trims only the main heap's top). Fixed thresholds keep large blocks in mmap (returned at
  // free) and let every heap give back a free top past 128 KiB: idle anonymous memory
  // 16 -> 6 MiB. The hot path allocates nothing that large.
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  mallopt(M_TRIM_THRESHOLD, 128 * 1024);
  // stdout carries the output (events, later spans); logs go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("threadline"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // `threadline view FILE...` reads files and serves the view: no BPF, no root, none of the
  // agent's settings.
  if (argc >= 2 && std::string_view(argv[1]) == "view") return RunViewCommand(argc - 1, argv + 1, g_stop);

  auto parsed = ParseOptions(argc, argv);
  if (!parsed.ok()) {
    std::fputs(parsed.error().message.c_str(), parsed.error().code == 0 ? stdout : stderr);
    if (parsed.error().code != 0) std::fputc('\n', stderr);
    return parsed.error().code;
  }
  const AgentOptions& options = *parsed;
  if (options.print_config) {
    std::fputs(FormatEffectiveConfig(options).c_str(), stdout);
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(options.log_level));

  if (options.probe_only) {
    if (auto st = PrepareBpfEnvironment(); !st.ok())
      spdlog::warn("BPF environment incomplete: {}", st.error().message);
    std::fputs(FormatReport(ProbeCapabilities()).c_str(), stdout);
    return 0;
  }

  auto agent = Agent::Create(options, MetricsRegistry::Global());
  if (!agent.ok()) {
    spdlog::error("cannot start: {}", agent.error().message);
    return 1;
  }
  Status run = (*agent)->Run(g_stop);
  (*agent)->LogStats(true);
  agent->reset();  // flushes, and leaves the hooks' teardown to a child (Agent::DetachHooks)
  if (!run.ok()) {
    spdlog::error("stopped on error: {}", run.error().message);
    return 1;
  }
  spdlog::info("threadline stopped");
  return 0;
}
