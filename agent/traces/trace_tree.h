// One trace's spans as a tree the views can walk: who is whose parent (including where the
// parent is missing), times corrected for clock skew between a CLIENT span and its SERVER
// child, each span's self time, and the network + queueing gap around each remote call.
//
// Parents, in order:
//   kParent   the parent span id is in the trace;
//   kAdopted  the parent span id is not (a middle span is missing: its service is not traced,
//             or its part of the trace was evicted or is on another node's file): the span
//             hangs under the deepest span that encloses it in time, the best guess for
//             where the missing span ran;
//   kDetached another top-level span that nothing encloses, hung under the root;
//   kRoot     the entry span (TraceStore::PickRoot's rule: no parent in the trace, earliest).
// Cycles (garbled input) are cut: their spans count as missing their parent.
//
// Clock skew: a SERVER span measured on another host can start before its CLIENT parent or
// end after it. When it does not fit, its subtree is shifted to sit in the middle of the
// CLIENT span (equal network time before and after; the subtree's shape is kept), or, if it
// is longer than the CLIENT span, to start with it (the critical path then clips its end).
// TreeNode::shift_ns says by how much. Other edges (within a process: one clock) are only
// clipped, by the critical path.
//
// Pure function of the spans; no allocation beyond the result (plus a scratch index).
#pragma once

#include <cstdint>
#include <vector>

#include "agent/traces/stored_span.h"

namespace threadline {

enum class ParentEdge : uint8_t { kRoot, kParent, kAdopted, kDetached };
const char* ToString(ParentEdge e);  // "root", "parent", "adopted", "detached"

struct TreeNode {
  int32_t parent = -1;      // node index (== span index); -1 for the root
  ParentEdge edge = ParentEdge::kRoot;
  uint32_t depth = 0;
  uint32_t child_begin = 0;  // children: TraceTree::children[child_begin, child_begin+child_count)
  uint32_t child_count = 0;
  uint64_t start_ns = 0;     // unix ns after the skew shift
  uint64_t end_ns = 0;       // >= start_ns
  int64_t shift_ns = 0;      // skew correction applied to this span (and its subtree)
  uint64_t self_ns = 0;      // time inside the span not covered by any child (children clipped to it)
  // For a CLIENT span with SERVER children: the time before the first one starts and after
  // the last one ends (network + queueing), else 0.
  uint64_t network_before_ns = 0;
  uint64_t network_after_ns = 0;
  bool has_server_child = false;
};

struct TraceTree {
  std::vector<TreeNode> nodes;      // nodes[i] is spans[i]
  std::vector<uint32_t> children;   // per node, sorted by start time
  uint32_t root = 0;
  size_t adopted = 0;               // spans whose parent is missing
  size_t shifted = 0;               // SERVER spans moved for clock skew

  static TraceTree Build(const std::vector<StoredSpan>& spans);
  bool empty() const { return nodes.empty(); }
  uint64_t duration_ns() const { return nodes.empty() ? 0 : nodes[root].end_ns - nodes[root].start_ns; }
};

}  // namespace threadline
