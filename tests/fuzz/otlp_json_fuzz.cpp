// libFuzzer target for what `threadline view` does with a file: OTLP JSON read back
// (agent/traces/otlp_json_reader), spans grouped by trace, each trace's tree, critical path and
// the aggregates. Files come from anywhere (another tool, a truncated copy, a hostile upload),
// so any input must give results, never a crash or a hang, and the critical path must keep its
// promise: its segments partition the root span's window exactly.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string_view>
#include <vector>

#include "agent/traces/critical_path.h"
#include "agent/traces/flame_graph.h"
#include "agent/traces/otlp_json_reader.h"
#include "agent/traces/trace_tree.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace threadline;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::map<std::array<uint8_t, 16>, std::vector<StoredSpan>> traces;
  OtlpJsonReadStats stats;
  ReadOtlpJson(text, "fuzz.json", [&](Span s) { traces[s.trace_id.bytes].push_back(StoredSpan::From(s)); }, stats);
  FlameGraph graph;
  OperationTable table;
  for (const auto& [id, spans] : traces) {
    const TraceTree tree = TraceTree::Build(spans);
    const CriticalPath path = CriticalPath::Compute(tree);
    uint64_t covered = 0, at = tree.nodes[tree.root].start_ns;
    for (const auto& seg : path.segments) {
      if (seg.start_ns != at || seg.end_ns <= seg.start_ns || seg.node >= spans.size()) __builtin_trap();
      covered += seg.end_ns - seg.start_ns;
      at = seg.end_ns;
    }
    if (covered != path.total_ns) __builtin_trap();
    graph.Add(spans, tree, path);
    table.Add(spans, tree, path);
  }
  graph.Finish();
  (void)graph.Folded();
  (void)table.Rows();
  return 0;
}
