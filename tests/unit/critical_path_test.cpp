// The critical path (CRISP) and the trace tree under it, on hand-built traces: sequential and
// parallel children, a child outliving its parent, overlapping siblings, a SERVER span that
// starts before its CLIENT parent (clock skew), a missing middle span, parent cycles, and a
// trace deep enough to overflow a recursive walk. Times are microseconds from a fixed origin.
#include "agent/traces/critical_path.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/traces/flame_graph.h"
#include "agent/traces/trace_tree.h"

namespace threadline {
namespace {

constexpr uint64_t kUs = 1000;
constexpr uint64_t kT0 = 1'700'000'000'000'000'000ULL;

std::shared_ptr<const Resource> Service(const std::string& name) {
  return std::make_shared<const Resource>(Resource{.attributes = {{"service.name", name}}});
}

// A trace built span by span; ids are small numbers, 0 = none.
class TraceBuilder {
 public:
  // Adds a span and returns its index.
  size_t Add(uint8_t id, uint8_t parent, const std::string& service, const std::string& name, int64_t start_us,
             int64_t end_us, SpanKind kind = SpanKind::kInternal) {
    StoredSpan s;
    s.span_id.bytes[7] = id;
    s.span_id.bytes[0] = 0x5a;
    if (parent) {
      s.parent_span_id.bytes[7] = parent;
      s.parent_span_id.bytes[0] = 0x5a;
    }
    s.start_unix_ns = kT0 + static_cast<uint64_t>(start_us * 1000);
    s.end_unix_ns = kT0 + static_cast<uint64_t>(end_us * 1000);
    s.kind = kind;
    s.name = name;
    s.resource = Service(service);
    spans.push_back(std::move(s));
    index[id] = spans.size() - 1;
    return spans.size() - 1;
  }
  size_t At(uint8_t id) const { return index.at(id); }

  std::vector<StoredSpan> spans;
  std::map<uint8_t, size_t> index;
};

struct Analysed {
  TraceTree tree;
  CriticalPath path;
};

Analysed Analyse(const TraceBuilder& b) {
  Analysed a{TraceTree::Build(b.spans), {}};
  a.path = CriticalPath::Compute(a.tree);
  return a;
}

// The path's segments partition the root's window: contiguous, in order, adding up.
void ExpectPartition(const Analysed& a) {
  const TreeNode& root = a.tree.nodes[a.tree.root];
  ASSERT_FALSE(a.path.segments.empty());
  EXPECT_EQ(a.path.segments.front().start_ns, root.start_ns);
  EXPECT_EQ(a.path.segments.back().end_ns, root.end_ns);
  uint64_t sum = 0;
  for (size_t i = 0; i < a.path.segments.size(); ++i) {
    const auto& s = a.path.segments[i];
    EXPECT_LT(s.start_ns, s.end_ns);
    if (i) {
      EXPECT_EQ(a.path.segments[i - 1].end_ns, s.start_ns) << "segment " << i;
    }
    sum += s.end_ns - s.start_ns;
  }
  EXPECT_EQ(sum, a.path.total_ns);
  uint64_t per_node = 0;
  for (uint64_t c : a.path.critical_ns) per_node += c;
  EXPECT_EQ(per_node, a.path.total_ns);
}

TEST(CriticalPathTest, SequentialChildrenAreAllOnThePath) {
  TraceBuilder b;
  b.Add(1, 0, "api", "GET /order", 0, 100, SpanKind::kServer);
  b.Add(2, 1, "api", "SELECT", 10, 30, SpanKind::kClient);
  b.Add(3, 1, "api", "GET /price", 40, 90, SpanKind::kClient);
  const Analysed a = Analyse(b);
  ExpectPartition(a);
  EXPECT_EQ(a.path.total_ns, 100 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(1)], 30 * kUs);  // 0-10, 30-40, 90-100
  EXPECT_EQ(a.path.critical_ns[b.At(2)], 20 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(3)], 50 * kUs);
  // In time order: root, SELECT, root, GET /price, root.
  std::vector<uint32_t> order;
  for (const auto& s : a.path.segments) order.push_back(s.node);
  EXPECT_THAT(order, ::testing::ElementsAre(0, 1, 0, 2, 0));
  // Self time outside the path view: the root's own time is the same 30 µs here.
  EXPECT_EQ(a.tree.nodes[b.At(1)].self_ns, 30 * kUs);
}

