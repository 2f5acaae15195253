// The running agent: kernel capture -> ring consumer -> connection table -> output, on one
// thread (the consumer thread), plus the upkeep a long-running agent needs (clock refresh,
// idle eviction, kernel-table sweeps, stats).
#pragma once

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include "agent/app/health.h"
#include "agent/app/options.h"
#include "agent/common/clock.h"
#include "agent/common/metrics.h"
#include "agent/common/result.h"
#include "agent/ingest/event_types.h"

namespace threadline {

class CaptureProgram;
class TlsAttacher;
class GoContextTracker;
class NodeAsyncContext;
class Injector;
class RingConsumer;
class ConnectionTable;
class EventPrinter;
class Selector;
class ProcessCache;
class ProcSocketResolver;
class StreamConsumer;
class ResourceCache;
class K8sMetadataService;
class SpanSink;
class SampledSpanFilter;
struct TailKeepOptions;
struct TraceStoreOptions;
class ConsoleTreeSink;
class SpanBuilder;
class ProtocolDispatcher;
class BatchSpanExporter;
class MetricsServer;
class OwnSockets;
class TraceStore;
class UiServer;
class CpuBudgetController;

class Agent : public EventSink {
 public:
  static Result<std::unique_ptr<Agent>> Create(const AgentOptions& options, MetricsRegistry& metrics);
  ~Agent() override;

  // Runs until `stop` becomes true or the configured duration passes.
  Status Run(const std::atomic<bool>& stop);
  // Logs the agent's own counters (events, drops by reason, connections, gaps).
  void LogStats(bool final_report);
  // Liveness and readiness as /healthz and /readyz report them.
  const HealthState& health() const { return health_; }

  // EventSink: fans kernel events out to the connection table, discovery and the printer.
  void OnConnOpen(const ConnOpenEvent& e) override;
  void OnConnClose(const ConnCloseEvent& e) override;
  void OnData(const DataEvent& e) override;
  void OnConnState(const ConnStateEvent& e) override;
  void OnProcExec(const ProcExecEvent& e) override;
  void OnProcFork(const ProcForkEvent& e) override;
  void OnProcExit(const ProcExitEvent& e) override;
  void OnTraceContext(const TraceCtxEvent& e) override;

 private:
  Agent(const AgentOptions& options, MetricsRegistry& metrics);
  Status Start();
  // Detaches every tracepoint and uprobe at once (the slow part of a stop); the programs and
  // maps stay until their owners go.
  void DetachHooks();
  void Upkeep(uint64_t now_boot_ns);
  void PublishKernelDrops();
  // --cpu-budget: once a second, measure the agent's CPU and the ring's drops, set the kernel's
  // shed fraction (agent/app/cpu_budget.h), say each change and export it.
  void StartCpuBudget();
  void CpuBudgetTick(uint64_t now);
  void PublishShedCounts(const tl_shed_counts& shed);
  void LogShedTurns(const tl_shed_counts& shed);
  // Traceparent injection: load, canary, switch on (or say loudly why not). Never fatal.
  void StartInjection(struct CapabilityReport& caps);
  void PublishInjectStats();
  // Context in a TCP header option: load, attach, switch on where the probe found the
  // header-option callbacks working (or say why not). Never fatal.
  void StartTcpOption(struct CapabilityReport& caps);
  void PublishTcpOptionStats();
  // Folds a context mechanism's outcome into the capability report and its metrics.
  void RecordContextOutcome(struct CapabilityReport& caps, const char* hook, bool on, const std::string& why);
  // GET /capabilities (metrics server thread): the probe report, with the injection outcome.
  void SetCapabilitiesJson(std::string json);
  std::string CapabilitiesJson() const;
  void PublishCapabilities(const struct CapabilityReport& caps);
  // The trace store and the web view's server (never fatal: without them tracing goes on).
  void StartWebView();
  static TraceStoreOptions TraceStoreOptionsFrom(const AgentOptions& options);
  static Result<TailKeepOptions> TailKeepFromOptions(const AgentOptions& options);
  // Pod metadata from the API server, when kubernetes is active (never fatal in auto mode).
  Status StartKubernetes();

