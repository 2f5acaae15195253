#include "agent/app/options.h"

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <map>

namespace threadline {

Result<AgentOptions> ParseOptions(int argc, char** argv) {
  AgentOptions o;
  if (const char* env = std::getenv("THREADLINE_LOG_LEVEL")) o.log_level = env;

  CLI::App app{"threadline: zero-code distributed tracing with eBPF"};
  app.set_version_flag("--version", "threadline 0.1.0");
  app.add_flag("--probe", o.probe_only,
               "Load and attach one probe of each kind, print what this kernel supports and "
               "which hook each feature uses, then exit");
  std::map<std::string, OutputMode> outputs{{"otlp", OutputMode::kOtlp},
                                            {"console", OutputMode::kConsole},
                                            {"json", OutputMode::kJson},
                                            {"events", OutputMode::kEvents},
                                            {"none", OutputMode::kNone}};
  app.add_option("--output", o.output,
                 "otlp: export to the OTLP endpoint (default when one is set); console: a tree "
                 "per trace (default otherwise); json: OTLP JSON, one request per line; events: "
                 "raw connections and data; none")
      ->transform(CLI::CheckedTransformer(outputs, CLI::ignore_case));
  app.add_option("--output-file", o.output_file, "Write output there instead of stdout");
  app.add_option("--duration", o.duration_s, "Stop by itself after this many seconds")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--pid", o.pids, "Trace only these processes (and their children); repeatable");
  app.add_option("--exe", o.exe_globs,
                 "Trace only processes whose executable path, name or comm matches this glob; "
                 "repeatable");
  app.add_option("--port", o.ports, "Trace only connections with this local or remote port; repeatable");
  app.add_option("--capture-bytes", o.capture_bytes,
                 "Payload bytes captured per syscall (power of two, 16..16384)")
      ->check(CLI::Range(16u, 16384u));
  app.add_option("--ring-buffer-mb", o.ring_buffer_mb, "Kernel ring buffer size in MiB (power of two)")
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--max-connections", o.max_connections,
                 "Connections tracked at once (kernel and userspace tables)")
      ->check(CLI::Range(64u, 1u << 22));
  app.add_option("--print-payload-bytes", o.print_payload_bytes,
                 "Payload bytes shown per DATA line in --output=events");
  app.add_option("--stats-interval", o.stats_interval_s,
                 "Log the agent's own counters every N seconds (0: only at exit)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--route", o.routes,
                 "URL path pattern naming spans, e.g. /items/{id} or /static/*; first match wins; "
                 "repeatable (unmatched paths get ids replaced by placeholders)");
  app.add_option("--redact-query-key", o.redact_query_keys,
                 "Extra query parameter whose value is replaced by REDACTED; repeatable");
  app.add_option("--otlp-endpoint", o.otlp_endpoint,
                 "OTLP collector, e.g. http://127.0.0.1:4317 (grpc) or http://127.0.0.1:4318 "
                 "(http/protobuf); overrides OTEL_EXPORTER_OTLP_ENDPOINT");
  app.add_option("--otlp-protocol", o.otlp_protocol, "grpc or http/protobuf; overrides OTEL_EXPORTER_OTLP_PROTOCOL")
      ->check(CLI::IsMember({"grpc", "http/protobuf"}));
  std::map<std::string, bool> on_off{{"on", true}, {"off", false}};
  app.add_option("--tls", o.tls,
                 "on (default): read HTTPS plaintext with uprobes on OpenSSL in every process that "
                 "maps it; off: sockets only")
      ->transform(CLI::CheckedTransformer(on_off, CLI::ignore_case));
  app.add_option("--metrics-address", o.metrics_address,
                 "Serve Prometheus /metrics and /healthz here (default 127.0.0.1:9464; 'off' to disable)");
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error (env THREADLINE_LOG_LEVEL)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.get_exit_code() == 0 ? app.help() : e.what();
    if (e.get_name() == "CallForVersion") msg = "threadline 0.1.0\n";
    return Error{msg, e.get_exit_code()};
  }
  if (o.metrics_address == "off") o.metrics_address.clear();
  if (app.count("--output") == 0) {
    auto set = [](const char* name) {
      const char* v = std::getenv(name);
      return v != nullptr && *v != '\0';
    };
    if (!o.otlp_endpoint.empty() || set("OTEL_EXPORTER_OTLP_ENDPOINT") ||
        set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
      o.output = OutputMode::kOtlp;
  }
  auto is_pow2 = [](uint32_t v) { return v && !(v & (v - 1)); };
  if (!is_pow2(o.capture_bytes)) return Error{"--capture-bytes must be a power of two", 2};
  if (!is_pow2(o.ring_buffer_mb)) return Error{"--ring-buffer-mb must be a power of two", 2};
  return o;
}

}  // namespace threadline