TEST(CriticalPathTest, OfParallelChildrenOnlyTheLastToFinishCounts) {
  TraceBuilder b;
  b.Add(1, 0, "api", "GET /feed", 0, 100, SpanKind::kServer);
  b.Add(2, 1, "api", "GET /posts", 10, 80, SpanKind::kClient);   // ends last
  b.Add(3, 1, "api", "GET /ads", 20, 60, SpanKind::kClient);     // in parallel, done earlier
  const Analysed a = Analyse(b);
  ExpectPartition(a);
  EXPECT_EQ(a.path.critical_ns[b.At(1)], 30 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(2)], 70 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(3)], 0u);
  EXPECT_FALSE(a.path.on_path[b.At(3)]);
  EXPECT_TRUE(a.path.on_path[b.At(2)]);
  // Self time counts the union of the children: 0-10 and 80-100.
  EXPECT_EQ(a.tree.nodes[b.At(1)].self_ns, 30 * kUs);
}

TEST(CriticalPathTest, ChildOutlivingItsParentIsClippedToTheParentsEnd) {
  TraceBuilder b;
  b.Add(1, 0, "api", "POST /pay", 0, 100, SpanKind::kServer);
  b.Add(2, 1, "api", "publish", 50, 150, SpanKind::kProducer);  // fire-and-forget, ends after the reply
  b.Add(3, 2, "api", "flush", 120, 140);                          // entirely after the parent's end
  const Analysed a = Analyse(b);
  ExpectPartition(a);
  EXPECT_EQ(a.path.total_ns, 100 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(1)], 50 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(2)], 50 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(3)], 0u);
  EXPECT_FALSE(a.path.on_path[b.At(3)]);
  EXPECT_EQ(a.path.segments.back().end_ns, kT0 + 100 * kUs);
}

TEST(CriticalPathTest, OverlappingSiblingLosesToTheOneFinishingLater) {
  TraceBuilder b;
  b.Add(1, 0, "api", "GET /a", 0, 100, SpanKind::kServer);
  b.Add(2, 1, "api", "first", 10, 60, SpanKind::kClient);   // overlaps the next one by 10
  b.Add(3, 1, "api", "second", 50, 90, SpanKind::kClient);
  b.Add(4, 1, "api", "early", 2, 8, SpanKind::kClient);     // ends before `second` starts: on the path
  const Analysed a = Analyse(b);
  ExpectPartition(a);
  EXPECT_EQ(a.path.critical_ns[b.At(3)], 40 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(2)], 0u);
  EXPECT_FALSE(a.path.on_path[b.At(2)]);
  EXPECT_EQ(a.path.critical_ns[b.At(4)], 6 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(1)], 54 * kUs);  // 0-2, 8-50, 90-100
  // Two siblings ending together: the longer one holds the path.
  TraceBuilder tie;
  tie.Add(1, 0, "api", "GET /b", 0, 100, SpanKind::kServer);
  tie.Add(2, 1, "api", "short", 60, 90, SpanKind::kClient);
  tie.Add(3, 1, "api", "long", 20, 90, SpanKind::kClient);
  const Analysed t = Analyse(tie);
  ExpectPartition(t);
  EXPECT_EQ(t.path.critical_ns[tie.At(3)], 70 * kUs);
  EXPECT_EQ(t.path.critical_ns[tie.At(2)], 0u);
}

