// Command-line options of the agent. Precedence (documented in README): flags > environment
// (THREADLINE_* and the standard OTEL_* ones, as later issues add them) > defaults.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/common/result.h"

namespace threadline {

// otlp: export to an OTLP collector (the default when an endpoint is configured); console: a tree
// per trace on stdout (the default otherwise); json: one OTLP JSON ExportTraceServiceRequest per
// line; events: the raw connection/data view (no spans); none: run everything, print nothing.
enum class OutputMode { kOtlp, kConsole, kJson, kEvents, kNone };

struct AgentOptions {
  bool probe_only = false;
  OutputMode output = OutputMode::kConsole;
  std::string output_file;  // empty: stdout
  double duration_s = 0;    // 0: run until SIGINT/SIGTERM
  std::vector<uint32_t> pids;
  std::vector<std::string> exe_globs;
  std::vector<uint16_t> ports;
  uint32_t capture_bytes = 4096;
  uint32_t ring_buffer_mb = 16;
  uint32_t max_connections = 65536;
  uint32_t print_payload_bytes = 256;
  double stats_interval_s = 0;  // 0: stats only at exit
  std::vector<std::string> routes;           // --route: URL path patterns for span names
  std::vector<std::string> redact_query_keys;  // --redact-query-key: extra sensitive keys
  // OTLP: flags override the standard OTEL_EXPORTER_OTLP_* variables they stand for.
  std::string otlp_endpoint;  // --otlp-endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)
  std::string otlp_protocol;  // --otlp-protocol (OTEL_EXPORTER_OTLP_PROTOCOL)
  // TLS plaintext capture with uprobes on TLS libraries (--tls off: sockets only; uprobes cost
  // every process that uses the library, traced or not; see README "TLS").
  bool tls = true;
  // Prometheus /metrics and /healthz; empty: off.
  std::string metrics_address = "127.0.0.1:9464";
  std::string log_level = "info";
};

// Parses argv. On --help or a usage error returns an Error whose code is the exit status to use
// (0 for --help) and whose message is what to print.
Result<AgentOptions> ParseOptions(int argc, char** argv);

}  // namespace threadline
