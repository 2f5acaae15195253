#include "agent/app/agent.h"

#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/app/cpu_budget.h"
#include "agent/app/injection_policy.h"
#include "agent/capabilities/capability_json.h"
#include "agent/capabilities/capability_probe.h"
#include "agent/capabilities/injection_outcome.h"
#include "agent/conn/connection_table.h"
#include "agent/discovery/proc_socket_resolver.h"
#include "agent/discovery/process_info.h"
#include "agent/discovery/selector.h"
#include "agent/ingest/ring_consumer.h"
#include "agent/kernel/bpf_env.h"
#include "agent/kernel/capture_program.h"
#include "agent/kernel/go_ctx_probes.h"
#include "agent/runtimes/node_async_context.h"
#include "agent/kernel/inject_canary.h"
#include "agent/kernel/injector.h"
#include "agent/kernel/tcp_option_program.h"
#include "agent/kernel/tls_attacher.h"
#include "agent/discovery/k8s_watcher.h"
#include "agent/discovery/own_sockets.h"
#include "agent/discovery/pod_selection.h"
#include "agent/discovery/resource.h"
#include "agent/output/console_tree.h"
#include "agent/output/event_printer.h"
#include "agent/protocols/dispatcher.h"
#include "agent/spans/span_builder.h"
#include "agent/pipeline/red_metrics.h"
#include "agent/config/settings.h"
#include "agent/pipeline/sampled_filter.h"
#include "agent/spans/sampler.h"
#include "agent/traces/trace_store.h"
#include "agent/ui/ui_server.h"
#include "exporter/batch_exporter.h"
#include "exporter/json_lines.h"
#include "exporter/metrics_server.h"
#include "exporter/otlp_config.h"

