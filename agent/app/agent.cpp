#include "agent/app/agent.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "agent/capabilities/capability_probe.h"
#include "agent/conn/connection_table.h"
#include "agent/discovery/proc_socket_resolver.h"
#include "agent/discovery/process_info.h"
#include "agent/discovery/selector.h"
#include "agent/ingest/ring_consumer.h"
#include "agent/kernel/bpf_env.h"
#include "agent/kernel/capture_program.h"
#include "agent/kernel/tls_attacher.h"
#include "agent/discovery/own_sockets.h"
#include "agent/discovery/resource.h"
#include "agent/output/console_tree.h"
#include "agent/output/event_printer.h"
#include "agent/protocols/dispatcher.h"
#include "agent/spans/http_spans.h"
#include "agent/pipeline/red_metrics.h"
#include "exporter/batch_exporter.h"
#include "exporter/json_lines.h"
#include "exporter/metrics_server.h"
#include "exporter/otlp_config.h"

namespace threadline {

namespace {
constexpr uint64_t kSecond = 1'000'000'000ull;

// The file behind /proc/<pid>/exe as (inode, kernel dev_t), the identity the kernel compares at
// exec. nullopt for kernel threads and processes we may not inspect.
std::optional<std::pair<uint64_t, uint32_t>> ExeIdentity(const std::string& pid) {
  struct stat st {};
  if (::stat(("/proc/" + pid + "/exe").c_str(), &st) != 0) return std::nullopt;
  uint32_t kdev = (static_cast<uint32_t>(major(st.st_dev)) << 20) | static_cast<uint32_t>(minor(st.st_dev));
  return std::pair{static_cast<uint64_t>(st.st_ino), kdev};
}

bool ProcessGone(uint32_t tgid) {
  struct stat st {};
  return ::stat(("/proc/" + std::to_string(tgid)).c_str(), &st) != 0 && errno == ENOENT;
}

// Only for the events view's absence; every other mode runs the span pipeline.
class NullConsumer : public StreamConsumer {};

// --output=none still runs the whole pipeline (connections, parsing, spans, counters).
class NullSpanSink : public SpanSink {
 public:
  void OnSpan(Span) override {}
};
}  // namespace

Agent::Agent(const AgentOptions& options, MetricsRegistry& metrics)
    : options_(options), metrics_(metrics) {}

Agent::~Agent() {
  ring_.reset();
  tls_.reset();      // its uprobes use capture_'s programs
  capture_.reset();  // detaches every hook
  table_.reset();
  dispatcher_.reset();
  span_builder_.reset();
  red_metrics_.reset();
  if (exporter_) {
    auto report = exporter_->Shutdown(std::chrono::steady_clock::now() + std::chrono::seconds(5));
    spdlog::info("OTLP exporter stopped: {} spans exported, {} dropped ({} at shutdown)",
                 report.exported, report.dropped, report.dropped_at_shutdown);
  } else if (span_sink_) {
    span_sink_->Flush();
  }
  span_sink_.reset();
  metrics_server_.reset();
  if (out_ && owns_out_) std::fclose(out_);
}

Result<std::unique_ptr<Agent>> Agent::Create(const AgentOptions& options, MetricsRegistry& metrics) {
  std::unique_ptr<Agent> agent(new Agent(options, metrics));  // private constructor
  RETURN_IF_ERROR(agent->Start());
  return agent;
}

Status Agent::Start() {
  RETURN_IF_ERROR(PrepareBpfEnvironment());
  const CapabilityReport& caps = ProbeCapabilities();
  LogReport(caps);
  PublishCapabilities(caps);
  if (!options_.metrics_address.empty()) {
    // Not fatal: a second agent on the node, or a busy port, must not stop tracing.
    auto server = MetricsServer::Start(options_.metrics_address, metrics_);
    if (server.ok()) {
      metrics_server_ = std::move(*server);
    } else {
      spdlog::warn("no /metrics endpoint: cannot serve on {}: {}", options_.metrics_address,
                   server.error().message);
    }
  }
  if (!caps.can_run) return Error{"this kernel cannot run threadline: " + caps.cannot_run_reason};

  if (options_.output_file.empty()) {
    out_ = stdout;
  } else {
    out_ = std::fopen(options_.output_file.c_str(), "w");
    if (!out_) return Error::FromErrno("open " + options_.output_file, errno);
    owns_out_ = true;
  }

  SelectionConfig sel;
  sel.pids = options_.pids;
  sel.exe_globs = options_.exe_globs;
  sel.ports = options_.ports;
  sel.agent_pid = static_cast<uint32_t>(getpid());
  selector_ = std::make_unique<Selector>(sel);
  processes_ = std::make_unique<ProcessCache>(8192, "/proc", metrics_);
  resolver_ = std::make_unique<ProcSocketResolver>(metrics_);

  StreamConsumer* consumer;
  if (options_.output == OutputMode::kEvents) {
    printer_ = std::make_unique<EventPrinter>(out_, clock_, options_.print_payload_bytes);
    consumer = printer_.get();
  } else {
    HttpSpanConfig span_config;
    ASSIGN_OR_RETURN(span_config.routes, RouteTable::Create(options_.routes));
    span_config.redaction.extra_query_keys = options_.redact_query_keys;
    resources_ = std::make_unique<ResourceCache>(ResourceCacheOptions{}, metrics_);
    if (options_.output == OutputMode::kOtlp) {
      std::map<std::string, std::string> overrides;
      if (!options_.otlp_endpoint.empty()) overrides["OTEL_EXPORTER_OTLP_ENDPOINT"] = options_.otlp_endpoint;
      if (!options_.otlp_protocol.empty()) overrides["OTEL_EXPORTER_OTLP_PROTOCOL"] = options_.otlp_protocol;
      ASSIGN_OR_RETURN(auto config, OtlpExporterConfigFromEnv(WithOverrides(overrides, ProcessEnv())));
      ASSIGN_OR_RETURN(auto exporter, CreateOtlpSpanExporter(config, metrics_));
      exporter_ = exporter.get();
      span_sink_ = std::move(exporter);
      spdlog::info("exporting spans over OTLP {} to {} (compression {}, queue {}, batch {})",
                   config.protocol == OtlpProtocol::kGrpc ? "gRPC" : "HTTP/protobuf", config.endpoint,
                   config.compression == OtlpCompression::kGzip ? "gzip" : "none",
                   config.batch.max_queue_size, config.batch.max_export_batch_size);
    } else if (options_.output == OutputMode::kConsole) {
      auto console = std::make_unique<ConsoleTreeSink>(out_, ConsoleTreeOptions{},
                                                       &ConsoleTreeSink::SteadyNowNs, metrics_);
      console_ = console.get();
      span_sink_ = std::move(console);
    } else if (options_.output == OutputMode::kJson) {
      span_sink_ = std::make_unique<JsonLinesSink>(out_, JsonLinesSink::kDefaultMaxBatchSpans, metrics_);
    } else {
      span_sink_ = std::make_unique<NullSpanSink>();
    }
    red_metrics_ = std::make_unique<RedMetricsSink>(*span_sink_, metrics_);
    span_builder_ = std::make_unique<HttpSpanBuilder>(std::move(span_config), *resources_, clock_,
                                                      *red_metrics_, metrics_);
    own_sockets_ = std::make_unique<OwnSockets>(metrics_);
    DispatcherConfig dispatch;
    dispatch.ignore = [this](const ConnectionInfo& c) {
      return c.tuple_known && c.role != Role::kClient && own_sockets_->IsPeerOfAgent(c.tuple);
    };
    dispatcher_ = std::make_unique<ProtocolDispatcher>(dispatch, *span_builder_, metrics_);
    consumer = dispatcher_.get();
  }
  ConnectionTableConfig table_config;
  table_config.max_connections = options_.max_connections;
  table_ = std::make_unique<ConnectionTable>(table_config, *consumer, metrics_, resolver_.get());

  CaptureConfig cc;
  cc.agent_tgid = sel.agent_pid;
  cc.trace_all = selector_->trace_all_processes();
  cc.ports = options_.ports;
  cc.capture_bytes = options_.capture_bytes;
  cc.ring_buffer_bytes = options_.ring_buffer_mb << 20;
  cc.max_connections = options_.max_connections;
  const auto own_exe = ExeIdentity("self");
  if (own_exe) std::tie(cc.agent_exe_ino, cc.agent_exe_dev) = *own_exe;
  ASSIGN_OR_RETURN(capture_, CaptureProgram::Create(cc));
  size_t attached = 0;
  for (const auto& h : capture_->hooks()) attached += h.attached;
  if (options_.tls) {
    ASSIGN_OR_RETURN(tls_, TlsAttacher::Create(*capture_, TlsAttacherOptions{.agent_pid = sel.agent_pid}, metrics_));
  } else {
    spdlog::info("TLS capture off (--tls off): HTTPS is seen as ciphertext only");
  }

  size_t selected = 0;
  if (!cc.trace_all) {
    for (uint32_t pid : selector_->InitialMatches("/proc")) {
      auto info = processes_->Get(pid);
      uint32_t flags = info.ok() ? selector_->SelectionFlags(*info) : (TL_SEL_TRACE | TL_SEL_INHERIT);
      if (flags == 0) flags = TL_SEL_TRACE | TL_SEL_INHERIT;  // a descendant of a match
      if (capture_->Select(pid, flags).ok()) ++selected;
    }
  }
  // Never trace agents: this one's children (probe helpers) nor other threadline instances that
  // were already running when we loaded (later ones are excluded by the kernel at exec).
  (void)capture_->Select(sel.agent_pid, TL_SEL_EXCLUDE | TL_SEL_INHERIT);
  size_t other_agents = 0;
  if (own_exe) {
    for (uint32_t pid : ListPids("/proc")) {
      if (pid == sel.agent_pid || ExeIdentity(std::to_string(pid)) != own_exe) continue;
      if (capture_->Select(pid, TL_SEL_EXCLUDE | TL_SEL_INHERIT).ok()) ++other_agents;
    }
  }
  if (other_agents) spdlog::info("{} other threadline agent(s) running; excluded from tracing", other_agents);
  ASSIGN_OR_RETURN(ring_, RingConsumer::Create(capture_->ring_buffer_fd(), *this, metrics_));

  std::string scope = cc.trace_all ? "all processes" : std::to_string(selected) + " selected processes";
  if (!cc.ports.empty()) scope += ", ports filtered";
  spdlog::info("threadline ready: {} hooks attached on syscall/sched/sock tracepoints, tracing {}, "
               "capture {} bytes per syscall, ring buffer {} MiB",
               attached, scope, cc.capture_bytes, options_.ring_buffer_mb);
  return OkStatus();
}

void Agent::PublishCapabilities(const CapabilityReport& caps) {
  for (const auto& r : caps.results)
    metrics_.GetGauge("threadline_probe_kind_available", {{"kind", r.name}},
                      "1 when this kind of BPF hook loads, attaches and fires on this kernel")
        .Set(r.works() ? 1 : 0);
  for (const auto& c : caps.choices)
    metrics_.GetGauge("threadline_hook_choice", {{"hook", c.hook}, {"chosen", c.chosen}},
                      "The mechanism chosen for each hook (1 when active)")
        .Set(c.active ? 1 : 0);
}

Status Agent::Run(const std::atomic<bool>& stop) {
  const uint64_t start = BootClock::NowBootNs();
  const uint64_t deadline =
      options_.duration_s > 0 ? start + static_cast<uint64_t>(options_.duration_s * 1e9) : 0;
  last_sweep_ns_ = last_stats_ns_ = last_clock_refresh_ns_ = start;
  while (!stop.load(std::memory_order_relaxed)) {
    auto polled = ring_->Poll(100);
    if (!polled.ok()) return polled.error();
    uint64_t now = BootClock::NowBootNs();
    Upkeep(now);
    if (printer_) printer_->Flush();
    if (deadline && now >= deadline) break;
  }
  ring_->Drain();
  if (printer_) printer_->Flush();
  if (span_sink_) span_sink_->Flush();
  return OkStatus();
}

void Agent::Upkeep(uint64_t now) {
  table_->Tick(now);
  if (console_) console_->Poll();
  if (span_sink_ && !console_ && now - last_span_flush_ns_ >= kSecond) {
    span_sink_->Flush();
    last_span_flush_ns_ = now;
  }
  if (now - last_clock_refresh_ns_ >= 10 * kSecond) {
    clock_.Refresh();
    last_clock_refresh_ns_ = now;
  }
  // Sockets of processes that exited were closed by the kernel without a close() we could see:
  // drop them from the kernel table in batches.
  if (exits_since_sweep_ && now - last_sweep_ns_ >= 2 * kSecond) {
    size_t n = capture_->SweepConnections(ProcessGone);
    if (n) metrics_.GetCounter("threadline_kernel_conns_swept_total", {}, "Kernel connection entries of exited processes removed").Add(n);
    exits_since_sweep_ = false;
    last_sweep_ns_ = now;
  }
  if (options_.stats_interval_s > 0 &&
      now - last_stats_ns_ >= static_cast<uint64_t>(options_.stats_interval_s * 1e9)) {
    LogStats(false);
    last_stats_ns_ = now;
  }
}

void Agent::PublishKernelDrops() {
  KernelDrops drops = capture_->ReadDrops();
  for (int reason = 0; reason < TL_DROP__COUNT; ++reason) {
    for (size_t cpu = 0; cpu < drops.per_cpu.size(); ++cpu) {
      uint64_t v = drops.per_cpu[cpu][reason];
      if (!v) continue;
      metrics_
          .GetGauge("threadline_kernel_events_lost_total",
                    {{"reason", std::string(DropReasonName(reason))}, {"cpu", std::to_string(cpu)}},
                    "Kernel events dropped or not produced, by reason and CPU")
          .Set(static_cast<int64_t>(v));
    }
  }
}

void Agent::LogStats(bool final_report) {
  PublishKernelDrops();
  std::string line;
  for (const auto& s : metrics_.Snapshot()) {
    if (s.value == 0) continue;
    line += "\n  " + s.name;
    if (!s.labels.empty()) {
      line += "{";
      for (size_t i = 0; i < s.labels.size(); ++i)
        line += (i ? "," : "") + s.labels[i].first + "=" + s.labels[i].second;
      line += "}";
    }
    line += " " + std::to_string(s.value);
  }
  KernelDrops drops = capture_->ReadDrops();
  uint64_t lost = 0;
  std::string by_reason;
  for (int r = 0; r < TL_DROP__COUNT; ++r) {
    uint64_t v = drops.Total(r);
    lost += v;
    by_reason += std::string(by_reason.empty() ? "" : ", ") + std::string(DropReasonName(r)) + "=" + std::to_string(v);
  }
  spdlog::info("{}: events received {}, lost {} ({}), connections tracked {}{}",
               final_report ? "final stats" : "stats", ring_->records(), lost, by_reason,
               table_->size(), line);
}

void Agent::OnConnOpen(const ConnOpenEvent& e) { table_->OnConnOpen(e); }
void Agent::OnConnClose(const ConnCloseEvent& e) { table_->OnConnClose(e); }
void Agent::OnData(const DataEvent& e) { table_->OnData(e); }
void Agent::OnConnState(const ConnStateEvent& e) { table_->OnConnState(e); }

void Agent::OnProcExec(const ProcExecEvent& e) {
  if (tls_) tls_->OnExec(e.pid);
  processes_->OnExec(e.pid);
  if (resources_) resources_->OnExec(e.pid);
  bool traced = selector_->trace_all_processes();
  if (!traced) {
    // Selection by executable is decided now that the new image is known. A pid listed with
    // --pid stays selected whatever it execs.
    auto info = processes_->Get(e.pid);
    uint32_t flags = info.ok() ? selector_->SelectionFlags(*info) : 0;
    if (flags & TL_SEL_TRACE) {
      traced = capture_->Select(e.pid, flags).ok();
    } else if (std::find(options_.pids.begin(), options_.pids.end(), e.pid) == options_.pids.end() &&
               !options_.exe_globs.empty()) {
      (void)capture_->Unselect(e.pid);
    }
  }
  // Read the new image's resource now, while the process surely lives: a short-lived client
  // (curl) can be gone and reaped by the time its span is built, and /proc with it.
  if (traced && resources_) (void)resources_->Get(e.pid);
  if (traced && printer_ && e.pid != static_cast<uint32_t>(getpid())) printer_->PrintExec(e);
}

void Agent::OnProcFork(const ProcForkEvent&) {}

void Agent::OnProcExit(const ProcExitEvent& e) {
  table_->OnProcExit(e);
  processes_->OnExit(e.pid);
  if (resources_) resources_->OnExit(e.pid);
  exits_since_sweep_ = true;
  if (printer_) printer_->PrintExit(e);
}

}  // namespace threadline