TEST(CriticalPathTest, ServerChildStartingBeforeItsClientIsShiftedInsideIt) {
  // Node B's clock is 20 µs behind node A's: its SERVER span seems to start before the CLIENT
  // span that sent the request.
  TraceBuilder b;
  b.Add(1, 0, "frontend", "GET /checkout", 0, 100, SpanKind::kServer);
  b.Add(2, 1, "frontend", "GET", 20, 80, SpanKind::kClient);
  b.Add(3, 2, "payments", "GET /charge", 10, 50, SpanKind::kServer);
  b.Add(4, 3, "payments", "SELECT", 15, 45, SpanKind::kClient);  // on B's clock too: moves along
  const Analysed a = Analyse(b);
  ExpectPartition(a);
  const TreeNode& server = a.tree.nodes[b.At(3)];
  EXPECT_EQ(a.tree.shifted, 1u);
  EXPECT_EQ(server.shift_ns, 20 * static_cast<int64_t>(kUs));  // centred: 10 µs of network each way
  EXPECT_EQ(server.start_ns, kT0 + 30 * kUs);
  EXPECT_EQ(server.end_ns, kT0 + 70 * kUs);
  EXPECT_EQ(a.tree.nodes[b.At(4)].start_ns, kT0 + 35 * kUs);  // the subtree keeps its shape
  const TreeNode& client = a.tree.nodes[b.At(2)];
  EXPECT_TRUE(client.has_server_child);
  EXPECT_EQ(client.network_before_ns, 10 * kUs);
  EXPECT_EQ(client.network_after_ns, 10 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(2)], 20 * kUs);  // network + queueing
  EXPECT_EQ(a.path.critical_ns[b.At(3)], 10 * kUs);  // 30-35, 65-70
  EXPECT_EQ(a.path.critical_ns[b.At(4)], 30 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(1)], 40 * kUs);

  // A SERVER span longer than its CLIENT (the clocks also run at different rates): it starts
  // with the CLIENT span and the path clips its end.
  TraceBuilder longer;
  longer.Add(1, 0, "frontend", "GET /x", 0, 100, SpanKind::kServer);
  longer.Add(2, 1, "frontend", "GET", 20, 80, SpanKind::kClient);
  longer.Add(3, 2, "backend", "GET /x", 0, 100, SpanKind::kServer);
  const Analysed l = Analyse(longer);
  ExpectPartition(l);
  EXPECT_EQ(l.tree.nodes[longer.At(3)].start_ns, kT0 + 20 * kUs);
  EXPECT_EQ(l.path.critical_ns[longer.At(3)], 60 * kUs);
  EXPECT_EQ(l.path.critical_ns[longer.At(2)], 0u);

  // Within one process (one clock) a child is never moved, only clipped.
  TraceBuilder same;
  same.Add(1, 0, "api", "GET /y", 10, 100, SpanKind::kServer);
  same.Add(2, 1, "api", "SELECT", 5, 50, SpanKind::kClient);
  const Analysed s = Analyse(same);
  ExpectPartition(s);
  EXPECT_EQ(s.tree.shifted, 0u);
  EXPECT_EQ(s.path.critical_ns[same.At(2)], 40 * kUs);  // clipped to start at 10
}

TEST(CriticalPathTest, MissingMiddleSpanHangsTheOrphanUnderTheDeepestEnclosingSpan) {
  // frontend -> (orders: not traced) -> inventory. The orders SERVER span (id 9) is missing;
  // its CLIENT span to inventory names it as parent.
  TraceBuilder b;
  b.Add(1, 0, "frontend", "GET /cart", 0, 100, SpanKind::kServer);
  b.Add(2, 1, "frontend", "GET /orders", 10, 90, SpanKind::kClient);
  b.Add(3, 9, "orders", "GET /stock", 30, 70, SpanKind::kClient);
  b.Add(4, 3, "inventory", "GET /stock", 35, 65, SpanKind::kServer);
  const Analysed a = Analyse(b);
  ExpectPartition(a);
  EXPECT_EQ(a.tree.root, b.At(1));
  EXPECT_EQ(a.tree.adopted, 1u);
  const TreeNode& orphan = a.tree.nodes[b.At(3)];
  EXPECT_EQ(orphan.edge, ParentEdge::kAdopted);
  EXPECT_EQ(orphan.parent, static_cast<int32_t>(b.At(2)));  // not the root: the client span is deeper
  EXPECT_EQ(orphan.depth, 2u);
  EXPECT_EQ(a.tree.nodes[b.At(4)].depth, 3u);
  EXPECT_EQ(a.path.critical_ns[b.At(1)], 20 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(2)], 40 * kUs);  // the missing service's time lands here
  EXPECT_EQ(a.path.critical_ns[b.At(3)], 10 * kUs);
  EXPECT_EQ(a.path.critical_ns[b.At(4)], 30 * kUs);
  // The CLIENT span's SERVER child is missing: no network split is claimed for it.
  EXPECT_FALSE(a.tree.nodes[b.At(2)].has_server_child);
}

