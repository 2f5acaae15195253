// The agent's settings, from four sources with ONE precedence (README "Configuration"):
//
//   flags  >  environment (THREADLINE_<KEY> and the standard OTEL_* ones)  >  config file  >  defaults
//
// Every setting has a dotted key ("limits.capture_bytes") used by the YAML file, an environment
// variable derived from it (THREADLINE_LIMITS_CAPTURE_BYTES) and often a flag. The table of
// settings and the layering live in agent/config/settings.cpp; ParseOptions below runs them. Each
// value remembers where it came from (AgentOptions::sources), which --print-config shows.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "exporter/otlp_config.h"

namespace threadline {

// otlp: export to an OTLP collector (the default when an endpoint is configured); console: a tree
// per trace on stdout (the default otherwise); json: one OTLP JSON ExportTraceServiceRequest per
// line; events: the raw connection/data view (no spans); none: run everything, print nothing.
enum class OutputMode { kOtlp, kConsole, kJson, kEvents, kNone };

// Three-way switches: auto lets the agent decide from what it finds at run time.
enum class Toggle { kAuto, kOn, kOff };

// Lowest to highest precedence; a later source overrides an earlier one.
enum class ConfigSource { kDefault = 0, kFile = 1, kEnv = 2, kFlag = 3 };

struct ValueOrigin {
  ConfigSource source = ConfigSource::kDefault;
  // Where exactly: "--pid", "THREADLINE_SELECTION_PIDS", "/etc/threadline/config.yaml:12", or a
  // note on a computed default ("from KUBERNETES_SERVICE_HOST/PORT").
  std::string where;
};

// Read by agent/discovery/k8s* (the Kubernetes metadata engineer owns their meaning).
struct KubernetesOptions {
  Toggle enabled = Toggle::kAuto;  // kubernetes.enabled
  bool active = false;             // `enabled` resolved: auto = on when KUBERNETES_SERVICE_HOST is set
  std::string node_name;           // kubernetes.node_name; default: env NODE_NAME (downward API)
  std::string api_server;          // kubernetes.api_server; default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
  uint32_t cache_max_pods = 5000;  // kubernetes.cache_max_pods
};

struct AgentOptions {
  // ---- Actions and run control: flags only (not settings, never in the file). ----
  bool probe_only = false;    // --probe
  bool print_config = false;  // --print-config
  std::string config_file;    // --config, else THREADLINE_CONFIG; empty: no file
  double duration_s = 0;      // --duration; 0: run until SIGINT/SIGTERM

