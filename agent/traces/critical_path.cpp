#include "agent/traces/critical_path.h"

#include <algorithm>

namespace threadline {

namespace {

struct Clipped {
  uint32_t node;
  uint64_t start;
  uint64_t end;
};

// One span being walked: its window and its clipped children, last-ending first.
struct Frame {
  uint32_t node;
  uint64_t window_start;
  size_t kids_begin;  // into the shared `kids` stack
  size_t kids_end;
  size_t next;        // next child to consider
  uint64_t point;     // the current point, walking back from the window's end
};

}  // namespace

CriticalPath CriticalPath::Compute(const TraceTree& tree) {
  CriticalPath cp;
  if (tree.empty()) return cp;
  const size_t n = tree.nodes.size();
  cp.critical_ns.assign(n, 0);
  cp.on_path.assign(n, 0);
  const TreeNode& root = tree.nodes[tree.root];
  cp.total_ns = root.end_ns - root.start_ns;

  std::vector<Clipped> kids;  // children of every frame on the stack, frame after frame
  std::vector<Frame> stack;
  auto enter = [&](uint32_t node, uint64_t ws, uint64_t we) {
    cp.on_path[node] = 1;
    const TreeNode& tn = tree.nodes[node];
    const size_t begin = kids.size();
    for (uint32_t k = 0; k < tn.child_count; ++k) {
      const uint32_t c = tree.children[tn.child_begin + k];
      const uint64_t cs = std::clamp(tree.nodes[c].start_ns, ws, we);
      const uint64_t ce = std::clamp(tree.nodes[c].end_ns, ws, we);
      if (ce > cs) kids.push_back({c, cs, ce});  // an empty child cannot hold the path
    }
    // Last-ending first; of two ending together the longer (it holds more of the path).
    std::sort(kids.begin() + static_cast<std::ptrdiff_t>(begin), kids.end(), [](const Clipped& a, const Clipped& b) {
      if (a.end != b.end) return a.end > b.end;
      if (a.start != b.start) return a.start < b.start;
      return a.node < b.node;
    });
    stack.push_back({node, ws, begin, kids.size(), begin, we});
  };
  // Segments are found walking back in time; reversed at the end.
  auto own = [&](uint32_t node, uint64_t from, uint64_t to) {
    if (to <= from) return;
    cp.segments.push_back({node, from, to});
    cp.critical_ns[node] += to - from;
  };

  enter(tree.root, root.start_ns, root.end_ns);
  while (!stack.empty()) {
    Frame& f = stack.back();
    bool descended = false;
    while (f.next < f.kids_end) {
      const Clipped k = kids[f.next++];
      if (k.end > f.point) continue;  // overlaps the part of the path already chosen
      own(f.node, k.end, f.point);
      f.point = k.start;
      enter(k.node, k.start, k.end);  // may reallocate `stack`: `f` is not used after this
      descended = true;
      break;
    }
    if (descended) continue;
    own(f.node, f.window_start, f.point);
    kids.resize(f.kids_begin);
    stack.pop_back();
  }
  std::reverse(cp.segments.begin(), cp.segments.end());
  return cp;
}

}  // namespace threadline
