#include "agent/traces/trace_tree.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

namespace threadline {

namespace {

uint64_t IdKey(const SpanId& id) {
  uint64_t k;
  std::memcpy(&k, id.bytes.data(), sizeof(k));
  return k;
}

// Above this much work (orphans x spans), orphans hang under the root instead of being
// placed under their enclosing span: a garbled file must not make the view quadratic.
constexpr size_t kAdoptionBudget = 20'000'000;

// Times come from files too: any uint64. Shifts saturate instead of overflowing.
uint64_t ShiftBy(uint64_t t, int64_t d) {
  if (d < 0) {
    const uint64_t m = uint64_t{0} - static_cast<uint64_t>(d);
    return m > t ? 0 : t - m;
  }
  const uint64_t p = static_cast<uint64_t>(d);
  return p > UINT64_MAX - t ? UINT64_MAX : t + p;
}

int64_t Difference(uint64_t to, uint64_t from) {
  constexpr uint64_t kMax = static_cast<uint64_t>(INT64_MAX);
  return to >= from ? static_cast<int64_t>(std::min(to - from, kMax)) : -static_cast<int64_t>(std::min(from - to, kMax));
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t out;
  if (__builtin_add_overflow(a, b, &out)) return b > 0 ? INT64_MAX : INT64_MIN + 1;
  return out;
}

}  // namespace

const char* ToString(ParentEdge e) {
  switch (e) {
    case ParentEdge::kRoot: return "root";
    case ParentEdge::kParent: return "parent";
    case ParentEdge::kAdopted: return "adopted";
    case ParentEdge::kDetached: return "detached";
  }
  return "root";
}

TraceTree TraceTree::Build(const std::vector<StoredSpan>& spans) {
  TraceTree t;
  const size_t n = spans.size();
  if (n == 0) return t;
  t.nodes.resize(n);
  std::vector<TreeNode>& nodes = t.nodes;
  for (size_t i = 0; i < n; ++i) {
    nodes[i].start_ns = spans[i].start_unix_ns;
    nodes[i].end_ns = std::max(spans[i].start_unix_ns, spans[i].end_unix_ns);
  }

  // Parent ids to indices. With duplicate span ids (the same span in two files) the first wins.
  std::vector<std::pair<uint64_t, uint32_t>> index(n);
  for (size_t i = 0; i < n; ++i) index[i] = {IdKey(spans[i].span_id), static_cast<uint32_t>(i)};
  std::sort(index.begin(), index.end());
  auto lookup = [&](const SpanId& id) -> int32_t {
    auto it = std::lower_bound(index.begin(), index.end(), std::pair<uint64_t, uint32_t>{IdKey(id), 0});
    if (it == index.end() || it->first != IdKey(id) || !(spans[it->second].span_id == id)) return -1;
    return static_cast<int32_t>(it->second);
  };
  std::vector<uint8_t> missing(n, 0);  // has a parent id that is not in the trace
  for (size_t i = 0; i < n; ++i) {
    if (!spans[i].parent_span_id.valid()) continue;
    const int32_t p = lookup(spans[i].parent_span_id);
    if (p >= 0 && static_cast<size_t>(p) != i) {
      nodes[i].parent = p;
      nodes[i].edge = ParentEdge::kParent;
    } else {
      missing[i] = 1;
    }
  }

  // Cut cycles: follow each chain of parents; meeting a span of the chain being walked means
  // a cycle, whose entry edge is cut.
  {
    std::vector<uint8_t> state(n, 0);  // 0 unvisited, 1 on the current chain, 2 done
    std::vector<uint32_t> chain;
    for (size_t i = 0; i < n; ++i) {
      if (state[i]) continue;
      chain.clear();
      int32_t j = static_cast<int32_t>(i);
      while (j >= 0 && state[j] == 0) {
        state[j] = 1;
        chain.push_back(static_cast<uint32_t>(j));
        j = nodes[j].parent;
      }
      if (j >= 0 && state[j] == 1) {
        nodes[j].parent = -1;
        missing[j] = 1;
      }
      for (uint32_t c : chain) state[c] = 2;
    }
  }

  // The root: among the top-level spans, the earliest (ties: the longest, then the first).
  std::vector<uint32_t> tops;
  for (size_t i = 0; i < n; ++i)
    if (nodes[i].parent < 0) tops.push_back(static_cast<uint32_t>(i));
  uint32_t root = tops.front();
  for (uint32_t i : tops) {
    if (nodes[i].start_ns < nodes[root].start_ns ||
        (nodes[i].start_ns == nodes[root].start_ns && nodes[i].end_ns > nodes[root].end_ns))
      root = i;
  }
  t.root = root;
  nodes[root].edge = ParentEdge::kRoot;

  // The other top-level spans hang under the deepest span enclosing them (latest start, then
  // earliest end), never under one of their own descendants; else under the root.
  auto is_descendant = [&](uint32_t c, uint32_t of) {
    for (int32_t j = static_cast<int32_t>(c), hops = 0; j >= 0 && hops <= static_cast<int32_t>(n);
         j = nodes[j].parent, ++hops)
      if (static_cast<uint32_t>(j) == of) return true;
    return false;
  };
  const bool place_by_time = (tops.size() - 1) * n <= kAdoptionBudget;
  std::vector<uint32_t> candidates;
  for (uint32_t o : tops) {
    if (o == root) continue;
    int32_t chosen = -1;
    if (place_by_time) {
      candidates.clear();
      for (size_t c = 0; c < n; ++c) {
        if (c == o || nodes[c].start_ns > nodes[o].start_ns || nodes[c].end_ns < nodes[o].end_ns) continue;
        candidates.push_back(static_cast<uint32_t>(c));
      }
      std::sort(candidates.begin(), candidates.end(), [&](uint32_t a, uint32_t b) {
        if (nodes[a].start_ns != nodes[b].start_ns) return nodes[a].start_ns > nodes[b].start_ns;
        if (nodes[a].end_ns != nodes[b].end_ns) return nodes[a].end_ns < nodes[b].end_ns;
        return a < b;
      });
      for (uint32_t c : candidates) {
        if (!is_descendant(c, o)) {
          chosen = static_cast<int32_t>(c);
          break;
        }
      }
    }
    if (chosen < 0) chosen = static_cast<int32_t>(root);  // root is never o's descendant: o is top-level
    nodes[o].parent = chosen;
    nodes[o].edge = missing[o] ? ParentEdge::kAdopted : ParentEdge::kDetached;
    if (missing[o]) ++t.adopted;
  }

  // Children lists (CSR).
  std::vector<uint32_t> counts(n, 0);
  for (size_t i = 0; i < n; ++i)
    if (nodes[i].parent >= 0) ++counts[nodes[i].parent];
  uint32_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    nodes[i].child_begin = at;
    at += counts[i];
  }
  t.children.resize(at);
  std::fill(counts.begin(), counts.end(), 0);
  for (size_t i = 0; i < n; ++i) {
    if (nodes[i].parent < 0) continue;
    TreeNode& p = nodes[nodes[i].parent];
    t.children[p.child_begin + counts[nodes[i].parent]++] = static_cast<uint32_t>(i);
    p.child_count++;
  }