  AgentOptions options_;
  MetricsRegistry& metrics_;
  HealthState health_;
  BootClock clock_;
  std::FILE* out_ = nullptr;
  bool owns_out_ = false;
  std::unique_ptr<Selector> selector_;
  std::unique_ptr<ProcessCache> processes_;
  std::unique_ptr<ProcSocketResolver> resolver_;
  std::unique_ptr<EventPrinter> printer_;
  std::unique_ptr<StreamConsumer> null_consumer_;
  // Spans: conn -> protocols (dispatcher) -> spans (builder) -> sink (console / JSON lines).
  std::unique_ptr<K8sMetadataService> k8s_;  // pod metadata for resources_; outlives it
  std::unique_ptr<ResourceCache> resources_;
  std::unique_ptr<SpanSink> span_sink_;
  ConsoleTreeSink* console_ = nullptr;  // span_sink_ when --output=console
  BatchSpanExporter* exporter_ = nullptr;  // span_sink_ when --output=otlp
  // Sampled spans on to span_sink_; unsampled ones dropped, or held for tail keep.
  std::unique_ptr<SampledSpanFilter> sampled_filter_;
  // Recent traces (fed by a tee in front of sampled_filter_, so it sees every span), for the
  // web view and for tail keep (its completion hook), and the web view's HTTP server. The
  // store is null when neither is on, the server with --ui-address off.
  std::unique_ptr<TraceStore> trace_store_;
  std::unique_ptr<SpanSink> trace_store_tee_;
  std::unique_ptr<UiServer> ui_server_;
  std::unique_ptr<SpanSink> red_metrics_;   // RED histograms of every span, in front of the tee (or sampled_filter_)
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<OwnSockets> own_sockets_;  // the agent's endpoints: their peers are not traced
  std::unique_ptr<SpanBuilder> span_builder_;
  std::unique_ptr<ProtocolDispatcher> dispatcher_;
  uint64_t last_span_flush_ns_ = 0;
  std::unique_ptr<ConnectionTable> table_;
  std::unique_ptr<CaptureProgram> capture_;
  std::unique_ptr<Injector> injector_;  // sk_msg + sockops; shares capture_'s maps
  std::unique_ptr<class TcpOptionProgram> tcp_option_;  // sockops header option; shares capture_'s maps
  std::unique_ptr<TlsAttacher> tls_;  // TLS uprobes on capture_'s programs
  std::unique_ptr<GoContextTracker> go_ctx_;  // goroutine uprobes on capture_'s programs
  std::unique_ptr<NodeAsyncContext> node_ctx_;  // --node-async-context: the Node helper loader
  std::unique_ptr<RingConsumer> ring_;
  // --namespace/--label: keeps capture_'s cgroup set equal to the matching pods' containers.
  std::unique_ptr<class PodCgroupSelector> pod_selector_;
  bool exits_since_sweep_ = false;
  uint64_t last_sweep_ns_ = 0;
  uint64_t last_stats_ns_ = 0;
  uint64_t last_clock_refresh_ns_ = 0;
  uint64_t next_trim_ns_ = 0;
  uint64_t last_inject_stats_ns_ = 0;  // also when kernel drops were last published
  uint64_t last_tcp_option_stats_ns_ = 0;
  std::unique_ptr<CpuBudgetController> cpu_budget_;
  uint64_t last_budget_ns_ = 0;
  double last_cpu_s_ = 0;       // ProcessCpuSeconds() at last_budget_ns_
  uint64_t last_bpf_ns_ = 0;    // CaptureProgram::ProgramRunTimeNs() at last_budget_ns_
  uint64_t last_ring_drops_ = 0;
  uint64_t last_spans_ = 0;          // threadline_spans_created_total at last_budget_ns_
  uint64_t last_shed_requests_ = 0;  // tl_shed_counts.requests at last_budget_ns_
  tl_shed_counts logged_shed_{};  // as of the last LogShedTurns line
  mutable std::mutex caps_json_mu_;
  std::string caps_json_;
};

}  // namespace threadline
