// The critical path of a trace, after CRISP (Uber, USENIX ATC '22): the chain of work that
// decided the trace's duration. Making anything off the path faster does not make the request
// faster; making something on it faster does (until another path becomes critical).
//
// From the root's end walking back in time: the last-finishing child that ends before the
// current point is on the path; recurse into it; the current point moves to that child's
// start; repeat; the gaps between the chosen children are the parent's own time on the path.
// A child that ends after the current point overlaps a chosen sibling and is not on the path.
// Each child is clipped to its parent's window (a child that outlives its parent, typically
// clock skew or an asynchronous call, counts only up to the parent's end).
//
// Segments partition the root's window exactly: their lengths add up to the root's duration.
#pragma once

#include <cstdint>
#include <vector>

#include "agent/traces/trace_tree.h"

namespace threadline {

struct CriticalPath {
  struct Segment {
    uint32_t node;
    uint64_t start_ns;  // unix ns (skew-corrected, as TraceTree)
    uint64_t end_ns;
  };
  std::vector<Segment> segments;        // in time order
  std::vector<uint64_t> critical_ns;    // per node: its own time on the path
  std::vector<uint8_t> on_path;         // per node: 1 when the path passes through it
  uint64_t total_ns = 0;                // the root's duration

  static CriticalPath Compute(const TraceTree& tree);
};

}  // namespace threadline