  // Depth and clock-skew shifts, parents before children.
  std::vector<int64_t> acc(n, 0);  // shift accumulated from the ancestors
  std::vector<uint32_t> stack{root};
  while (!stack.empty()) {
    const uint32_t p = stack.back();
    stack.pop_back();
    const TreeNode& pn = nodes[p];
    for (uint32_t k = 0; k < pn.child_count; ++k) {
      const uint32_t c = t.children[pn.child_begin + k];
      TreeNode& cn = nodes[c];
      cn.depth = pn.depth + 1;
      int64_t shift = acc[p];
      uint64_t s = ShiftBy(spans[c].start_unix_ns, shift);
      uint64_t e = std::max(s, ShiftBy(spans[c].end_unix_ns, shift));
      if (cn.edge == ParentEdge::kParent && spans[p].kind == SpanKind::kClient &&
          spans[c].kind == SpanKind::kServer && (s < pn.start_ns || e > pn.end_ns)) {
        const uint64_t dur = e - s, pdur = pn.end_ns - pn.start_ns;
        const uint64_t want = dur <= pdur ? pn.start_ns + (pdur - dur) / 2 : pn.start_ns;
        const int64_t delta = Difference(want, s);
        cn.shift_ns = delta;
        shift = SaturatingAdd(shift, delta);
        s = want;
        e = want + std::min(dur, UINT64_MAX - want);
        ++t.shifted;
      }
      acc[c] = shift;
      cn.start_ns = s;
      cn.end_ns = e;
      stack.push_back(c);
    }
  }

  // Children by start time (after the shifts), self time, network gaps.
  for (size_t i = 0; i < n; ++i) {
    TreeNode& node = nodes[i];
    auto first = t.children.begin() + node.child_begin;
    auto last = first + node.child_count;
    std::sort(first, last, [&](uint32_t a, uint32_t b) {
      if (nodes[a].start_ns != nodes[b].start_ns) return nodes[a].start_ns < nodes[b].start_ns;
      return a < b;
    });
    uint64_t covered = 0, cursor = node.start_ns;
    uint64_t first_server = UINT64_MAX, last_server_end = 0;
    for (auto it = first; it != last; ++it) {
      const TreeNode& c = nodes[*it];
      const uint64_t cs = std::clamp(c.start_ns, node.start_ns, node.end_ns);
      const uint64_t ce = std::clamp(c.end_ns, node.start_ns, node.end_ns);
      const uint64_t from = std::max(cs, cursor);
      if (ce > from) {
        covered += ce - from;
        cursor = ce;
      }
      if (spans[i].kind == SpanKind::kClient && spans[*it].kind == SpanKind::kServer &&
          c.edge == ParentEdge::kParent) {
        node.has_server_child = true;
        first_server = std::min(first_server, cs);
        last_server_end = std::max(last_server_end, ce);
      }
    }
    node.self_ns = (node.end_ns - node.start_ns) - covered;
    if (node.has_server_child) {
      node.network_before_ns = first_server - node.start_ns;
      node.network_after_ns = node.end_ns - last_server_end;
    }
  }
  return t;
}

}  // namespace threadline
