#include "agent/app/view_command.h"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/traces/otlp_json_reader.h"
#include "agent/traces/trace_store.h"
#include "agent/ui/trace_api.h"
#include "agent/ui/ui_server.h"

namespace threadline {

namespace {

struct SpanKey {
  TraceId trace;
  SpanId span;
  bool operator<(const SpanKey& o) const {
    return std::tie(trace.bytes, span.bytes) < std::tie(o.trace.bytes, o.span.bytes);
  }
};

}  // namespace

int RunViewCommand(int argc, char** argv, const std::atomic<bool>& stop) {
  std::vector<std::string> files;
  std::string address = kDefaultUiAddress;
  bool folded = false;
  std::string service, operation;
  double slowest = 100;
  size_t max_traces = 1'000'000;

  CLI::App app{"threadline view: the web view of traces read from OTLP JSON files (one "
               "ExportTraceServiceRequest per line: `threadline --output json`, the OpenTelemetry "
               "Collector's file exporter). Files of several nodes are merged; a span present twice is "
               "kept once. Needs no privileges.",
               "threadline view"};
  app.add_option("files", files, "OTLP JSON files")->required();
  app.add_option("--ui-address", address, "Serve the view here (default 127.0.0.1:9465; port 0: any free port)");
  app.add_flag("--folded", folded,
               "Print the critical paths aggregated per endpoint as folded stacks (`frame;frame;... "
               "microseconds`, frames `service: span name`) for flamegraph.pl, speedscope or Grafana, and exit");
  app.add_option("--service", service, "--folded: only the endpoints (entry spans) of this service");
  app.add_option("--operation", operation, "--folded: only the endpoints with this entry span name");
  app.add_option("--slowest", slowest, "--folded: only the slowest P percent of each selection's traces")
      ->check(CLI::Range(0.001, 100.0));
  app.add_option("--max-traces", max_traces, "Traces kept at most (the oldest go first)")->check(CLI::PositiveNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  TraceStoreOptions store_options;
  store_options.max_traces = max_traces;
  store_options.max_bytes = size_t{64} << 30;  // the files' size bounds it; the count bound stays
  TraceStore store(store_options, MetricsRegistry::Global(), &TraceStore::SteadyNowNs);
  std::set<SpanKey> seen;
  size_t duplicates = 0;
  OtlpJsonReadStats stats;
  for (const auto& path : files) {
    const auto read = ReadOtlpJsonFile(path,
                                       [&](Span s) {
                                         if (!seen.insert({s.trace_id, s.span_id}).second) {
                                           ++duplicates;
                                           return;
                                         }
                                         store.Add(s);
                                       },
                                       stats);
    if (!read.ok()) {
      spdlog::error("{}", read.error().message);
      return 1;
    }
  }
  store.CompleteAll();
  for (const auto& e : stats.errors) spdlog::warn("{}", e);
  const size_t traces = store.Take().traces.size();
  spdlog::info("read {} spans in {} traces from {} file(s) ({} requests; skipped: {} bad lines, {} spans "
               "without ids, {} duplicate spans)",
               stats.spans - duplicates, traces, files.size(), stats.requests, stats.bad_lines, stats.bad_spans,
               duplicates);
  if (traces == 0) {
    spdlog::error("no spans in {}: is it OTLP JSON (one ExportTraceServiceRequest per line)?",
                  files.size() == 1 ? files.front() : std::to_string(files.size()) + " files");
    return 1;
  }

  // The page's header names the files; the log above has their full paths.
  std::string source = "files:";
  for (const auto& f : files) source += " " + f.substr(f.rfind('/') + 1);
  TraceApi api(store, source);
  if (folded) {
    TraceQuery q;
    q.endpoint_service = service;
    q.endpoint_operation = operation;
    q.slowest_percent = slowest;
    const std::string out = api.FlameFolded(q);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }

  auto ui = UiServer::Start(address, store, source);
  if (!ui.ok()) {
    spdlog::error("cannot serve the view: {}{}", ui.error().message,
                  ui.error().code == EADDRINUSE ? " (an agent may be serving its own view there: --ui-address "
                                                  "127.0.0.1:0 picks a free port)"
                                                : "");
    return 1;
  }
  spdlog::info("threadline view: {} traces; open {} (Ctrl-C to stop)", traces, (*ui)->url());
  while (!stop.load(std::memory_order_relaxed)) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  (*ui)->Stop();
  return 0;
}

}  // namespace threadline