namespace threadline {

namespace {
constexpr uint64_t kSecond = 1'000'000'000ull;
// The ring reader's timer. Most events are committed without waking the reader
// (CaptureConfig::batch_wakeups), so this is also how long a quiet ring's events can wait.
constexpr int kRingPollMs = 100;

// The file behind /proc/<pid>/exe as (inode, kernel dev_t), the identity the kernel compares at
// exec. nullopt for kernel threads and processes we may not inspect.
std::optional<std::pair<uint64_t, uint32_t>> ExeIdentity(const std::string& proc_root, const std::string& pid) {
  struct stat st {};
  if (::stat((proc_root + "/" + pid + "/exe").c_str(), &st) != 0) return std::nullopt;
  uint32_t kdev = (static_cast<uint32_t>(major(st.st_dev)) << 20) | static_cast<uint32_t>(minor(st.st_dev));
  return std::pair{static_cast<uint64_t>(st.st_ino), kdev};
}

bool ProcessGone(const std::string& proc_root, uint32_t tgid) {
  struct stat st {};
  return ::stat((proc_root + "/" + std::to_string(tgid)).c_str(), &st) != 0 && errno == ENOENT;
}

// Only for the events view's absence; every other mode runs the span pipeline.
class NullConsumer : public StreamConsumer {};

// --output=none still runs the whole pipeline (connections, parsing, spans, counters).
class NullSpanSink : public SpanSink {
 public:
  void OnSpan(Span&&) override {}
};
}  // namespace

Agent::Agent(const AgentOptions& options, MetricsRegistry& metrics)
    : options_(options), metrics_(metrics) {}

Agent::~Agent() {
  pod_selector_.reset();  // writes capture_'s map and reads k8s_'s store
  ring_.reset();
  tcp_option_.reset();  // uses capture_'s maps; armed sockets keep flags that do nothing without it
  injector_.reset();  // uses capture_'s maps; detaching it leaves enrolled sockets untouched
  DetachHooks();
  tls_.reset();
  go_ctx_.reset();
  node_ctx_.reset();  // writes capture_'s maps
  capture_.reset();  // the programs and maps
  table_.reset();
  dispatcher_.reset();
  span_builder_.reset();
  red_metrics_.reset();
  ui_server_.reset();  // reads trace_store_ on its thread
  trace_store_tee_.reset();
  trace_store_.reset();
  sampled_filter_.reset();
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

void Agent::DetachHooks() {
  // Every tracepoint and uprobe at once, finished by a child process (bpf_handles.h says why):
  // in this process the kernel's teardown took 4-10 s on a loaded machine, and a stop that
  // slow gets the agent killed (Kubernetes' grace period, the tests' stop()).
  std::vector<BpfLink> links;
  auto take = [&links](std::vector<BpfLink> more) {
    std::move(more.begin(), more.end(), std::back_inserter(links));
  };
  if (tls_) take(tls_->ReleaseLinks());  // its uprobes use capture_'s programs
  if (go_ctx_) take(go_ctx_->ReleaseLinks());  // the same
  if (capture_) take(capture_->ReleaseLinks());
  const auto start = std::chrono::steady_clock::now();
  const BackgroundDetach detach = DestroyLinksInBackground(std::move(links));
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start).count();
  if (detach.detacher_pid)
    spdlog::info("{} hooks handed over in {} ms to process {} (tl-detach), which detaches them "
                 "(the kernel waits for RCU grace periods: seconds under load)",
                 detach.links, ms, detach.detacher_pid);
  else if (detach.links)
    spdlog::info("{} hooks detached in {} ms", detach.links, ms);
}

Result<std::unique_ptr<Agent>> Agent::Create(const AgentOptions& options, MetricsRegistry& metrics) {
  std::unique_ptr<Agent> agent(new Agent(options, metrics));  // private constructor
  RETURN_IF_ERROR(agent->Start());
  return agent;
}

Status Agent::Start() {
  // Restarts show as changes of this value (deploy/prometheus: ThreadlineAgentRestarting).
  metrics_.GetGauge("threadline_start_time_seconds", {}, "When the agent started, Unix time in seconds")
      .Set(static_cast<int64_t>(std::time(nullptr)));
  health_.SetStarting("probing the kernel's BPF capabilities");
  RETURN_IF_ERROR(PrepareBpfEnvironment());
  const CapabilityReport& caps = ProbeCapabilities();
  LogReport(caps);
  PublishCapabilities(caps);
  health_.SetStarting("loading and attaching BPF programs");
  if (!options_.metrics_address.empty()) {
    MetricsServerHandlers handlers;
    handlers.liveness = [this] {
      HealthStatus h = health_.Liveness(BootClock::NowBootNs());
      return ProbeAnswer{h.ok, h.reason};
    };
    handlers.readiness = [this] {
      HealthStatus h = health_.Readiness(BootClock::NowBootNs());
      return ProbeAnswer{h.ok, h.reason};
    };
    SetCapabilitiesJson(CapabilityReportJson(caps));
    handlers.capabilities_json = [this] { return CapabilitiesJson(); };  // updated after the injection canary
    // Not fatal: a second agent on the node, or a busy port, must not stop tracing.
    auto server = MetricsServer::Start(options_.metrics_address, metrics_, std::move(handlers));
    if (server.ok()) {
      metrics_server_ = std::move(*server);
    } else {
      spdlog::warn("no /metrics endpoint: cannot serve on {}: {}", options_.metrics_address,
                   server.error().message);
    }
  }
  if (!caps.can_run) {
    health_.SetFailed("this kernel cannot run threadline: " + caps.cannot_run_reason);
    return Error{"this kernel cannot run threadline: " + caps.cannot_run_reason};
  }

  if (options_.output_file.empty()) {
    out_ = stdout;
  } else {
    out_ = std::fopen(options_.output_file.c_str(), "w");
    if (!out_) return Error::FromErrno("open " + options_.output_file, errno);
    owns_out_ = true;
  }

  ASSIGN_OR_RETURN(PodSelectionRule pod_rule, PodSelectionRule::Create(options_.namespaces, options_.labels));
  std::optional<std::string> cgroup2_root = CgroupV2Root();
  if (pod_rule.active()) {
    // Selection by pod needs the pods (the API) and the kernel's cgroup ids (cgroup v2).
    if (!options_.kubernetes.active)
      return Error{"selection by " + pod_rule.Describe() + " needs Kubernetes metadata, which is off "
                   "(kubernetes.enabled resolved to off: set it on, with kubernetes.node_name and an API "
                   "server, or run in a cluster)", EINVAL};
    if (!cgroup2_root)
      return Error{"selection by namespace/label needs a cgroup v2 hierarchy (none is mounted)", EINVAL};
  }
  if (options_.kubernetes.active && (options_.output != OutputMode::kEvents || pod_rule.active()))
    RETURN_IF_ERROR(StartKubernetes());
  if (pod_rule.active() && !k8s_)
    return Error{"selection by " + pod_rule.Describe() + " needs Kubernetes metadata, which could not start",
                 EINVAL};

  SelectionConfig sel;
  sel.pids = options_.pids;
  sel.exe_globs = options_.exe_globs;
  sel.ports = options_.ports;
  sel.agent_pid = static_cast<uint32_t>(getpid());
  selector_ = std::make_unique<Selector>(sel);
  processes_ = std::make_unique<ProcessCache>(8192, options_.proc_root, metrics_);
  resolver_ = std::make_unique<ProcSocketResolver>(metrics_, options_.proc_root);

  StreamConsumer* consumer;
  if (options_.output == OutputMode::kEvents) {
    if (!options_.ui_address.empty()) spdlog::info("web view off: --output=events builds no spans");
    printer_ = std::make_unique<EventPrinter>(out_, clock_, options_.print_payload_bytes);
    consumer = printer_.get();
  } else {
    SpanBuilderConfig span_config;
    ASSIGN_OR_RETURN(span_config.describe.routes, RouteTable::Create(options_.routes));
    span_config.describe.redaction.extra_query_keys = options_.redact_query_keys;
    span_config.parents.same_node_linking = options_.same_node_linking;
    span_config.sampling_ratio = options_.sampling_ratio;
    spdlog::info("sampling: parent-based, ratio {} for new traces (kept when the trace id's 56 low bits "
                 "are >= {:#x}, the same rule in the kernel for the traces it starts); spans with a "
                 "parent follow its sampled flag; RED metrics count every request",
                 options_.sampling_ratio, TraceIdRatioSampler::ThresholdFor(options_.sampling_ratio));
    span_config.describe.redaction.extra_header_names = options_.redact_header_names;
    span_config.describe.db.query_text = options_.db_query_text;
    spdlog::info("databases (PostgreSQL, MySQL/MariaDB, Redis): CLIENT spans per operation{}; database servers' own connections {}",
                 options_.db_query_text ? ", db.query.text with literals replaced by ?" : ", no statement text (--db-query-text off)",
                 options_.db_server_spans ? "give SERVER spans (--db-server-spans on)" : "not parsed (--db-server-spans off)");
    ResourceCacheOptions resource_options{.proc_root = options_.proc_root};
    if (k8s_) resource_options.kubernetes = &k8s_->store();
    resources_ = std::make_unique<ResourceCache>(std::move(resource_options), metrics_);
    if (options_.output == OutputMode::kOtlp) {
      // The resolved exporters.otlp.* settings (flags > env > file) stand in for their
      // OTEL_EXPORTER_OTLP_* variables; the rest (compression, certificates, OTEL_BSP_*) is read
      // from the environment.
      ASSIGN_OR_RETURN(auto config, OtlpExporterConfigFromEnv(OtlpEnvironment(options_, ProcessEnv())));
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
    // Every span reaches the RED metrics and the trace store; sampled ones go on to the output,
    // unsampled ones wait for their local trace to complete (tail keep) or are dropped.
    ASSIGN_OR_RETURN(TailKeepOptions tail, TailKeepFromOptions(options_));
    sampled_filter_ = std::make_unique<SampledSpanFilter>(*span_sink_, metrics_, tail);
    SpanSink* after_metrics = sampled_filter_.get();
    if (!options_.ui_address.empty()) StartWebView();
    if (tail.enabled && !trace_store_) {
      // Tail keep needs to know when a local trace is complete: the trace store tells, web
      // view or not (its bounds, ui.max_traces and ui.max_mb, apply).
      trace_store_ = std::make_unique<TraceStore>(TraceStoreOptionsFrom(options_), metrics_);
    }
    if (trace_store_) {
      trace_store_tee_ = std::make_unique<TraceStoreSink>(*trace_store_, *sampled_filter_);
      after_metrics = trace_store_tee_.get();
      if (tail.enabled) {
        trace_store_->AddHook([filter = sampled_filter_.get()](const CompletedTracePtr& t) {
          filter->OnLocalTraceComplete(t->trace_id);
        });
      }
    }
    auto red = std::make_unique<RedMetricsSink>(*after_metrics, metrics_);
    sampled_filter_->SetOnTailKept([red = red.get()](const Span& span) { red->SetExemplar(span); });
    red_metrics_ = std::move(red);
    if (tail.enabled) {
      std::string routes;
      for (const auto& [route, ns] : tail.slow_routes) routes += " " + route + "=" + std::to_string(ns / 1'000'000) + "ms";
      spdlog::info("sampling: tail keep on: local traces the ratio dropped are still exported when a span {}{} "
                   "(decided when the local trace completes; at most {} spans held, {} ms){}",
                   tail.keep_errors ? "is an ERROR or " : "", tail.slow_ns ? "is slower than " + std::to_string(tail.slow_ns / 1'000'000) + " ms" : "is slower than its route's threshold",
                   tail.max_spans, tail.max_wait_ns / 1'000'000, routes.empty() ? "" : "; per route:" + routes);
    }
    span_builder_ = std::make_unique<SpanBuilder>(std::move(span_config), *resources_, clock_,
                                                  *red_metrics_, metrics_);
    own_sockets_ = std::make_unique<OwnSockets>(metrics_);
    DispatcherConfig dispatch;
    dispatch.protocols.db_server_spans = options_.db_server_spans;
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
  cc.filter_by_cgroup = pod_rule.active();
  cc.ports = options_.ports;
  cc.capture_bytes = options_.capture_bytes;
  cc.sample_threshold = TraceIdRatioSampler::ThresholdFor(options_.sampling_ratio);
  cc.ring_buffer_bytes = options_.ring_buffer_mb << 20;
  cc.max_connections = options_.max_connections;
  const auto own_exe = ExeIdentity(options_.proc_root, "self");
  if (own_exe) std::tie(cc.agent_exe_ino, cc.agent_exe_dev) = *own_exe;
  ASSIGN_OR_RETURN(capture_, CaptureProgram::Create(cc));
  size_t attached = 0;
  for (const auto& h : capture_->hooks()) attached += h.attached;
  if (options_.tls) {
    TlsAttacherOptions tls_options{.proc_root = options_.proc_root, .agent_pid = sel.agent_pid};
    // Sessions exactly where the hook report chose them (hook_choices.cpp: they need plain
    // uprobes too, so the base DaemonSet without SYS_ADMIN, where a session link is allowed but
    // a perf-event uprobe is not, does not trace TLS while reporting it untraced). The attacher
    // still falls back to pairs if a library's session link is refused.
    const HookChoice* tls_hook = caps.FindChoice("TLS libraries (OpenSSL)");
    tls_options.uprobe_sessions = tls_hook != nullptr && tls_hook->active && tls_hook->chosen == "uprobe session";
    // In a container (--proc-root /host/proc) the library directories to scan are the host's,
    // seen through init's root, not the image's own.
    if (options_.proc_root != "/proc")
      for (std::string& dir : tls_options.library_dirs) dir = options_.proc_root + "/1/root" + dir;
    ASSIGN_OR_RETURN(tls_, TlsAttacher::Create(*capture_, tls_options, metrics_));
  } else {
    spdlog::info("TLS capture off (--tls off): HTTPS is seen as ciphertext only");
  }
  // Goroutine context for Go programs (the kernel's context rule, bpf/capture/ctx.bpf.h).
  ASSIGN_OR_RETURN(go_ctx_, GoContextTracker::Create(
                                *capture_, {.proc_root = options_.proc_root, .agent_pid = sel.agent_pid},
                                metrics_));

  size_t selected = 0;
  if (!cc.trace_all) {
    for (uint32_t pid : selector_->InitialMatches(options_.proc_root)) {
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
    for (uint32_t pid : ListPids(options_.proc_root)) {
      if (pid == sel.agent_pid || ExeIdentity(options_.proc_root, std::to_string(pid)) != own_exe) continue;
      if (capture_->Select(pid, TL_SEL_EXCLUDE | TL_SEL_INHERIT).ok()) ++other_agents;
    }
  }
  if (other_agents) spdlog::info("{} other threadline agent(s) running; excluded from tracing", other_agents);
  if (pod_rule.active()) {
    CaptureProgram& capture = *capture_;
    pod_selector_ = std::make_unique<PodCgroupSelector>(
        pod_rule, k8s_->store(),
        CgroupSetWriter{[&capture](uint64_t id) { return capture.SelectCgroup(id); },
                        [&capture](uint64_t id) { return capture.UnselectCgroup(id); }},
        PodCgroupSelectorOptions{.cgroup_root = *cgroup2_root}, metrics_);
    pod_selector_->Start();
    spdlog::info("selection by pod: {}; the containers of matching pods on this node are traced (cgroup "
                 "set under {}, kept in step with the API's pods)", pod_rule.Describe(), *cgroup2_root);
  }
  if (options_.node_async_context) {
    NodeAsyncContextOptions node{.proc_root = options_.proc_root, .agent_pid = sel.agent_pid};
    CaptureProgram& capture = *capture_;
    const bool by_cgroup = pod_rule.active();
    const std::string cgroup_root = cgroup2_root.value_or("");
    const std::string proc_root = options_.proc_root;
    node.traced = [&capture, by_cgroup, cgroup_root, proc_root](uint32_t pid) {
      if (!capture.ProcessSelected(pid)) return false;
      if (!by_cgroup) return true;
      // cgroup v2: the id is the inode of the process's cgroup directory ("0::<path>").
      std::ifstream f(proc_root + "/" + std::to_string(pid) + "/cgroup");
      std::string line;
      while (std::getline(f, line)) {
        if (!line.starts_with("0::")) continue;
        struct stat st {};
        return ::stat((cgroup_root + line.substr(3)).c_str(), &st) == 0 &&
               capture.CgroupSelected(static_cast<uint64_t>(st.st_ino));
      }
      return false;
    };
    ASSIGN_OR_RETURN(node_ctx_, NodeAsyncContext::Create(*capture_, std::move(node), metrics_));
  }
  {
    CapabilityReport outcome = caps;  // the probe's report plus what became of the mechanisms
    StartTcpOption(outcome);
    StartInjection(outcome);
  }
  ASSIGN_OR_RETURN(ring_, RingConsumer::Create(capture_->ring_buffer_fd(), *this, metrics_));

  std::string scope = cc.trace_all ? "all processes" : std::to_string(selected) + " selected processes";
  if (pod_rule.active()) scope += " in pods with " + pod_rule.Describe();
  if (!cc.ports.empty()) scope += ", ports filtered";
  StartCpuBudget();
  spdlog::info("threadline ready: {} hooks attached on syscall/sched/sock tracepoints, tracing {}, "
               "capture {} bytes per syscall, ring buffer {} MiB (reader woken past {} KiB held "
               "and on execs, else every {} ms)",
               attached, scope, cc.capture_bytes, options_.ring_buffer_mb,
               cc.ring_wakeup_bytes() >> 10, kRingPollMs);
  health_.SetRunning(BootClock::NowBootNs(),
                     std::to_string(attached) + " BPF hooks attached, ring consumer running, tracing " + scope);
  return OkStatus();
}

void Agent::StartCpuBudget() {
  metrics_.GetGauge("threadline_cpu_budget_millicores", {}, "The agent's CPU budget (--cpu-budget); 0: none")
      .Set(static_cast<int64_t>(options_.cpu_budget_cores * 1000 + 0.5));
  if (options_.cpu_budget_cores <= 0) {
    spdlog::info("cpu budget: off (nothing is shed; the ring buffer drops what does not fit)");
    return;
  }
  CpuBudgetSettings settings;
  settings.budget_cores = options_.cpu_budget_cores;
  cpu_budget_ = std::make_unique<CpuBudgetController>(settings);
  last_budget_ns_ = BootClock::NowBootNs();
  last_cpu_s_ = ProcessCpuSeconds();
  last_bpf_ns_ = capture_->ProgramRunTimeNs();
  last_ring_drops_ = 0;
  last_spans_ = metrics_.GetCounter("threadline_spans_created_total", {{"kind", "server"}}).Value() +
                metrics_.GetCounter("threadline_spans_created_total", {{"kind", "client"}}).Value();
  last_shed_requests_ = capture_->ReadShedCounts().requests;
  metrics_.GetGauge("threadline_load_shed_permille", {},
                    "Share of connections the kernel does not capture (CPU budget / ring full), in 1/1000: "
                    "new ones when they open, established ones at their next request boundary");
  spdlog::info("cpu budget: {:.3g} cores, measured as the agent's user+system time{}; over it or when the "
               "ring buffer fills, a hashed share of connections is not captured (new ones when they open, "
               "established ones from their next request)",
               settings.budget_cores,
               BpfRunTimeStatsEnabled() ? " plus its BPF programs' run time (kernel.bpf_stats_enabled=1)"
                                        : " (BPF program time not counted: kernel.bpf_stats_enabled=0)");
}

void Agent::CpuBudgetTick(uint64_t now) {
  const double elapsed_s = static_cast<double>(now - last_budget_ns_) / 1e9;
  const double cpu_s = ProcessCpuSeconds();
  const uint64_t bpf_ns = BpfRunTimeStatsEnabled() ? capture_->ProgramRunTimeNs() : last_bpf_ns_;
  const KernelDrops drops = capture_->ReadDrops();
  const uint64_t ring_drops = drops.Total(TL_DROP_DATA_RING_FULL) + drops.Total(TL_DROP_CTRL_RING_FULL);
  // The load: spans built (the traced work) and requests the kernel did not capture.
  const tl_shed_counts shed = capture_->ReadShedCounts();
  const uint64_t spans = metrics_.GetCounter("threadline_spans_created_total", {{"kind", "server"}}).Value() +
                         metrics_.GetCounter("threadline_spans_created_total", {{"kind", "client"}}).Value();
  CpuBudgetSample sample;
  sample.cpu_cores = (cpu_s - last_cpu_s_ + static_cast<double>(bpf_ns - last_bpf_ns_) / 1e9) / elapsed_s;
  sample.ring_drops = ring_drops - last_ring_drops_;
  sample.load_known = true;
  sample.traced_per_s = static_cast<double>(spans - last_spans_) / elapsed_s;
  sample.shed_per_s = static_cast<double>(shed.requests - last_shed_requests_) / elapsed_s;
  last_budget_ns_ = now;
  last_cpu_s_ = cpu_s;
  last_bpf_ns_ = bpf_ns;
  last_ring_drops_ = ring_drops;
  last_spans_ = spans;
  last_shed_requests_ = shed.requests;
  metrics_.GetGauge("threadline_agent_cpu_millicores", {},
                    "CPU the agent used over the last second, as the CPU budget counts it")
      .Set(static_cast<int64_t>(sample.cpu_cores * 1000 + 0.5));
  const double before = cpu_budget_->fraction();
  if (cpu_budget_->Tick(sample)) {
    const double f = cpu_budget_->fraction();
    capture_->SetShedFraction(f);
    metrics_.GetGauge("threadline_load_shed_permille").Set(static_cast<int64_t>(f * 1000 + 0.5));
    metrics_.GetCounter("threadline_load_shed_changes_total", {{"direction", f > before ? "up" : "down"}},
                        "Changes of the shed fraction under the CPU budget")
        .Add();
    char note[64];
    std::snprintf(note, sizeof(note), "shedding %.1f%% of connections", f * 100);
    health_.SetNote(f > 0 ? std::string(note) + " (cpu budget)" : "");
    if (f > before)
      spdlog::warn("cpu budget: {} (was {:.1f}%): {}", note, before * 100, cpu_budget_->reason());
    else
      spdlog::info("cpu budget: {} (was {:.1f}%): {}", note, before * 100, cpu_budget_->reason());
  }
  PublishShedCounts(shed);
}

// Established connections are shed and resumed by the kernel at their own request boundaries
// (bpf/capture/shed_turn.bpf.h), one by one after each change of the fraction: one line per
// tick in which that happened says how many, never a line per connection.
void Agent::LogShedTurns(const tl_shed_counts& shed) {
  const uint64_t established = shed.established - logged_shed_.established;
  const uint64_t resumed = shed.resumed - logged_shed_.resumed;
  if (established == 0 && resumed == 0) return;
  spdlog::info("cpu budget: at a request boundary, {} established connection(s) shed and {} resumed "
               "(so far {} shed, {} resumed; {} requests and {} bytes not captured)",
               established, resumed, shed.established, shed.resumed, shed.requests, shed.bytes);
  logged_shed_ = shed;
}

void Agent::PublishShedCounts(const tl_shed_counts& shed) {
  metrics_.GetGauge("threadline_load_shed_connections_total", {},
                    "New connections the kernel did not capture under the CPU budget")
      .Set(static_cast<int64_t>(shed.conns));
  metrics_.GetGauge("threadline_load_shed_bytes_total", {},
                    "Bytes shed connections moved, not captured (counted when each is closed)")
      .Set(static_cast<int64_t>(shed.bytes));
  metrics_.GetGauge("threadline_load_shed_established_total", {},
                    "Established connections the kernel stopped capturing at a request boundary")
      .Set(static_cast<int64_t>(shed.established));
  metrics_.GetGauge("threadline_load_shed_resumed_total", {},
                    "Shed connections captured again at a request boundary (met mid-life, a new generation)")
      .Set(static_cast<int64_t>(shed.resumed));
  metrics_.GetGauge("threadline_load_shed_requests_total", {},
                    "Requests on shed connections of known role, not captured (one per request boundary)")
      .Set(static_cast<int64_t>(shed.requests));
  LogShedTurns(shed);
}

TraceStoreOptions Agent::TraceStoreOptionsFrom(const AgentOptions& options) {
  TraceStoreOptions store_options;
  store_options.max_traces = options.trace_store_max_traces;
  store_options.max_bytes = static_cast<size_t>(options.trace_store_max_mb) << 20;
  return store_options;
}

Result<TailKeepOptions> Agent::TailKeepFromOptions(const AgentOptions& options) {
  TailKeepOptions tail;
  tail.keep_errors = options.sampling_keep_errors;
  tail.slow_ns = uint64_t{options.sampling_slow_ms} * 1'000'000;
  for (const std::string& item : options.sampling_slow_routes) {
    ASSIGN_OR_RETURN(auto route, config::ParseSlowRoute(item));
    tail.slow_routes.emplace_back(route.first, uint64_t{route.second} * 1'000'000);
  }
  tail.max_spans = options.sampling_tail_max_spans;
  tail.max_wait_ns = uint64_t{options.sampling_tail_max_wait_ms} * 1'000'000;
  // Only when the ratio drops traces, and something could be worth keeping.
  tail.enabled = options.sampling_ratio < 1.0 &&
                 (tail.keep_errors || tail.slow_ns != 0 ||
                  std::any_of(tail.slow_routes.begin(), tail.slow_routes.end(), [](const auto& r) { return r.second != 0; }));
  return tail;
}

void Agent::StartWebView() {
  const TraceStoreOptions store_options = TraceStoreOptionsFrom(options_);
  auto store = std::make_unique<TraceStore>(store_options, metrics_);
  // Not fatal: a second agent on the node, or a busy port, must not stop tracing.
  auto ui = UiServer::Start(options_.ui_address, *store, "live: this agent", metrics_);
  if (!ui.ok()) {
    spdlog::warn("no web view: {} (traces are not kept in the agent; --ui-address off silences this)",
                 ui.error().message);
    return;
  }
  trace_store_ = std::move(store);
  ui_server_ = std::move(*ui);
  spdlog::info("web view: open {} (trace list, flame charts with critical paths, per-endpoint aggregates; "
               "keeps the last {} traces / {} MiB; a trace shows up about 1 s after its last span)",
               ui_server_->url(), store_options.max_traces, options_.trace_store_max_mb);
}

Status Agent::StartKubernetes() {
  auto k8s = K8sMetadataService::Start({.api_server = options_.kubernetes.api_server,
                                        .node_name = options_.kubernetes.node_name,
                                        .cache_max_pods = options_.kubernetes.cache_max_pods},
                                       metrics_);
  if (k8s.ok()) {
    k8s_ = std::move(k8s).value();
    return OkStatus();
  }
  // Asked for explicitly: a configuration error stops the agent; found by itself (auto):
  // tracing goes on without pod metadata.
  if (options_.kubernetes.enabled == Toggle::kOn) return k8s.error();
  spdlog::warn("kubernetes metadata off: {}", k8s.error().message);
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
  next_trim_ns_ = start + 5 * kSecond;  // the start-up work (TLS library scan) is done by then
  while (!stop.load(std::memory_order_relaxed)) {
    auto polled = ring_->Poll(kRingPollMs);
    if (!polled.ok()) {
      health_.SetFailed("ring buffer poll: " + polled.error().message);
      return polled.error();
    }
    uint64_t now = BootClock::NowBootNs();
    health_.Heartbeat(now);
    Upkeep(now);
    if (printer_) printer_->Flush();
    if (deadline && now >= deadline) break;
  }
  health_.SetStopping();
  ring_->Drain();
  if (printer_) printer_->Flush();
  if (trace_store_) trace_store_->CompleteAll();  // the completion hooks see every trace
  if (sampled_filter_) sampled_filter_->DecideAll();  // what tail keep still holds goes on or is dropped
  if (span_sink_) span_sink_->Flush();
  return OkStatus();
}

void Agent::Upkeep(uint64_t now) {
  table_->Tick(now);
  if (console_) console_->Poll();
  if (trace_store_) trace_store_->Tick();  // completion hooks: tail decisions
  if (sampled_filter_) sampled_filter_->Tick();
  if (span_sink_ && !console_ && now - last_span_flush_ns_ >= kSecond) {
    span_sink_->Flush();
    last_span_flush_ns_ = now;
  }
  if (now - last_inject_stats_ns_ >= kSecond) {
    // Kernel loss on /metrics within a second, not only with --stats-interval (alerts read it).
    PublishKernelDrops();
    if (injector_) PublishInjectStats();
    last_inject_stats_ns_ = now;
  }
  if (tcp_option_ && now - last_tcp_option_stats_ns_ >= kSecond) {
    PublishTcpOptionStats();
    last_tcp_option_stats_ns_ = now;
  }
  if (cpu_budget_ && now - last_budget_ns_ >= kSecond) CpuBudgetTick(now);
  if (now - last_clock_refresh_ns_ >= 10 * kSecond) {
    clock_.Refresh();
    last_clock_refresh_ns_ = now;
  }
  // Memory freed by the worker threads (the TLS attacher's ELF reading and disassembly at
  // start, the exporter's encoded batches, the Kubernetes client's JSON) and by the span
  // pipeline after a burst stays resident: glibc gives back only the free memory at the top of
  // each heap by itself, malloc_trim also the free pages inside them. Every 30 s keeps the RSS
  // an operator sees (and a pod memory limit counts) close to what is in use.
  if (now >= next_trim_ns_) {
    malloc_trim(0);
    next_trim_ns_ = now + 30 * kSecond;
  }
  // Sockets of processes that exited were closed by the kernel without a close() we could see:
  // drop them from the kernel table in batches.
  if (exits_since_sweep_ && now - last_sweep_ns_ >= 2 * kSecond) {
    size_t n = capture_->SweepConnections(
        [this](uint32_t tgid) { return ProcessGone(options_.proc_root, tgid); });
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
  if (cpu_budget_) PublishShedCounts(capture_->ReadShedCounts());
  PublishInjectStats();
  PublishTcpOptionStats();
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
  if (go_ctx_) go_ctx_->OnExec(e.pid);
  if (node_ctx_) node_ctx_->OnExec(e.pid);
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
  // The new image's resource now, before its spans are built: a short-lived client (curl) can
  // be gone and reaped by then, and /proc with it (or already now, when the agent is behind:
  // then it is built from what the kernel reported at exec).
  if (traced && resources_)
    resources_->OnExecSeen({.pid = e.pid, .ppid = e.ppid,
                            .start_time_ticks = e.start_boottime_ns ? discovery::BootNsToClockTicks(e.start_boottime_ns) : 0,
                            .comm = e.comm, .filename = e.filename, .exe_name = e.exe_name, .args = e.args});
  if (traced && printer_ && e.pid != static_cast<uint32_t>(getpid())) printer_->PrintExec(e);
}

void Agent::OnProcFork(const ProcForkEvent&) {}

void Agent::OnTraceContext(const TraceCtxEvent& e) {
  if (span_builder_) span_builder_->OnKernelTraceContext(e);
}

void Agent::RecordContextOutcome(CapabilityReport& caps, const char* hook, bool on, const std::string& why) {
  const std::string before = RecordHookOutcome(caps, hook, on, why);
  if (!on && !before.empty())
    metrics_.GetGauge("threadline_hook_choice", {{"hook", hook}, {"chosen", before}}).Set(0);
  PublishCapabilities(caps);
  SetCapabilitiesJson(CapabilityReportJson(caps));
}

void Agent::StartTcpOption(CapabilityReport& caps) {
  auto& enabled = metrics_.GetGauge("threadline_tcp_option_enabled", {},
                                    "1 when trace context goes out and is read in a TCP header option");
  enum Level { kQuiet, kWarn, kLoud };
  auto conclude = [&](bool on, const std::string& why, Level level) {
    enabled.Set(on ? 1 : 0);
    RecordContextOutcome(caps, kTcpOptionHook, on, why);
    if (on) spdlog::info("context in TCP header option ON: {}", why);
    else if (level == kLoud) spdlog::error("context in TCP header option DISABLED: {}", why);
    else if (level == kWarn) spdlog::warn("context in TCP header option off: {}", why);
    else spdlog::info("context in TCP header option off: {}", why);
  };
  if (!options_.context_tcp)
    return conclude(false, "left out by configuration (context_propagation: " +
                               std::string(options_.context_headers ? "headers" : "none") + ")",
                    kQuiet);
  if (options_.output == OutputMode::kEvents)
    return conclude(false, "no spans in --output=events, so nothing would use the ids", kQuiet);
  if (!caps.Works(ProbeKind::kSockops) || !caps.Works(ProbeKind::kTcpHeaderOption))
    return conclude(false, "this kernel's sockops header-option callbacks did not work in the probe (see --probe)",
                    kWarn);
  TcpOptionConfig tc;
  tc.agent_tgid = static_cast<uint32_t>(getpid());
  tc.trace_all = selector_->trace_all_processes();
  tc.filter_by_cgroup = capture_->config().filter_by_cgroup;
  tc.port_filter = !capture_->config().ports.empty();
  tc.cgroup2_root = CgroupV2Root().value_or("");
  auto program = TcpOptionProgram::Create(*capture_, tc);
  if (!program.ok()) return conclude(false, "cannot load or attach: " + program.error().message, kLoud);
  tcp_option_ = std::move(*program);
  tcp_option_->SetOn(true);
  conclude(true, "client sockets of traced processes connected from now on carry the trace context on the "
                 "segment starting each request (option kind 25); options arriving on any connection are "
                 "read (sockops on " + tc.cgroup2_root + ")",
           kQuiet);
}

void Agent::PublishTcpOptionStats() {
  if (!tcp_option_) return;
  const TcpOptionStats stats = tcp_option_->ReadStats();
  for (int i = 0; i < TL_OPT__COUNT; ++i)
    metrics_.GetGauge("threadline_tcp_option_total", {{"result", std::string(TcpOptionStatName(i))}},
                      "Trace context in TCP header options: sockets armed, request starts, options written, "
                      "read, and every reason one was not")
        .Set(static_cast<int64_t>(stats[i]));
}

void Agent::StartInjection(CapabilityReport& caps) {
  auto& enabled = metrics_.GetGauge("threadline_inject_enabled", {},
                                    "1 when traceparent injection is on (sk_msg + sockops, canary passed)");
  // The decision is injection_policy.h's; here it is carried out and said (an error when
  // something failed that should have worked, a warning for a kernel defect the canary
  // identified: expected on that kernel, and said with how to override).
  using Level = InjectionDecision::Level;
  auto conclude = [&](const InjectionDecision& d) {
    enabled.Set(d.on ? 1 : 0);
    RecordContextOutcome(caps, kInjectionHook, d.on, d.why);
    if (!d.warning.empty()) spdlog::warn("{}", d.warning);
    if (d.on) spdlog::info("traceparent injection ON: {}", d.why);
    else if (d.level == Level::kError) spdlog::error("traceparent injection DISABLED: {}", d.why);
    else if (d.level == Level::kWarn) spdlog::warn("traceparent injection DISABLED: {}", d.why);
    else spdlog::info("traceparent injection off: {}", d.why);
  };
  if (!options_.context_headers)
    return conclude(InjectionDecision{.why = "left out by configuration (context_propagation without headers)"});
  if (auto d = DecideInjectionBeforeCanary(options_.inject, options_.output,
                                           caps.Works(ProbeKind::kSkMsg) && caps.Works(ProbeKind::kSockops)))
    return conclude(*d);
  InjectorConfig ic;
  ic.agent_tgid = static_cast<uint32_t>(getpid());
  ic.trace_all = selector_->trace_all_processes();
  ic.filter_by_cgroup = capture_->config().filter_by_cgroup;
  ic.cgroup2_root = CgroupV2Root().value_or("");
  auto injector = Injector::Create(*capture_, ic);
  if (!injector.ok()) return conclude({false, "cannot load or attach: " + injector.error().message, Level::kError, {}});
  injector_ = std::move(*injector);

  CanaryOptions canary_options;
  if (const char* f = std::getenv("THREADLINE_INJECT_CANARY_FAIL"); f && *f && std::string(f) != "0")
    canary_options.force_failure = true;  // test hook (inject_canary.h)
  CanaryResult canary = RunInjectionCanary(*injector_, canary_options);
  metrics_.GetGauge("threadline_inject_canary_passed", {}, "1 when the injection canary passed at start")
      .Set(canary.passed ? 1 : 0);
  metrics_.GetGauge("threadline_inject_kernel_fionread_defect", {},
                    "1 when FIONREAD under-reports on sockets enrolled for injection (kernel tcp_bpf)")
      .Set(canary.fionread_defect ? 1 : 0);
  const InjectionDecision decision = DecideInjectionAfterCanary(
      options_.inject, canary,
      "client sockets of traced processes are enrolled from now on (" + ic.cgroup2_root + ")");
  if (decision.on) injector_->SetMode(Injector::Mode::kOn);
  else injector_.reset();  // nothing enrolled from now on
  conclude(decision);
}

void Agent::SetCapabilitiesJson(std::string json) {
  std::lock_guard lock(caps_json_mu_);
  caps_json_ = std::move(json);
}

std::string Agent::CapabilitiesJson() const {
  std::lock_guard lock(caps_json_mu_);
  return caps_json_;
}

void Agent::PublishInjectStats() {
  if (!injector_) return;
  const InjectStats stats = injector_->ReadStats();
  for (int i = 0; i < TL_INJ__COUNT; ++i)
    metrics_.GetGauge("threadline_inject_total", {{"result", std::string(InjectStatName(i))}},
                      "Traceparent injection by outcome: injected, enrolled, and every reason a request or socket was left alone")
        .Set(static_cast<int64_t>(stats[i]));
}

void Agent::OnProcExit(const ProcExitEvent& e) {
  table_->OnProcExit(e);
  if (go_ctx_) go_ctx_->OnExit(e.pid);
  if (node_ctx_) node_ctx_->OnExit(e.pid);
  processes_->OnExit(e.pid);
  if (resources_) resources_->OnExit(e.pid);
  exits_since_sweep_ = true;
  if (printer_) printer_->PrintExit(e);
}

}  // namespace threadline
