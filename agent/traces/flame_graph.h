// Critical paths aggregated over many traces (CRISP's per-endpoint view):
//
//   - FlameGraph, top-down: a tree of frames ("service: span name") from the entry span down,
//     each frame's value the time its spans spent on the critical path themselves (self) and
//     with their descendants (total), summed over the traces added. Only the path counts, so a
//     wide frame is time a request really waited for. Folded() writes it as flamegraph.pl,
//     speedscope and Grafana read it: `frame;frame;... value`, values in microseconds.
//   - OperationTable, bottom-up: per frame, across every stack and endpoint it appears in, its
//     own critical time, the traces whose path it is on, and the endpoints it slows down.
//
// A CLIENT span's own time on the path is the time its call spent outside the server's span:
// network and queueing (both sides' kernels and NICs, the server's accept queue), or the whole
// call when the server is not traced.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/traces/critical_path.h"
#include "agent/traces/stored_span.h"
#include "agent/traces/trace_tree.h"

namespace threadline {

// Frames ("service: span name") interned once per aggregate. A CLIENT span and a SERVER span often share a name
// ("GET /items/{id}" on both ends of a call) but not a meaning (the CLIENT span's own time is
// network + queueing), so they are two frames with the same name; client() tells them apart.
class FrameNames {
 public:
  uint32_t Intern(const StoredSpan& span);
  const std::string& Name(uint32_t id) const { return names_[id]; }
  bool client(uint32_t id) const { return client_[id]; }
  size_t size() const { return names_.size(); }

 private:
  std::string scratch_;
  std::vector<std::string> names_;
  std::vector<bool> client_;
  std::unordered_map<std::string, uint32_t> ids_;
};

class FlameGraph {
 public:
  struct Node {
    uint32_t frame = 0;  // into frames(); the root node (index 0) has none
    uint32_t parent = 0;
    uint64_t self_ns = 0;
    uint64_t total_ns = 0;  // after Finish()
    uint32_t traces = 0;    // traces whose path passes here
    uint32_t last_trace = 0;
    std::vector<uint32_t> children;
  };

  FlameGraph();
  void Add(const std::vector<StoredSpan>& spans, const TraceTree& tree, const CriticalPath& path);
  // Totals from the selves; call once after the last Add.
  void Finish();

  const std::vector<Node>& nodes() const { return nodes_; }
  const FrameNames& frames() const { return frames_; }
  size_t traces() const { return traces_; }
  uint64_t total_ns() const { return nodes_[0].total_ns; }

  // One line per stack with self time, `frame;frame;... microseconds`, sorted; frames have
  // ';' and line breaks replaced (they separate frames and lines). Stacks under 1 µs are left
  // out (they would read as 0).
  std::string Folded() const;

 private:
  uint32_t Child(uint32_t parent, uint32_t frame);

  FrameNames frames_;
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, uint32_t> child_index_;  // (parent << 32 | frame) -> node
  size_t traces_ = 0;
  std::vector<uint32_t> node_of_;  // per span of the trace being added: its graph node
};

class OperationTable {
 public:
  struct Row {
    std::string frame;
    bool client = false;        // a CLIENT span: its own time is network + queueing
    uint64_t critical_ns = 0;   // own time on critical paths, summed
    uint64_t max_ns = 0;        // the most in one trace
    uint32_t traces = 0;        // traces with it on the path
    uint32_t endpoints = 0;     // distinct endpoints (entry frames) of those traces
  };

  void Add(const std::vector<StoredSpan>& spans, const TraceTree& tree, const CriticalPath& path);
  // Largest critical time first.
  std::vector<Row> Rows() const;
  uint64_t total_ns() const { return total_ns_; }
  size_t traces() const { return traces_; }

 private:
  struct Acc {
    uint64_t critical_ns = 0;
    uint64_t max_ns = 0;
    uint32_t traces = 0;
    uint32_t last_trace = 0;
    std::vector<uint32_t> endpoints;  // sorted frame ids
  };
  FrameNames frames_;
  std::vector<Acc> acc_;
  std::vector<uint64_t> per_trace_;  // scratch: this trace's time per frame
  std::vector<uint32_t> touched_;
  uint64_t total_ns_ = 0;
  size_t traces_ = 0;
};

}  // namespace threadline