TEST(CriticalPathTest, RootIsTheEarliestTopLevelSpanAndOthersAreDetachedUnderIt) {
  // The upstream caller is on another host: both spans only name a parent not in the trace
  // (README "What you see": curl's CLIENT span and the server's SERVER span).
  TraceBuilder b;
  b.Add(1, 7, "curl", "GET /items/{id}", 0, 65, SpanKind::kClient);
  b.Add(2, 7, "http.server", "GET /items/{id}", 20, 47, SpanKind::kServer);
  b.Add(3, 0, "cron", "tick", 70, 80);  // a second root, outside the first one's time
  const Analysed a = Analyse(b);
  ExpectPartition(a);
  EXPECT_EQ(a.tree.root, b.At(1));
  EXPECT_EQ(a.tree.nodes[b.At(2)].edge, ParentEdge::kAdopted);
  EXPECT_EQ(a.tree.nodes[b.At(2)].parent, static_cast<int32_t>(b.At(1)));
  EXPECT_EQ(a.tree.nodes[b.At(3)].edge, ParentEdge::kDetached);
  EXPECT_EQ(a.tree.nodes[b.At(3)].parent, static_cast<int32_t>(b.At(1)));
  EXPECT_EQ(a.path.critical_ns[b.At(3)], 0u);  // clipped away: after the root ended
}

TEST(CriticalPathTest, ParentCyclesAreCutInsteadOfLoopingForever) {
  TraceBuilder b;
  b.Add(1, 0, "api", "root", 0, 100);
  b.Add(2, 3, "api", "a", 10, 50);
  b.Add(3, 2, "api", "b", 20, 40);
  b.Add(4, 4, "api", "self", 60, 70);  // its own parent
  const Analysed a = Analyse(b);
  ExpectPartition(a);
  EXPECT_EQ(a.tree.root, b.At(1));
  for (size_t i = 0; i < b.spans.size(); ++i) {
    // Every span reaches the root.
    int32_t j = static_cast<int32_t>(i);
    size_t hops = 0;
    while (a.tree.nodes[j].parent >= 0 && hops++ < b.spans.size()) j = a.tree.nodes[j].parent;
    EXPECT_EQ(static_cast<uint32_t>(j), a.tree.root) << "span " << i;
  }
}

TEST(CriticalPathTest, DeepChainDoesNotRecurse) {
  // 200,000 nested spans (a garbled or hostile file): no stack overflow, linear time.
  TraceBuilder b;
  const int kDepth = 200'000;
  b.spans.reserve(kDepth);
  for (int i = 0; i < kDepth; ++i) {
    StoredSpan s;
    s.span_id.bytes[0] = 1;
    std::memcpy(s.span_id.bytes.data() + 4, &i, 4);
    if (i) {
      const int p = i - 1;
      s.parent_span_id.bytes[0] = 1;
      std::memcpy(s.parent_span_id.bytes.data() + 4, &p, 4);
    }
    s.start_unix_ns = kT0 + static_cast<uint64_t>(i);
    s.end_unix_ns = kT0 + 2 * static_cast<uint64_t>(kDepth) - static_cast<uint64_t>(i);
    s.name = "f";
    b.spans.push_back(std::move(s));
  }
  const Analysed a = Analyse(b);
  ExpectPartition(a);
  EXPECT_EQ(a.tree.nodes.back().depth, static_cast<uint32_t>(kDepth - 1));
  FlameGraph g;
  g.Add(b.spans, a.tree, a.path);
  g.Finish();
  EXPECT_EQ(g.total_ns(), a.path.total_ns);
}

