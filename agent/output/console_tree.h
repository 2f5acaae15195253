// --output=console: finished spans printed as one indented tree per trace, for people watching
// a terminal. A trace's spans arrive one by one (and from several processes), so they are held
// until the trace has gone quiet, then printed together:
//
//   trace 4bf92f3577b34da6a3ce929d0e0e4736 (3 spans)
//     GET /users [SERVER] frontend 12.3ms UNSET http.response.status_code=200 url.path=/users
//       GET [CLIENT] frontend 8.1ms UNSET http.response.status_code=200 url.path=/api
//         GET /api [SERVER] backend 7.9ms UNSET http.response.status_code=200 url.path=/api
//     GET /late [SERVER] backend 1.2ms ERROR (parent 00f067aa0ba902b7 not seen)
//
// Roots (no parent) and orphans (parent not among the held spans, e.g. it came from another
// host or was printed already) start the tree, ordered by start time; children are ordered by
// start time under their parent.
//
// When a trace is due: `quiet` after its last span arrived, or `root_quiet` after its last span
// arrived if its root span (no parent) has arrived, since a root ends last. Held memory is
// bounded (max_traces, max_spans): past a bound the trace that has waited longest is printed
// early, and counted (threadline_console_traces_printed_total{reason="max_traces"|"max_spans"}).
//
// Due traces are printed from OnSpan() and Poll(); call Poll() periodically (spans may stop
// arriving). Flush() prints everything held: it is meant for shutdown, not for a timer.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/spans/span.h"

namespace threadline {

struct ConsoleTreeOptions {
  uint64_t quiet_ns = 1'000'000'000;    // since the trace's last span, without a root
  uint64_t root_quiet_ns = 200'000'000;  // since the trace's last span, once its root arrived
  size_t max_traces = 1024;
  size_t max_spans = 16384;
};

class ConsoleTreeSink : public SpanSink {
 public:
  // Monotonic nanoseconds; tests pass a fake.
  using NowFn = std::function<uint64_t()>;
  static uint64_t SteadyNowNs();

  explicit ConsoleTreeSink(std::FILE* out, ConsoleTreeOptions options = {},
                           NowFn now = &ConsoleTreeSink::SteadyNowNs,
                           MetricsRegistry& metrics = MetricsRegistry::Global());

  void OnSpan(Span&& span) override;
  // Prints every trace whose quiet window has passed.
  void Poll();
  // Prints everything held.
  void Flush() override;

  size_t held_traces() const { return traces_.size(); }
  size_t held_spans() const { return held_spans_; }

  // The lines for one trace's spans (all with the same trace id), as printed; exposed for
  // tests and for other outputs that want the same rendering.
  static std::string RenderTrace(const std::vector<Span>& spans);
  // "12.3ms", "850.0µs", "1.25s".
  static std::string FormatDuration(uint64_t ns);

 private:
  struct HeldTrace {
    TraceId trace_id;
    std::vector<Span> spans;
    uint64_t last_arrival_ns = 0;
    bool has_root = false;
  };
  struct TraceIdHash {
    size_t operator()(const TraceId& id) const;
  };
  using TraceList = std::list<HeldTrace>;  // ordered by last arrival, oldest first

  void PrintAndErase(TraceList::iterator it, Counter& reason);
  void EnforceBounds();

  std::FILE* out_;
  ConsoleTreeOptions options_;
  NowFn now_;
  TraceList traces_;
  std::unordered_map<TraceId, TraceList::iterator, TraceIdHash> index_;
  size_t held_spans_ = 0;
  Counter& printed_quiet_;
  Counter& printed_max_traces_;
  Counter& printed_max_spans_;
  Counter& printed_flush_;
};

}  // namespace threadline
