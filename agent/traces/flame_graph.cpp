#include "agent/traces/flame_graph.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

namespace threadline {

uint32_t FrameNames::Intern(const StoredSpan& span) {
  const bool client = span.kind == SpanKind::kClient;
  scratch_.assign(span.service());
  scratch_ += ": ";
  scratch_ += span.name.empty() ? std::string_view("(unnamed)") : std::string_view(span.name);
  scratch_ += client ? '\x01' : '\x02';  // the kind, in the key only
  auto [it, inserted] = ids_.try_emplace(scratch_, static_cast<uint32_t>(names_.size()));
  if (inserted) {
    names_.push_back(scratch_.substr(0, scratch_.size() - 1));
    client_.push_back(client);
  }
  return it->second;
}

FlameGraph::FlameGraph() { nodes_.emplace_back(); }

uint32_t FlameGraph::Child(uint32_t parent, uint32_t frame) {
  const uint64_t key = (static_cast<uint64_t>(parent) << 32) | frame;
  auto [it, inserted] = child_index_.try_emplace(key, static_cast<uint32_t>(nodes_.size()));
  if (inserted) {
    Node node;
    node.frame = frame;
    node.parent = parent;
    nodes_.push_back(std::move(node));
    nodes_[parent].children.push_back(it->second);
  }
  return it->second;
}

void FlameGraph::Add(const std::vector<StoredSpan>& spans, const TraceTree& tree, const CriticalPath& path) {
  if (tree.empty()) return;
  const uint32_t trace_no = static_cast<uint32_t>(++traces_);
  node_of_.assign(spans.size(), 0);
  // Parents before children: the path's nodes form a subtree under the root, walked from it.
  std::vector<uint32_t> stack{tree.root};
  node_of_[tree.root] = Child(0, frames_.Intern(spans[tree.root]));
  while (!stack.empty()) {
    const uint32_t s = stack.back();
    stack.pop_back();
    Node& g = nodes_[node_of_[s]];
    g.self_ns += path.critical_ns[s];
    if (g.last_trace != trace_no) {
      g.last_trace = trace_no;
      ++g.traces;
    }
    const TreeNode& tn = tree.nodes[s];
    for (uint32_t k = 0; k < tn.child_count; ++k) {
      const uint32_t c = tree.children[tn.child_begin + k];
      if (!path.on_path[c]) continue;
      node_of_[c] = Child(node_of_[s], frames_.Intern(spans[c]));
      stack.push_back(c);
    }
  }
  nodes_[0].traces = static_cast<uint32_t>(traces_);
}

void FlameGraph::Finish() {
  // Children always come after their parent in nodes_: one backward pass sums the totals.
  for (auto& n : nodes_) n.total_ns = n.self_ns;
  for (size_t i = nodes_.size(); i-- > 1;) nodes_[nodes_[i].parent].total_ns += nodes_[i].total_ns;
  for (auto& n : nodes_)
    std::sort(n.children.begin(), n.children.end(),
              [&](uint32_t a, uint32_t b) { return nodes_[a].total_ns > nodes_[b].total_ns; });
}

std::string FlameGraph::Folded() const {
  auto clean = [](const std::string& frame) {
    std::string out = frame;
    for (char& c : out)
      if (c == ';') c = ':';
      else if (c == '\n' || c == '\r') c = ' ';
    return out;
  };
  std::vector<std::string> lines;
  std::vector<uint32_t> chain;
  for (size_t i = 1; i < nodes_.size(); ++i) {
    const uint64_t us = (nodes_[i].self_ns + 500) / 1000;
    if (us == 0) continue;
    chain.clear();
    for (uint32_t j = static_cast<uint32_t>(i); j != 0; j = nodes_[j].parent) chain.push_back(j);
    std::string line;
    for (size_t k = chain.size(); k-- > 0;) {
      line += clean(frames_.Name(nodes_[chain[k]].frame));
      if (k) line += ';';
    }
    char value[32];
    std::snprintf(value, sizeof(value), " %" PRIu64, us);
    line += value;
    lines.push_back(std::move(line));
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

void OperationTable::Add(const std::vector<StoredSpan>& spans, const TraceTree& tree, const CriticalPath& path) {
  if (tree.empty()) return;
  const uint32_t trace_no = static_cast<uint32_t>(++traces_);
  total_ns_ += path.total_ns;
  const uint32_t endpoint = frames_.Intern(spans[tree.root]);
  touched_.clear();
  for (size_t i = 0; i < spans.size(); ++i) {
    if (!path.on_path[i] || path.critical_ns[i] == 0) continue;
    const uint32_t f = frames_.Intern(spans[i]);
    if (f >= acc_.size()) {
      acc_.resize(f + 1);
      per_trace_.resize(f + 1, 0);
    }
    if (per_trace_[f] == 0) touched_.push_back(f);
    per_trace_[f] += path.critical_ns[i];
  }
  if (endpoint >= acc_.size()) {
    acc_.resize(endpoint + 1);
    per_trace_.resize(endpoint + 1, 0);
  }
  for (uint32_t f : touched_) {
    Acc& a = acc_[f];
    a.critical_ns += per_trace_[f];
    a.max_ns = std::max(a.max_ns, per_trace_[f]);
    if (a.last_trace != trace_no) {
      a.last_trace = trace_no;
      ++a.traces;
    }
    auto pos = std::lower_bound(a.endpoints.begin(), a.endpoints.end(), endpoint);
    if (pos == a.endpoints.end() || *pos != endpoint) a.endpoints.insert(pos, endpoint);
    per_trace_[f] = 0;
  }
}

std::vector<OperationTable::Row> OperationTable::Rows() const {
  std::vector<Row> rows;
  for (size_t f = 0; f < acc_.size(); ++f) {
    if (acc_[f].traces == 0) continue;
    rows.push_back({frames_.Name(static_cast<uint32_t>(f)), frames_.client(static_cast<uint32_t>(f)),
                    acc_[f].critical_ns, acc_[f].max_ns, acc_[f].traces,
                    static_cast<uint32_t>(acc_[f].endpoints.size())});
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    if (a.critical_ns != b.critical_ns) return a.critical_ns > b.critical_ns;
    return a.frame < b.frame;
  });
  return rows;
}

}  // namespace threadline
