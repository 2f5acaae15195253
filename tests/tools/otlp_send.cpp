// otlp_send: pushes synthetic spans through the OTLP exporter (BatchSpanExporter + the transport
// the OTEL_EXPORTER_OTLP_* environment names), shuts it down, and prints its metrics. The e2e
// test tests/e2e/test_otlp_export.py runs it against a real OTLP receiver.
//
//   otlp_send [--traces N] [--interval-ms MS] [--shutdown-ms MS] [--run-id HEX8]
//
// Trace i (0-based) has two spans: a SERVER root "GET /items/{i}" and a CLIENT child
// "SELECT items" whose parent is the root. Ids are derived from the run id and i, so the test
// can predict every one (see SpanIds below). One line per span is printed to stdout as
//   sent trace_id=<32 hex> span_id=<16 hex> parent=<16 hex or -> kind=<SERVER|CLIENT> index=<i>
// then, after Shutdown(), "# metrics" and the Prometheus text of the exporter's metrics, then
// "# done exported=<n> dropped=<n>".
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "exporter/otlp_config.h"
#include "exporter/prometheus_text.h"

namespace {

using namespace threadline;

struct Options {
  int traces = 10;
  int interval_ms = 0;
  int shutdown_ms = 10000;
  uint32_t run_id = 0x7e57da7a;
};

bool ParseArgs(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (a == "--traces") {
      o.traces = std::atoi(v);
    } else if (a == "--interval-ms") {
      o.interval_ms = std::atoi(v);
    } else if (a == "--shutdown-ms") {
      o.shutdown_ms = std::atoi(v);
    } else if (a == "--run-id") {
      o.run_id = static_cast<uint32_t>(std::strtoul(v, nullptr, 16));
    } else {
      return false;
    }
  }
  return o.traces >= 0 && o.interval_ms >= 0 && o.shutdown_ms > 0;
}

void PutBE(uint8_t* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i, v >>= 8) out[i] = static_cast<uint8_t>(v);
}

// trace_id = run_id (4 bytes) | 00000000 | index (8 bytes); root span_id = 0x10 | index (7 bytes),
// child span_id = 0x20 | index.
TraceId TraceFor(uint32_t run_id, uint64_t index) {
  TraceId t;
  PutBE(t.bytes.data(), run_id, 4);
  PutBE(t.bytes.data() + 8, index, 8);
  return t;
}
SpanId SpanFor(uint8_t tag, uint64_t index) {
  SpanId s;
  PutBE(s.bytes.data(), index, 8);
  s.bytes[0] = tag;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  if (!ParseArgs(argc, argv, opts)) {
    std::fprintf(stderr, "usage: otlp_send [--traces N] [--interval-ms MS] [--shutdown-ms MS] [--run-id HEX8]\n");
    return 2;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("otlp_send"));  // stdout is for the test
  Result<OtlpExporterConfig> config = OtlpExporterConfigFromEnv(ProcessEnv());
  if (!config.ok()) {
    std::fprintf(stderr, "otlp_send: %s\n", config.error().message.c_str());
    return 2;
  }
  MetricsRegistry metrics;
  Result<std::unique_ptr<BatchSpanExporter>> exporter = CreateOtlpSpanExporter(config.value(), metrics);
  if (!exporter.ok()) {
    std::fprintf(stderr, "otlp_send: %s\n", exporter.error().message.c_str());
    return 1;
  }

  auto resource = std::make_shared<const Resource>(Resource{.attributes = {
      {"service.name", std::string("otlp-send-e2e")},
      {"process.pid", int64_t{4242}},
      {"host.name", std::string("e2e-host")}}});
  const uint64_t base_ns = 1700000000000000000ULL;
  for (int i = 0; i < opts.traces; ++i) {
    const uint64_t idx = static_cast<uint64_t>(i);
    Span root;
    root.trace_id = TraceFor(opts.run_id, idx);
    root.span_id = SpanFor(0x10, idx);
    root.name = "GET /items/{id}";
    root.kind = SpanKind::kServer;
    root.start_unix_ns = base_ns + idx * 1000000;
    root.end_unix_ns = root.start_unix_ns + 5000000;
    root.attributes = {{"http.request.method", std::string("GET")},
                       {"http.response.status_code", int64_t{200}},
                       {"tl.index", static_cast<int64_t>(i)},
                       {"tl.ratio", 0.5},
                       {"tl.sampled", true}};
    root.resource = resource;
    root.pid = 4242;

    Span child;
    child.trace_id = root.trace_id;
    child.span_id = SpanFor(0x20, idx);
    child.parent_span_id = root.span_id;
    child.name = "SELECT items";
    child.kind = SpanKind::kClient;
    child.start_unix_ns = root.start_unix_ns + 1000000;
    child.end_unix_ns = root.start_unix_ns + 3000000;
    child.attributes = {{"db.system", std::string("postgresql")}, {"tl.index", static_cast<int64_t>(i)}};
    child.status = StatusCode::kError;
    child.status_message = "timeout";
    child.resource = resource;
    child.pid = 4242;

    std::printf("sent trace_id=%s span_id=%s parent=- kind=SERVER index=%d\n", root.trace_id.Hex().c_str(),
                root.span_id.Hex().c_str(), i);
    std::printf("sent trace_id=%s span_id=%s parent=%s kind=CLIENT index=%d\n", child.trace_id.Hex().c_str(),
                child.span_id.Hex().c_str(), root.span_id.Hex().c_str(), i);
    std::fflush(stdout);
    (*exporter)->OnSpan(std::move(child));  // children end first, as in a real process
    (*exporter)->OnSpan(std::move(root));
    if (opts.interval_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(opts.interval_ms));
  }
  BatchSpanExporter::ShutdownReport report =
      (*exporter)->Shutdown(std::chrono::steady_clock::now() + std::chrono::milliseconds(opts.shutdown_ms));
  std::printf("# metrics\n%s", RenderPrometheusText(metrics).c_str());
  std::printf("# done exported=%llu dropped=%llu\n", static_cast<unsigned long long>(report.exported),
              static_cast<unsigned long long>(report.dropped));
  return 0;
}
