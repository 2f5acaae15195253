#include "agent/config/settings.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "agent/common/text.h"
#include "agent/discovery/pod_selection.h"
#include "agent/protocols/http/route.h"
#include "exporter/http_server.h"

namespace threadline::config {

namespace {

std::string Trim(std::string_view s) { return std::string(TrimSpace(s)); }

Error Bad(const std::string& value, const std::string& why) {
  return Error{"\"" + value + "\" " + why, 2};
}

Result<uint64_t> ParseUint(const std::string& text, uint64_t lo, uint64_t hi) {
  const std::string t = Trim(text);
  if (t.empty() || t.size() > 12 || t.find_first_not_of("0123456789") != std::string::npos)
    return Bad(text, "is not a non-negative integer");
  uint64_t v = std::strtoull(t.c_str(), nullptr, 10);
  if (v < lo || v > hi)
    return Bad(text, "is out of range (" + std::to_string(lo) + ".." + std::to_string(hi) + ")");
  return v;
}

Result<double> ParseDouble(const std::string& text, double lo, double hi) {
  const std::string t = Trim(text);
  char* end = nullptr;
  double v = t.empty() ? NAN : std::strtod(t.c_str(), &end);
  if (t.empty() || end == nullptr || *end != '\0' || !std::isfinite(v)) return Bad(text, "is not a number");
  if (v < lo || v > hi) {
    char range[64];
    std::snprintf(range, sizeof(range), "(%g..%g)", lo, hi);
    return Bad(text, std::string("is out of range ") + range);
  }
  return v;
}

// YAML 1.1 and shell habits: on/off, true/false, yes/no, 1/0.
Result<bool> ParseOnOff(const std::string& text) {
  const std::string t = AsciiLower(Trim(text));
  if (t == "on" || t == "true" || t == "yes" || t == "1") return true;
  if (t == "off" || t == "false" || t == "no" || t == "0") return false;
  return Bad(text, "is not on or off");
}

Result<Toggle> ParseToggle(const std::string& text) {
  const std::string t = AsciiLower(Trim(text));
  if (t == "auto") return Toggle::kAuto;
  if (auto b = ParseOnOff(text); b.ok()) return *b ? Toggle::kOn : Toggle::kOff;
  return Bad(text, "is not auto, on or off");
}

std::string ToggleName(Toggle t) {
  switch (t) {
    case Toggle::kOn: return "on";
    case Toggle::kOff: return "off";
    default: return "auto";
  }
}

std::string FormatDouble(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

const std::vector<std::pair<std::string, OutputMode>>& OutputModes() {
  static const std::vector<std::pair<std::string, OutputMode>> modes{
      {"otlp", OutputMode::kOtlp}, {"console", OutputMode::kConsole}, {"json", OutputMode::kJson},
      {"events", OutputMode::kEvents}, {"none", OutputMode::kNone}};
  return modes;
}

// ---- Builders for the common shapes of a setting. -------------------------------------------

using Member32 = uint32_t AgentOptions::*;
using MemberString = std::string AgentOptions::*;
using MemberStrings = std::vector<std::string> AgentOptions::*;
using MemberBool = bool AgentOptions::*;

Setting Uint(std::string key, std::string flag, std::string help, Member32 m, uint32_t lo, uint32_t hi,
             bool power_of_two = false) {
  Setting s{std::move(key), std::move(flag), {}, false, std::move(help), {}, {}};
  s.set = [m, lo, hi, power_of_two](AgentOptions& o, const std::vector<std::string>& v) -> Status {
    ASSIGN_OR_RETURN(uint64_t n, ParseUint(v.at(0), lo, hi));
    if (power_of_two && (n & (n - 1)) != 0) return Bad(v.at(0), "is not a power of two");
    o.*m = static_cast<uint32_t>(n);
    return OkStatus();
  };
  s.get = [m](const AgentOptions& o) { return std::vector<std::string>{std::to_string(o.*m)}; };
  return s;
}

Setting Str(std::string key, std::string flag, std::string help, MemberString m,
            std::function<Status(const std::string&)> check = nullptr) {
  Setting s{std::move(key), std::move(flag), {}, false, std::move(help), {}, {}};
  s.set = [m, check](AgentOptions& o, const std::vector<std::string>& v) -> Status {
    std::string t = Trim(v.at(0));
    if (check) RETURN_IF_ERROR(check(t));
    o.*m = std::move(t);
    return OkStatus();
  };
  s.get = [m](const AgentOptions& o) { return std::vector<std::string>{o.*m}; };
  return s;
}

Setting Strs(std::string key, std::string flag, std::string help, MemberStrings m,
             std::function<Status(const std::string&)> check = nullptr) {
  Setting s{std::move(key), std::move(flag), {}, true, std::move(help), {}, {}};
  s.set = [m, check](AgentOptions& o, const std::vector<std::string>& v) -> Status {
    std::vector<std::string> out;
    for (const auto& item : v) {
      std::string t = Trim(item);
      if (t.empty()) return Bad(item, "is empty");
      if (check) RETURN_IF_ERROR(check(t));
      out.push_back(std::move(t));
    }
    o.*m = std::move(out);
    return OkStatus();
  };
  s.get = [m](const AgentOptions& o) { return o.*m; };
  return s;
}

// A key=value list whose file form may also be a map (`key: value`), e.g. labels, routes.
Setting MapStrs(std::string key, std::string flag, std::string help, MemberStrings m,
                std::function<Status(const std::string&)> check) {
  Setting s = Strs(std::move(key), std::move(flag), std::move(help), m, std::move(check));
  s.map_items = true;
  return s;
}

Setting OnOff(std::string key, std::string flag, std::string help, MemberBool m) {
  Setting s{std::move(key), std::move(flag), {}, false, std::move(help), {}, {}};
  s.set = [m](AgentOptions& o, const std::vector<std::string>& v) -> Status {
    ASSIGN_OR_RETURN(o.*m, ParseOnOff(v.at(0)));
    return OkStatus();
  };
  s.get = [m](const AgentOptions& o) { return std::vector<std::string>{o.*m ? "on" : "off"}; };
  return s;
}

// host:port for a server of the agent, or "off" (kept as an empty string). `check_form`:
// reject what is not host:port now rather than when binding.
Setting ListenAddress(std::string key, std::string flag, std::string help, MemberString m, bool check_form) {
  Setting s{std::move(key), std::move(flag), {}, false, std::move(help), {}, {}};
  s.set = [m, check_form](AgentOptions& o, const std::vector<std::string>& v) -> Status {
    std::string a = Trim(v.at(0));
    if (a.empty()) return Bad(v.at(0), "is empty (use off to disable)");
    if (AsciiLower(a) == "off") {
      (o.*m).clear();
      return OkStatus();
    }
    if (check_form && !SplitHostPort(a, "address").ok()) return Bad(a, "is not host:port or [v6-host]:port");
    o.*m = std::move(a);
    return OkStatus();
  };
  s.get = [m](const AgentOptions& o) { return std::vector<std::string>{(o.*m).empty() ? "off" : o.*m}; };
  return s;
}

template <typename T>
Setting UintList(std::string key, std::string flag, std::string help, std::vector<T> AgentOptions::*m,
                 uint64_t lo, uint64_t hi) {
  Setting s{std::move(key), std::move(flag), {}, true, std::move(help), {}, {}};
  s.set = [m, lo, hi](AgentOptions& o, const std::vector<std::string>& v) -> Status {
    std::vector<T> out;
    for (const auto& item : v) {
      ASSIGN_OR_RETURN(uint64_t n, ParseUint(item, lo, hi));
      out.push_back(static_cast<T>(n));
    }
    o.*m = std::move(out);
    return OkStatus();
  };
  s.get = [m](const AgentOptions& o) {
    std::vector<std::string> out;
    for (T n : o.*m) out.push_back(std::to_string(n));
    return out;
  };
  return s;
}

Status CheckLabel(const std::string& item) {
  if (!PodSelectionRule::Create({}, {item}).ok()) return Bad(item, "is not a key=value label match");
  return OkStatus();
}

Status CheckSlowRoute(const std::string& item) {
  if (!ParseSlowRoute(item).ok()) return Bad(item, "is not ROUTE=MS (a route pattern and milliseconds)");
  return OkStatus();
}

Status CheckAbsolutePath(const std::string& path) {
  if (path.empty() || path.front() != '/') return Bad(path, "is not an absolute path");
  return OkStatus();
}

}  // namespace

Result<std::pair<std::string, uint32_t>> ParseSlowRoute(const std::string& item) {
  const size_t eq = item.rfind('=');
  if (eq == std::string::npos || eq == 0) return Bad(item, "is not ROUTE=MS");
  const std::string route = Trim(item.substr(0, eq));
  if (route.empty()) return Bad(item, "is not ROUTE=MS");
  ASSIGN_OR_RETURN(uint64_t ms, ParseUint(item.substr(eq + 1), 0, 3'600'000));
  return std::make_pair(route, static_cast<uint32_t>(ms));
}

namespace {

std::vector<Setting> BuildSettings() {
  std::vector<Setting> t;

  // exporters: where spans go.
  {
    Setting s{"exporters.output", "--output", {}, false,
              "otlp: export to the OTLP endpoint (default when one is set); console: a tree per "
              "trace (default otherwise); json: OTLP JSON, one request per line; events: raw "
              "connections and data; none",
              {}, {}};
    s.set = [](AgentOptions& o, const std::vector<std::string>& v) -> Status {
      const std::string t = AsciiLower(Trim(v.at(0)));
      for (const auto& [name, mode] : OutputModes()) {
        if (name == t) {
          o.output = mode;
          return OkStatus();
        }
      }
      return Bad(v.at(0), "is not one of otlp, console, json, events, none");
    };
    s.get = [](const AgentOptions& o) {
      for (const auto& [name, mode] : OutputModes())
        if (mode == o.output) return std::vector<std::string>{name};
      return std::vector<std::string>{"?"};
    };
    t.push_back(std::move(s));
  }
  t.push_back(Str("exporters.output_file", "--output-file", "Write output there instead of stdout",
                  &AgentOptions::output_file));
  t.push_back(Uint("exporters.print_payload_bytes", "--print-payload-bytes",
                   "Payload bytes shown per DATA line in --output=events", &AgentOptions::print_payload_bytes,
                   0, 1u << 20));
  {
    Setting s = Str("exporters.otlp.endpoint", "--otlp-endpoint",
                    "OTLP collector base URL, e.g. http://127.0.0.1:4317 (grpc) or http://127.0.0.1:4318 "
                    "(http/protobuf, v1/traces is appended) (env OTEL_EXPORTER_OTLP_ENDPOINT)",
                    &AgentOptions::otlp_endpoint);
    s.extra_env = {"OTEL_EXPORTER_OTLP_ENDPOINT"};
    t.push_back(std::move(s));
  }
  {
    Setting s = Str("exporters.otlp.traces_endpoint", "",
                    "Full URL of the traces endpoint, used as is (env OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)",
                    &AgentOptions::otlp_traces_endpoint);
    s.extra_env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"};
    t.push_back(std::move(s));
  }
  {
    Setting s = Str("exporters.otlp.protocol", "--otlp-protocol",
                    "grpc or http/protobuf (env OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL)", &AgentOptions::otlp_protocol,
                    [](const std::string& v) -> Status {
                      if (v == "grpc" || v == "http/protobuf") return OkStatus();
                      return Bad(v, "is not grpc or http/protobuf");
                    });
    s.extra_env = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"};
    t.push_back(std::move(s));
  }
  {
    Setting s = Str("exporters.otlp.headers", "--otlp-headers",
                    "Request headers k1=v1,k2=v2, values percent-encoded (env OTEL_EXPORTER_OTLP_[TRACES_]HEADERS)",
                    &AgentOptions::otlp_headers, [](const std::string& v) -> Status {
                      auto parsed = ParseOtlpHeaders(v, "headers");
                      if (!parsed.ok()) return Error{parsed.error().message, 2};
                      return OkStatus();
                    });
    s.extra_env = {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"};
    s.secret = true;
    t.push_back(std::move(s));
  }
  {
    Setting s = Uint("exporters.otlp.timeout_ms", "--otlp-timeout-ms",
                     "Milliseconds per export request (env OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT)",
                     &AgentOptions::otlp_timeout_ms, 1, 3'600'000);
    s.extra_env = {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"};
    t.push_back(std::move(s));
  }

  // selection: which processes are traced.
  t.push_back(UintList<uint32_t>("selection.pids", "--pid",
                                 "Trace only these processes (and their children); repeatable",
                                 &AgentOptions::pids, 1, 0x3fffffff));
  t.push_back(Strs("selection.exe", "--exe",
                   "Trace only processes whose executable path, name or comm matches this glob; repeatable",
                   &AgentOptions::exe_globs));
  t.push_back(UintList<uint16_t>("selection.ports", "--port",
                                 "Trace only connections with this local or remote port; repeatable",
                                 &AgentOptions::ports, 1, 65535));
  t.push_back(Strs("selection.namespaces", "--namespace",
                   "Kubernetes: trace only the containers of pods in these namespaces (globs); repeatable; "
                   "needs kubernetes metadata and cgroup v2",
                   &AgentOptions::namespaces));
  t.push_back(MapStrs("selection.labels", "--label",
                      "Kubernetes: trace only the containers of pods with this label, key=value (all must "
                      "match); repeatable",
                      &AgentOptions::labels, CheckLabel));

  // spans.
  t.push_back(Strs("routes", "--route",
                   "URL path pattern naming spans, e.g. /items/{id} or /static/*; first match wins; "
                   "repeatable (unmatched paths get ids replaced by placeholders)",
                   &AgentOptions::routes, [](const std::string& p) -> Status {
                     auto table = RouteTable::Create({p});
                     if (!table.ok()) return Error{table.error().message, 2};
                     return OkStatus();
                   }));
  {
    Setting s{"sampling.ratio", "--sampling-ratio", {}, false,
              "Fraction of new traces to keep, 0..1, decided on the trace id (the same rule in every "
              "agent and in the kernel); requests with a parent follow its sampled flag; RED metrics "
              "count every request",
              {}, {}};
    s.set = [](AgentOptions& o, const std::vector<std::string>& v) -> Status {
      ASSIGN_OR_RETURN(o.sampling_ratio, ParseDouble(v.at(0), 0.0, 1.0));
      return OkStatus();
    };
    s.get = [](const AgentOptions& o) { return std::vector<std::string>{FormatDouble(o.sampling_ratio)}; };
    t.push_back(std::move(s));
  }
  t.push_back(OnOff("sampling.keep_errors", "--sampling-keep-errors",
                    "With sampling.ratio < 1, still export the local traces the ratio dropped that have an "
                    "ERROR span (tail keep, docs/sampling.md)",
                    &AgentOptions::sampling_keep_errors));
  t.push_back(Uint("sampling.slow_ms", "--sampling-slow-ms",
                   "With sampling.ratio < 1, still export the local traces the ratio dropped that have a span "
                   "slower than this many ms (0: only routes of sampling.slow_routes)",
                   &AgentOptions::sampling_slow_ms, 0, 3'600'000));
  t.push_back(MapStrs("sampling.slow_routes", "--sampling-slow-route",
                      "Per-route slow threshold ROUTE=MS (the span name's route, a glob; first match wins; 0: "
                      "never slow); repeatable; in the file a map route: ms",
                      &AgentOptions::sampling_slow_routes, CheckSlowRoute));
  t.push_back(Uint("sampling.tail_max_spans", "--sampling-tail-max-spans",
                   "Unsampled spans held at most while their local trace completes; past it the oldest "
                   "traces are decided early (counted)",
                   &AgentOptions::sampling_tail_max_spans, 1, 10'000'000));
  t.push_back(Uint("sampling.tail_max_wait_ms", "--sampling-tail-max-wait-ms",
                   "Longest a local trace is held for the tail decision; then it is decided with what it "
                   "has (counted)",
                   &AgentOptions::sampling_tail_max_wait_ms, 100, 600'000));
  t.push_back(Strs("redaction.query_keys", "--redact-query-key",
                   "Extra query parameter whose value is replaced by REDACTED; repeatable",
                   &AgentOptions::redact_query_keys));
  t.push_back(Strs("redaction.headers", "--redact-header",
                   "Extra request header treated as sensitive (never recorded); repeatable",
                   &AgentOptions::redact_header_names));

  // limits.
  t.push_back(Uint("limits.capture_bytes", "--capture-bytes",
                   "Payload bytes captured per syscall (power of two, 16..16384)", &AgentOptions::capture_bytes,
                   16, 16384, true));
  t.push_back(Uint("limits.ring_buffer_mb", "--ring-buffer-mb", "Kernel ring buffer size in MiB (power of two)",
                   &AgentOptions::ring_buffer_mb, 1, 1024, true));
  t.push_back(Uint("limits.max_connections", "--max-connections",
                   "Connections tracked at once (kernel and userspace tables)", &AgentOptions::max_connections,
                   64, 1u << 22));

  {
    Setting s{"limits.cpu_budget", "--cpu-budget", {}, false,
              "CPU the agent may use, in cores (0.5: half of one core; its own user+system time, plus its "
              "BPF programs' run time when kernel.bpf_stats_enabled=1). Over it, or when the ring buffer "
              "fills, the kernel stops capturing a hashed share of connections (new ones when they open, "
              "established ones at a request boundary; never mid-exchange) until the load falls; 0 or off: "
              "no budget (docs/performance.md)",
              {}, {}};
    s.set = [](AgentOptions& o, const std::vector<std::string>& v) -> Status {
      if (AsciiLower(Trim(v.at(0))) == "off") {
        o.cpu_budget_cores = 0;
        return OkStatus();
      }
      ASSIGN_OR_RETURN(o.cpu_budget_cores, ParseDouble(v.at(0), 0.0, 1024.0));
      return OkStatus();
    };
    s.get = [](const AgentOptions& o) {
      return std::vector<std::string>{o.cpu_budget_cores > 0 ? FormatDouble(o.cpu_budget_cores) : "off"};
    };
    t.push_back(std::move(s));
  }

  // hooks.
  t.push_back(OnOff("tls", "--tls",
                    "on (default): read HTTPS plaintext with uprobes on TLS libraries in every process "
                    "that maps them; off: sockets only",
                    &AgentOptions::tls));
  {
    Setting s{"context_propagation", "--context-propagation", {}, true,
              "How trace context crosses to other nodes: tcp (a TCP header option threadline reads "
              "on the other end; any protocol, TLS too; where the kernel's header-option callbacks "
              "work), headers (traceparent injected into plaintext HTTP/1.x, policy set by inject), "
              "or none; comma-separated or repeated (default tcp,headers)",
              {}, {}};
    s.set = [](AgentOptions& o, const std::vector<std::string>& v) -> Status {
      bool tcp = false, headers = false, none = false;
      for (const std::string& item : v) {
        for (std::string_view part : ListMembers(item)) {
          const std::string m = AsciiLower(part);
          if (m == "tcp") tcp = true;
          else if (m == "headers") headers = true;
          else if (m == "none") none = true;
          else return Bad(std::string(part), "is not tcp, headers or none");
        }
      }
      if (none && (tcp || headers)) return Bad("none", "cannot be listed with tcp or headers");
      o.context_tcp = tcp;
      o.context_headers = headers;
      return OkStatus();
    };
    s.get = [](const AgentOptions& o) {
      std::vector<std::string> out;
      if (o.context_tcp) out.push_back("tcp");
      if (o.context_headers) out.push_back("headers");
      if (out.empty()) out.push_back("none");
      return out;
    };
    t.push_back(std::move(s));
  }
  {
    Setting s{"inject", "--inject", {}, false,
              "traceparent injection into outgoing plaintext HTTP/1.x (sk_msg), the headers "
              "mechanism of context_propagation: auto (after a successful canary), on (also with "
              "a kernel defect the canary tolerates), off (the same as leaving headers out)",
              {}, {}};
    s.set = [](AgentOptions& o, const std::vector<std::string>& v) -> Status {
      ASSIGN_OR_RETURN(o.inject, ParseToggle(v.at(0)));
      return OkStatus();
    };
    s.get = [](const AgentOptions& o) { return std::vector<std::string>{ToggleName(o.inject)}; };
    t.push_back(std::move(s));
  }
  t.push_back(OnOff("same_node_linking", "--same-node-linking",
                    "on (default): a server span's parent is the traced client span at the other end "
                    "of its connection on this node; off: only headers and threads link spans",
                    &AgentOptions::same_node_linking));
  t.push_back(OnOff("node_async_context", "--node-async-context",
                    "off (default); on: load a small JavaScript helper into each traced Node.js "
                    "process through its inspector (opened on loopback for the load, then closed), "
                    "so client requests made for a request find it as parent",
                    &AgentOptions::node_async_context));
  // databases (protocols/db).
  t.push_back(OnOff("db.query_text", "--db-query-text",
                    "on (default): database spans carry db.query.text, the statement with every literal "
                    "replaced by ?; off: no statement text at all",
                    &AgentOptions::db_query_text));
  t.push_back(OnOff("db.server_spans", "--db-server-spans",
                    "off (default): a traced database server's own connections are not parsed (its "
                    "clients' CLIENT spans describe every query); on: SERVER spans for them too",
                    &AgentOptions::db_server_spans));
  t.push_back(Str("proc_root", "--proc-root",
                  "The host's /proc as the agent sees it (/host/proc in the DaemonSet)", &AgentOptions::proc_root,
                  CheckAbsolutePath));

  // the agent itself.
  t.push_back(ListenAddress("metrics.address", "--metrics-address",
                            "Serve /metrics, /healthz, /readyz and /capabilities here (default 127.0.0.1:9464; "
                            "'off' to disable)",
                            &AgentOptions::metrics_address, /*check_form=*/false));
  t.push_back(ListenAddress("ui.address", "--ui-address",
                            "Serve the web view (trace list, flame charts with critical paths, per-endpoint "
                            "aggregates) and its JSON API here (default 127.0.0.1:9465, loopback only; 'off' to "
                            "disable, which also drops the trace store)",
                            &AgentOptions::ui_address, /*check_form=*/true));
  t.push_back(Uint("ui.max_traces", "--ui-max-traces",
                   "Completed traces the web view's store keeps at most (oldest evicted first)",
                   &AgentOptions::trace_store_max_traces, 1, 1'000'000));
  t.push_back(Uint("ui.max_mb", "--ui-max-mb",
                   "Memory the web view's trace store may use, in MiB (open and completed traces; "
                   "oldest evicted first)",
                   &AgentOptions::trace_store_max_mb, 1, 65536));
  {
    Setting s{"stats_interval", "--stats-interval", {}, false,
              "Log the agent's own counters every N seconds (0: only at exit)", {}, {}};
    s.set = [](AgentOptions& o, const std::vector<std::string>& v) -> Status {
      ASSIGN_OR_RETURN(o.stats_interval_s, ParseDouble(v.at(0), 0.0, 86400.0));
      return OkStatus();
    };
    s.get = [](const AgentOptions& o) { return std::vector<std::string>{FormatDouble(o.stats_interval_s)}; };
    t.push_back(std::move(s));
  }
  t.push_back(Str("log_level", "--log-level", "trace, debug, info, warn, error, critical, off",
                  &AgentOptions::log_level, [](const std::string& v) -> Status {
                    for (const char* l : {"trace", "debug", "info", "warn", "error", "critical", "off"})
                      if (v == l) return OkStatus();
                    return Bad(v, "is not one of trace, debug, info, warn, error, critical, off");
                  }));

  // kubernetes: read by agent/discovery/k8s*.
  {
    Setting s{"kubernetes.enabled", "--kubernetes", {}, false,
              "Kubernetes metadata: auto (on when KUBERNETES_SERVICE_HOST is set), on, off", {}, {}};
    s.set = [](AgentOptions& o, const std::vector<std::string>& v) -> Status {
      ASSIGN_OR_RETURN(o.kubernetes.enabled, ParseToggle(v.at(0)));
      return OkStatus();
    };
    s.get = [](const AgentOptions& o) { return std::vector<std::string>{ToggleName(o.kubernetes.enabled)}; };
    t.push_back(std::move(s));
  }
  {
    Setting s{"kubernetes.node_name", "--node-name", {"NODE_NAME"}, false,
              "This node's name: only its pods are watched (env NODE_NAME, from the downward API)", {}, {}};
    s.set = [](AgentOptions& o, const std::vector<std::string>& v) -> Status {
      o.kubernetes.node_name = Trim(v.at(0));
      return OkStatus();
    };
    s.get = [](const AgentOptions& o) { return std::vector<std::string>{o.kubernetes.node_name}; };
    t.push_back(std::move(s));
  }
  {
    Setting s{"kubernetes.api_server", "", {}, false,
              "API server URL (default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)", {}, {}};
    s.set = [](AgentOptions& o, const std::vector<std::string>& v) -> Status {
      std::string url = Trim(v.at(0));
      if (!url.empty() && url.rfind("https://", 0) != 0 && url.rfind("http://", 0) != 0)
        return Bad(url, "is not an http:// or https:// URL");
      o.kubernetes.api_server = std::move(url);
      return OkStatus();
    };
    s.get = [](const AgentOptions& o) { return std::vector<std::string>{o.kubernetes.api_server}; };
    t.push_back(std::move(s));
  }
  {
    Setting s{"kubernetes.cache_max_pods", "", {}, false, "Pods kept in the metadata cache at most", {}, {}};
    s.set = [](AgentOptions& o, const std::vector<std::string>& v) -> Status {
      ASSIGN_OR_RETURN(uint64_t n, ParseUint(v.at(0), 1, 1'000'000));
      o.kubernetes.cache_max_pods = static_cast<uint32_t>(n);
      return OkStatus();
    };
    s.get = [](const AgentOptions& o) {
      return std::vector<std::string>{std::to_string(o.kubernetes.cache_max_pods)};
    };
    t.push_back(std::move(s));
  }
  return t;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::optional<std::string> Lookup(const EnvLookup& env, const std::string& name) {
  if (!env) return std::nullopt;
  auto v = env(name);
  if (!v || Trim(*v).empty()) return std::nullopt;
  return v;
}

}  // namespace

std::string Setting::Env() const {
  std::string out = "THREADLINE_";
  for (char c : key) out += c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

const std::vector<Setting>& Settings() {
  static const std::vector<Setting> settings = BuildSettings();
  return settings;
}

const Setting* FindSetting(std::string_view key) {
  for (const auto& s : Settings())
    if (s.key == key) return &s;
  return nullptr;
}

std::string SuggestKey(std::string_view unknown) {
  std::string best;
  size_t best_d = 4;
  for (const auto& s : Settings()) {
    size_t d = EditDistance(unknown, s.key);
    if (d < best_d) {
      best_d = d;
      best = s.key;
    }
  }
  return best;
}

std::string DescribeOrigin(const ValueOrigin& origin) {
  switch (origin.source) {
    case ConfigSource::kFile: return "file " + origin.where;
    case ConfigSource::kEnv: return "env " + origin.where;
    case ConfigSource::kFlag: return "flag " + origin.where;
    default: return origin.where.empty() ? "default" : "default (" + origin.where + ")";
  }
}

std::vector<RawValue> EnvironmentValues(const EnvLookup& env) {
  std::vector<RawValue> out;
  for (const auto& s : Settings()) {
    std::vector<std::string> names{s.Env()};
    names.insert(names.end(), s.extra_env.begin(), s.extra_env.end());
    for (const auto& name : names) {
      auto v = Lookup(env, name);
      if (!v) continue;
      RawValue raw{s.key, {}, {ConfigSource::kEnv, name}};
      if (s.list) {
        size_t start = 0;
        while (start <= v->size()) {
          size_t comma = v->find(',', start);
          if (comma == std::string::npos) comma = v->size();
          std::string item = Trim(std::string_view(*v).substr(start, comma - start));
          if (!item.empty()) raw.items.push_back(std::move(item));
          start = comma + 1;
        }
      } else {
        raw.items.push_back(*v);
      }
      out.push_back(std::move(raw));
      break;
    }
  }
  return out;
}

Status Resolve(AgentOptions& o, const std::vector<RawValue>& file, const std::vector<RawValue>& environment,
               const std::vector<RawValue>& flags, const EnvLookup& env) {
  for (const auto& s : Settings()) o.sources[s.key] = ValueOrigin{};

  // Defaults that come from the pod's environment rather than from us.
  if (auto host = Lookup(env, "KUBERNETES_SERVICE_HOST")) {
    std::string h = Trim(*host);
    if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6 service IP
    auto port = Lookup(env, "KUBERNETES_SERVICE_PORT");
    o.kubernetes.api_server = "https://" + h + ":" + (port ? Trim(*port) : std::string("443"));
    o.sources["kubernetes.api_server"].where = "from KUBERNETES_SERVICE_HOST/PORT";
  }

  // The precedence: each later layer overrides the earlier ones.
  for (const auto* layer : {&file, &environment, &flags}) {
    for (const auto& raw : *layer) {
      const Setting* s = FindSetting(raw.key);
      if (s == nullptr) return Error{DescribeOrigin(raw.origin) + ": unknown setting " + raw.key, 2};
      if (!s->list && raw.items.size() != 1) {
        return Error{DescribeOrigin(raw.origin) + ": " + raw.key + " takes one value, got " +
                         std::to_string(raw.items.size()),
                     2};
      }
      if (auto st = s->set(o, raw.items); !st.ok()) {
        const std::string where = raw.origin.source == ConfigSource::kFlag
                                      ? raw.origin.where
                                      : DescribeOrigin(raw.origin) + ": " + raw.key;
        return Error{where + ": " + st.error().message, 2};
      }
      o.sources[raw.key] = raw.origin;
    }
  }

  // What depends on several settings.
  ValueOrigin& endpoint = o.sources["exporters.otlp.endpoint"];
  ValueOrigin& traces = o.sources["exporters.otlp.traces_endpoint"];
  if (!o.otlp_endpoint.empty() && !o.otlp_traces_endpoint.empty() && endpoint.source > traces.source) {
    // --otlp-endpoint must beat an OTEL_EXPORTER_OTLP_TRACES_ENDPOINT in the environment, though
    // the specific variable beats the generic one within the environment.
    o.otlp_traces_endpoint.clear();
    traces.where += " (overridden by exporters.otlp.endpoint from " + DescribeOrigin(endpoint) + ")";
  }
  ValueOrigin& output = o.sources["exporters.output"];
  if (output.source == ConfigSource::kDefault && (!o.otlp_endpoint.empty() || !o.otlp_traces_endpoint.empty())) {
    o.output = OutputMode::kOtlp;
    output.where = "otlp because an OTLP endpoint is set";
  }
  if (o.output == OutputMode::kOtlp) {
    // Validate the exporter's settings now (--print-config and startup report the same error).
    auto otlp = OtlpExporterConfigFromEnv(OtlpEnvironment(o, env));
    if (!otlp.ok()) return Error{"OTLP exporter: " + otlp.error().message, 2};
  }
  if (o.inject == Toggle::kOn && !o.context_headers) {
    return Error{"inject: on (" + DescribeOrigin(o.sources["inject"]) +
                     ") contradicts context_propagation without headers (" +
                     DescribeOrigin(o.sources["context_propagation"]) + ")",
                 2};
  }
  o.kubernetes.active = o.kubernetes.enabled == Toggle::kOn ||
                        (o.kubernetes.enabled == Toggle::kAuto && Lookup(env, "KUBERNETES_SERVICE_HOST"));
  return OkStatus();
}

}  // namespace threadline::config