  // ---- Settings (key in the file in brackets). ----
  OutputMode output = OutputMode::kConsole;  // [exporters.output]
  std::string output_file;                   // [exporters.output_file] empty: stdout
  uint32_t print_payload_bytes = 256;        // [exporters.print_payload_bytes]
  // Selection [selection.*]: all processes when no pid and no exe glob is given.
  std::vector<uint32_t> pids;                // [selection.pids]
  std::vector<std::string> exe_globs;        // [selection.exe]
  std::vector<uint16_t> ports;               // [selection.ports]
  // Kubernetes selection: namespace names and "key=value" pod label matches (all must match).
  // Parsed, validated and shown by --print-config, NOT applied yet (README; the agent warns at
  // start when they are set).
  std::vector<std::string> namespaces;       // [selection.namespaces]
  std::vector<std::string> labels;           // [selection.labels]
  std::vector<std::string> routes;           // [routes] URL path patterns for span names
  double sampling_ratio = 1.0;               // [sampling.ratio] fraction of new traces kept (parent-based)
  // Tail keep (agent/pipeline/sampled_filter.h, docs/sampling.md): with sampling.ratio < 1, local
  // traces the head dropped are still exported when a span is an ERROR or slower than its route's
  // threshold.
  bool sampling_keep_errors = true;          // [sampling.keep_errors]
  uint32_t sampling_slow_ms = 1000;          // [sampling.slow_ms] 0: no global threshold
  std::vector<std::string> sampling_slow_routes;  // [sampling.slow_routes] "ROUTE=MS", first match wins
  uint32_t sampling_tail_max_spans = 10000;  // [sampling.tail_max_spans] unsampled spans held at most
  uint32_t sampling_tail_max_wait_ms = 10000;  // [sampling.tail_max_wait_ms] longest a local trace is held
  std::vector<std::string> redact_query_keys;   // [redaction.query_keys]
  std::vector<std::string> redact_header_names; // [redaction.headers]
  uint32_t capture_bytes = 4096;             // [limits.capture_bytes]
  uint32_t ring_buffer_mb = 16;              // [limits.ring_buffer_mb]
  uint32_t max_connections = 65536;          // [limits.max_connections]
  // CPU the agent may use, in cores (0.5 = half of one core); over it (or when the ring fills)
  // the kernel sheds a share of connections, at their request boundaries (agent/app/cpu_budget.h).
  // 0: no budget.
  double cpu_budget_cores = 0.5;             // [limits.cpu_budget]
  // OTLP [exporters.otlp.*]; the standard OTEL_EXPORTER_OTLP_* variables are their environment
  // source. endpoint is a base URL (http/protobuf appends v1/traces); traces_endpoint is used as
  // is and wins over endpoint unless endpoint comes from a higher-precedence source.
  std::string otlp_endpoint;
  std::string otlp_traces_endpoint;
  std::string otlp_protocol = "http/protobuf";
  std::string otlp_headers;                  // k1=v1,k2=v2 (OTEL_EXPORTER_OTLP_HEADERS format)
  uint32_t otlp_timeout_ms = 10000;
  // TLS plaintext capture with uprobes on TLS libraries (off: sockets only; uprobes cost every
  // process that uses the library, traced or not; see README "TLS").
  bool tls = true;                           // [tls]
  // [context_propagation] how context crosses to other nodes: the TCP header option, headers.
  bool context_tcp = true;  // where the capability probe saw the header-option callbacks work
  bool context_headers = true;
  Toggle inject = Toggle::kAuto;             // [inject] traceparent injection (sk_msg): headers' policy
  bool same_node_linking = true;             // [same_node_linking] tuple parent matching
  // Node.js: load the async-context helper through the inspector into traced Node processes, so
  // their client requests find their server request (see docs/parenting.md, "Node.js").
  bool node_async_context = false;           // [node_async_context]
  // Databases: db.query.text (always sanitised) on database spans; SERVER spans for a traced
  // database server's own connections (off: its clients' CLIENT spans are enough, see
  // docs/protocols.md).
  bool db_query_text = true;                 // [db.query_text]
  bool db_server_spans = false;              // [db.server_spans]
  // Where the host's /proc is: /proc on the host, /host/proc in the DaemonSet's container.
  std::string proc_root = "/proc";           // [proc_root]
  // Prometheus /metrics, /healthz, /readyz, /capabilities; empty: off.
  std::string metrics_address = "127.0.0.1:9464";  // [metrics.address]
  // The built-in web view (trace list, flame charts, critical paths) and its JSON API; empty:
  // off, and then no trace store is kept either.
  std::string ui_address = "127.0.0.1:9465";  // [ui.address]
  // Bounds of the trace store behind the view (agent/traces/trace_store.h).
  uint32_t trace_store_max_traces = 2000;    // [ui.max_traces]
  uint32_t trace_store_max_mb = 8;           // [ui.max_mb]
  double stats_interval_s = 0;               // [stats_interval] 0: stats only at exit
  std::string log_level = "info";            // [log_level]
  KubernetesOptions kubernetes;              // [kubernetes.*]

  // Where each setting's value came from, by key; every key of the table is present.
  std::map<std::string, ValueOrigin> sources;
};

// Parses argv, the environment and the config file it names, in the precedence above. On
// --help, --version or a usage/config error returns an Error whose code is the exit status to
// use (0 for --help/--version) and whose message is what to print.
Result<AgentOptions> ParseOptions(int argc, char** argv);
// The same with an injected environment (tests).
Result<AgentOptions> ParseOptions(int argc, char** argv, const EnvLookup& env);

// The environment the OTLP exporter reads (exporter/otlp_config.h): the resolved
// exporters.otlp.* settings stand in for their OTEL_EXPORTER_OTLP_[TRACES_]* variables (so a flag
// or the file decides even when the process environment has the variable); the other variables
// (compression, certificates, OTEL_BSP_*) come from `process_env`.
EnvLookup OtlpEnvironment(const AgentOptions& options, EnvLookup process_env);

// The effective configuration as YAML (loadable with --config), each value followed by a
// comment naming its source. Secret values (OTLP header values) are printed as REDACTED.
std::string FormatEffectiveConfig(const AgentOptions& options);

}  // namespace threadline