TEST(FlameGraphTest, AggregatesCriticalTimePerStackAndFoldsIt) {
  FlameGraph g;
  OperationTable table;
  for (int slow = 0; slow < 2; ++slow) {
    TraceBuilder b;
    b.Add(1, 0, "frontend", "GET /cart", 0, 100, SpanKind::kServer);
    b.Add(2, 1, "frontend", "GET", 10, 90, SpanKind::kClient);
    b.Add(3, 2, "cart", "GET /items", 20, slow ? 80 : 40, SpanKind::kServer);
    b.Add(4, 3, "cart", "SELECT;items", 25, 35, SpanKind::kClient);  // ';' separates frames in folded text
    const Analysed a = Analyse(b);
    g.Add(b.spans, a.tree, a.path);
    table.Add(b.spans, a.tree, a.path);
  }
  g.Finish();
  EXPECT_EQ(g.traces(), 2u);
  EXPECT_EQ(g.total_ns(), 200 * kUs);
  // Fast trace: frontend 20, its client 10 + 50 (around a 20 µs cart span), cart 10, select 10.
  // Slow trace: frontend 20, its client 10 + 10, cart 5 + 45, select 10.
  EXPECT_EQ(g.Folded(),
            "frontend: GET /cart 40\n"
            "frontend: GET /cart;frontend: GET 80\n"
            "frontend: GET /cart;frontend: GET;cart: GET /items 60\n"
            "frontend: GET /cart;frontend: GET;cart: GET /items;cart: SELECT:items 20\n");
  const auto rows = table.Rows();
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].frame, "frontend: GET");
  EXPECT_TRUE(rows[0].client);
  EXPECT_FALSE(rows[1].client);
  EXPECT_EQ(rows[0].critical_ns, 80 * kUs);
  EXPECT_EQ(rows[0].max_ns, 60 * kUs);
  EXPECT_EQ(rows[0].traces, 2u);
  EXPECT_EQ(rows[0].endpoints, 1u);
  EXPECT_EQ(table.total_ns(), 200 * kUs);
}

TEST(FlameGraphTest, ServerAndClientSpansWithOneNameAreDifferentOperations) {
  // A proxy forwards GET /items/{id} as GET /items/{id}: its SERVER span's own time is its
  // work, its CLIENT span's own time is the network; the bottom-up table must not add them up.
  TraceBuilder b;
  b.Add(1, 0, "cart", "GET /items/{id}", 0, 100, SpanKind::kServer);
  b.Add(2, 1, "cart", "GET /items/{id}", 30, 90, SpanKind::kClient);
  b.Add(3, 2, "stock", "GET /items/{id}", 40, 80, SpanKind::kServer);
  const Analysed a = Analyse(b);
  OperationTable table;
  table.Add(b.spans, a.tree, a.path);
  const auto rows = table.Rows();
  ASSERT_EQ(rows.size(), 3u);
  // 40 µs each, then by name: cart's SERVER span before stock's; cart's CLIENT span last.
  EXPECT_EQ(rows[0].frame, "cart: GET /items/{id}");
  EXPECT_FALSE(rows[0].client);
  EXPECT_EQ(rows[0].critical_ns, 40 * kUs);
  EXPECT_EQ(rows[1].frame, "stock: GET /items/{id}");
  EXPECT_EQ(rows[1].critical_ns, 40 * kUs);
  EXPECT_EQ(rows[2].frame, "cart: GET /items/{id}");
  EXPECT_TRUE(rows[2].client);
  EXPECT_EQ(rows[2].critical_ns, 20 * kUs);
  FlameGraph g;
  g.Add(b.spans, a.tree, a.path);
  g.Finish();
  EXPECT_EQ(g.Folded(),
            "cart: GET /items/{id} 40\n"
            "cart: GET /items/{id};cart: GET /items/{id} 20\n"
            "cart: GET /items/{id};cart: GET /items/{id};stock: GET /items/{id} 40\n");
}

}  // namespace
}  // namespace threadline
