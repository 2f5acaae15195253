// bench/bpf_only: the "kernel programs only" configuration of bench/overhead.py.
//
// Loads and attaches the agent's capture program exactly as the agent does (CaptureProgram),
// selects the given processes (or all), and drains the ring buffer with the agent's
// RingConsumer into a sink that does nothing: the kernel pays its full per-syscall cost (every
// event is produced and delivered, nothing is dropped for lack of a reader) while userspace
// does no connection, protocol or span work.
//
// Speaks the agent's log lines so the benchmark parses both the same way: "threadline ready" on
// stderr once attached, "final stats: events received N, lost M (reason=n, ...)" at exit.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <string>
#include <vector>

#include "agent/common/clock.h"
#include "agent/common/metrics.h"
#include "agent/ingest/ring_consumer.h"
#include "agent/kernel/bpf_env.h"
#include "agent/kernel/capture_program.h"

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

class DiscardingSink : public threadline::EventSink {};

}  // namespace

int main(int argc, char** argv) {
  using namespace threadline;
  spdlog::set_default_logger(spdlog::stderr_color_mt("bpf_only"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  std::vector<uint32_t> pids;
  double duration_s = 0;
  uint32_t capture_bytes = 4096;
  uint32_t ring_buffer_mb = 16;
  uint32_t max_connections = 65536;
  CLI::App app{"Attach threadline's capture programs and drain the ring without processing"};
  app.add_option("--pid", pids, "Trace only these processes (and children they fork); repeatable. "
                                "Default: all processes");
  app.add_option("--duration", duration_s, "Stop after this many seconds (0: at SIGINT/SIGTERM)");
  app.add_option("--capture-bytes", capture_bytes, "Payload bytes captured per syscall");
  app.add_option("--ring-buffer-mb", ring_buffer_mb, "Ring buffer size in MiB");
  app.add_option("--max-connections", max_connections, "Kernel connection table size");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  if (auto st = PrepareBpfEnvironment(); !st.ok()) {
    spdlog::error("cannot start: {}", st.error().message);
    return 1;
  }
  CaptureConfig cc;
  cc.agent_tgid = static_cast<uint32_t>(getpid());
  cc.trace_all = pids.empty();
  cc.capture_bytes = capture_bytes;
  cc.ring_buffer_bytes = ring_buffer_mb << 20;
  cc.max_connections = max_connections;
  auto capture = CaptureProgram::Create(cc);
  if (!capture.ok()) {
    spdlog::error("cannot start: {}", capture.error().message);
    return 1;
  }
  for (uint32_t pid : pids) {
    if (auto st = (*capture)->Select(pid, TL_SEL_TRACE | TL_SEL_INHERIT); !st.ok()) {
      spdlog::error("cannot select pid {}: {}", pid, st.error().message);
      return 1;
    }
  }
  MetricsRegistry metrics;
  DiscardingSink sink;
  auto ring = RingConsumer::Create((*capture)->ring_buffer_fd(), sink, metrics);
  if (!ring.ok()) {
    spdlog::error("cannot start: {}", ring.error().message);
    return 1;
  }
  size_t attached = 0;
  for (const auto& h : (*capture)->hooks()) attached += h.attached;
  spdlog::info("threadline ready (bpf_only): {} hooks attached, tracing {}, no userspace processing",
               attached, pids.empty() ? std::string("all processes")
                                      : std::to_string(pids.size()) + " selected processes");

  const uint64_t deadline =
      duration_s > 0 ? BootClock::NowBootNs() + static_cast<uint64_t>(duration_s * 1e9) : 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    auto polled = (*ring)->Poll(100);
    if (!polled.ok()) {
      spdlog::error("stopped on error: {}", polled.error().message);
      return 1;
    }
    if (deadline && BootClock::NowBootNs() >= deadline) break;
  }
  (*ring)->Drain();

  KernelDrops drops = (*capture)->ReadDrops();
  uint64_t lost = 0;
  std::string by_reason;
  for (int r = 0; r < TL_DROP__COUNT; ++r) {
    const uint64_t v = drops.Total(r);
    lost += v;
    by_reason += (by_reason.empty() ? "" : ", ") + std::string(DropReasonName(r)) + "=" +
                 std::to_string(v);
  }
  spdlog::info("final stats: events received {}, lost {} ({})", (*ring)->records(), lost, by_reason);
  return 0;
}
