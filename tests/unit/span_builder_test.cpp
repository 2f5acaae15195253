// The protocol-neutral pipeline: the dispatcher with a protocol of the test's own (a line
// protocol nothing in the agent knows), and the span builder fed neutral views only. Identity,
// parenting and kernel-chosen ids must work without any HTTP.
#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/discovery/resource.h"
#include "agent/protocols/dispatcher.h"
#include "agent/spans/span_builder.h"
#include "agent/spans/trace_context.h"
#include "tests/unit/conn_test_util.h"

namespace threadline {
namespace {

using conn_test::MakeTuple;

// "REQ <name> [traceparent]\n" one way, "RSP\n" the other, paired in order: a whole line is a
// whole message.
class LineParser final : public ConnectionParser {
 public:
  class Carrier final : public CarrierReader {
   public:
    explicit Carrier(std::string_view tp) : tp_(tp) {}
    size_t Values(std::string_view key, std::span<std::string_view> out) const override {
      if (key != "traceparent" || tp_.empty()) return 0;
      if (!out.empty()) out[0] = tp_;
      return 1;
    }

   private:
    std::string_view tp_;
  };

  void OnData(Direction dir, std::span<const uint8_t> bytes, const ChunkMeta& meta,
              ParserOutput& out) override {
    std::string_view s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (!request_dir_) request_dir_ = s.starts_with("REQ ") ? dir : Other(dir);
    if (dir == *request_dir_) {
      Pending p;
      p.line = std::string(s.substr(0, s.find('\n')));
      p.view.edge = MessageEdge{true, meta, meta};
      pending_.push_back(std::move(p));
      Announce(pending_.back(), out);
      return;
    }
    if (pending_.empty()) return;
    Pending p = std::move(pending_.front());
    pending_.erase(pending_.begin());
    Record r;
    r.response = MessageEdge{true, meta, meta};
    const Carrier carrier(TraceParentOf(p.line));
    r.request = p.view;
    r.request.carrier = &carrier;
    out.OnRecord(std::move(r));
  }
  void OnGap(Direction, uint64_t, GapReason, const ChunkMeta&, ParserOutput&) override {}
  void OnClose(uint64_t, bool, ParserOutput&) override { closed_ = true; }
  bool done() const override { return closed_; }
  std::optional<Direction> request_direction() const override { return request_dir_; }

 private:
  struct Pending {
    std::string line;
    RequestView view;
  };
  static Direction Other(Direction d) {
    return d == Direction::kEgress ? Direction::kIngress : Direction::kEgress;
  }
  static std::string_view TraceParentOf(std::string_view line) {
    size_t sp = line.find(' ', 4);
    return sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  }
  void Announce(const Pending& p, ParserOutput& out) const {
    const Carrier carrier(TraceParentOf(p.line));
    RequestView v = p.view;
    v.carrier = &carrier;
    out.OnRequest(v);
  }

  std::optional<Direction> request_dir_;
  std::vector<Pending> pending_;
  bool closed_ = false;
};

class LineProtocol final : public Protocol {
 public:
  ProtocolId id() const override { return ProtocolId::kHttp1; }  // unused by the pipeline
  bool Detect(std::span<const uint8_t> bytes, Direction, const ConnectionInfo&) const override {
    std::string_view s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return s.starts_with("REQ ") || s.starts_with("RSP");
  }
  std::unique_ptr<ConnectionParser> NewConnection(const ConnectionInfo&, std::span<const uint8_t>,
                                                  Direction) override {
    return std::make_unique<LineParser>();
  }
};

std::unique_ptr<Protocol> CreateLineProtocol(const ProtocolOptions&, MetricsRegistry&) {
  return std::make_unique<LineProtocol>();
}
constexpr std::array kLineTable = {ProtocolSpec{"line", &CreateLineProtocol}};

struct Collect : SpanSink {
  void OnSpan(Span&& s) override { spans.push_back(std::move(s)); }
  std::vector<Span> spans;
};

std::string SourceOf(const Span& s) {
  const AttributeValue* v = FindAttribute(s.attributes, "threadline.parent.source");
  return v ? std::get<std::string>(*v) : "";
}

struct Pipeline {
  Pipeline()
      : resources(ResourceCacheOptions{}, metrics),
        builder(Config(), resources, clock, out, metrics),
        dispatcher(DispatcherConfig{.table = kLineTable}, builder, metrics) {}
  static SpanBuilderConfig Config() {
    SpanBuilderConfig c;
    c.parents.same_node_linking = false;
    return c;
  }
  ConnectionInfo Conn(int32_t fd, Role role) {
    ConnectionInfo c;
    c.id = ConnId{pid, fd, static_cast<uint64_t>(fd)};
    c.tuple = MakeTuple(static_cast<uint16_t>(40000 + fd), 80);
    c.tuple_known = true;
    c.role = role;
    dispatcher.OnConnectionOpened(c);
    return c;
  }
  // `ctx_tag`: the kernel's context verdict on the request these bytes start.
  void Send(const ConnectionInfo& c, Direction dir, std::string_view line, uint32_t tid,
            uint64_t pos = 0, uint32_t ctx_tag = 0) {
    ChunkMeta meta{ts, ts - 5, tid, 0, pos, ctx_tag};
    ts += 1000;
    dispatcher.OnStreamData(c, dir, pos,
                            {reinterpret_cast<const uint8_t*>(line.data()), line.size()}, meta);
  }

  const uint32_t pid = 4242;
  uint64_t ts = 1'000'000;
  MetricsRegistry metrics;
  BootClock clock;
  Collect out;
  ResourceCache resources;
  SpanBuilder builder;
  ProtocolDispatcher dispatcher;
};

constexpr Direction kIn = Direction::kIngress;
constexpr Direction kOut = Direction::kEgress;
constexpr std::string_view kTp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(SpanBuilderTest, AnyProtocolGetsHeaderContextAndRootParents) {
  Pipeline p;
  const ConnectionInfo srv = p.Conn(5, Role::kServer);
  const ConnectionInfo cli = p.Conn(6, Role::kClient);
  p.Send(srv, kIn, "REQ front " + std::string(kTp) + "\n", 7, 0, TL_CTX_TAG(TL_CTAG_SERVER, 3));
  // The kernel: the same thread, while serving request 3: its child.
  p.Send(cli, kOut, "REQ back\n", 7, 0, TL_CTX_TAG(TL_CTAG_THREAD, 3));
  p.Send(cli, kIn, "RSP\n", 7);
  p.Send(srv, kOut, "RSP\n", 7);
  const ConnectionInfo other = p.Conn(8, Role::kClient);
  // Another thread, nothing in progress: a new trace.
  p.Send(other, kOut, "REQ alone\n", 9, 0, TL_CTX_TAG(TL_CTAG_ROOT, 0));
  p.Send(other, kIn, "RSP\n", 9);

  ASSERT_EQ(p.out.spans.size(), 3u);
  const Span& client = p.out.spans[0];
  const Span& server = p.out.spans[1];
  const Span& alone = p.out.spans[2];
  EXPECT_EQ(server.kind, SpanKind::kServer);
  EXPECT_EQ(server.trace_id.Hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(server.parent_span_id.Hex(), "00f067aa0ba902b7");
  EXPECT_TRUE(server.parent_is_remote);
  EXPECT_EQ(SourceOf(server), "header");
  EXPECT_EQ(client.kind, SpanKind::kClient);
  EXPECT_EQ(client.trace_id, server.trace_id);
  EXPECT_EQ(client.parent_span_id, server.span_id);
  EXPECT_EQ(SourceOf(client), "thread");
  EXPECT_EQ(SourceOf(alone), "root");
  EXPECT_FALSE(alone.parent_span_id.valid());
  EXPECT_NE(alone.trace_id, server.trace_id);
  // Timing from the neutral edges: the server span from its request's read to its response's
  // write; a client span from the entry of its request's write.
  EXPECT_EQ(server.end_unix_ns - server.start_unix_ns, 3000u);
  EXPECT_EQ(client.end_unix_ns - client.start_unix_ns, 1005u);
}

TEST(SpanBuilderTest, RoleComesFromTheRequestDirectionWhenTheKernelDidNotKnowIt) {
  Pipeline p;
  const ConnectionInfo c = p.Conn(5, Role::kUnknown);
  p.Send(c, kIn, "REQ x\n", 7);
  p.Send(c, kOut, "RSP\n", 7);
  ASSERT_EQ(p.out.spans.size(), 1u);
  EXPECT_EQ(p.out.spans[0].kind, SpanKind::kServer);
  EXPECT_EQ(p.metrics.GetCounter("threadline_protocol_connections_total", {{"protocol", "line"}}).Value(), 1u);
}

TEST(SpanBuilderTest, ConnectionsNoProtocolClaimsAreLeftAloneAndCounted) {
  Pipeline p;
  const ConnectionInfo c = p.Conn(5, Role::kServer);
  for (int i = 0; i < 10; ++i) p.Send(c, kIn, "\x16\x03\x01 binary", 7);
  EXPECT_TRUE(p.out.spans.empty());
  EXPECT_EQ(p.metrics.GetCounter("threadline_protocol_connections_total", {{"protocol", "other"}}).Value(), 1u);
}

// A rule of another helper's making, inserted before "tuple": it decides, and says so.
class EvidenceRule final : public ParentRule {
 public:
  std::string_view name() const override { return "evidence"; }
  bool Choose(const ParentQuery& q, Identity& id) override {
    if (q.role != Role::kServer) return false;
    id.trace_id = *TraceIdFromHex("0af7651916cd43dd8448eb211c80319c");
    id.parent_span_id = *SpanIdFromHex("b7ad6b7169203331");
    return true;
  }
};

TEST(SpanBuilderTest, ParentRulesCanBeInsertedAndRecordTheirName) {
  Pipeline p;
  p.builder.InsertParentRule(std::make_unique<EvidenceRule>(), "tuple");
  const ConnectionInfo srv = p.Conn(5, Role::kServer);
  p.Send(srv, kIn, "REQ a\n", 7);
  p.Send(srv, kOut, "RSP\n", 7);
  const ConnectionInfo tp = p.Conn(6, Role::kServer);
  p.Send(tp, kIn, "REQ b " + std::string(kTp) + "\n", 8);  // header comes first
  p.Send(tp, kOut, "RSP\n", 8);
  ASSERT_EQ(p.out.spans.size(), 2u);
  EXPECT_EQ(SourceOf(p.out.spans[0]), "evidence");
  EXPECT_EQ(p.out.spans[0].parent_span_id.Hex(), "b7ad6b7169203331");
  EXPECT_EQ(SourceOf(p.out.spans[1]), "header");
}

// Streams of one connection (HTTP/2-like) end in any order: each record finds the identity
// fixed for its own stream.
TEST(SpanBuilderTest, RecordsOfConcurrentStreamsFindTheirOwnIdentity) {
  MetricsRegistry metrics;
  BootClock clock;
  Collect out;
  ResourceCache resources(ResourceCacheOptions{}, metrics);
  SpanBuilder builder(Pipeline::Config(), resources, clock, out, metrics);
  ConnectionInfo c;
  c.id = ConnId{4242, 5, 1};
  c.role = Role::kServer;
  builder.OnConnectionOpened(c);
  std::vector<RequestView> views;
  for (uint32_t stream : {1u, 3u, 5u}) {
    RequestView v;
    v.stream_id = stream;
    v.edge = MessageEdge{true, ChunkMeta{1000, 990, 7, 0, 0}, ChunkMeta{1000, 990, 7, 0, 0}};
    builder.OnRequest(c, Role::kServer, v);
    views.push_back(v);
  }
  // The client's kernel-less server spans have random ids; remember what each stream got by
  // ending them in reverse and checking every span is distinct and complete.
  for (int i = 2; i >= 0; --i) {
    Record r;
    r.request = views[static_cast<size_t>(i)];
    r.response = MessageEdge{true, ChunkMeta{2000 + static_cast<uint64_t>(i), 0, 7, 0, 0}, ChunkMeta{3000, 0, 7, 0, 0}};
    builder.OnRecord(c, Role::kServer, std::move(r));
  }
  ASSERT_EQ(out.spans.size(), 3u);
  EXPECT_NE(out.spans[0].span_id, out.spans[1].span_id);
  EXPECT_NE(out.spans[1].span_id, out.spans[2].span_id);
  EXPECT_NE(out.spans[0].trace_id, out.spans[2].trace_id);
  // Each identity was taken exactly once: nothing was fixed again at record time.
  EXPECT_EQ(metrics.CounterTotal("threadline_spans_created_total"), 3u);
}

// The tracing-health counters (docs/metrics.md): every span started ends (created, by parent
// source) or is lost with a reason, so started == created + lost once nothing is in flight.
TEST(SpanBuilderTest, StartedEndedLostAndParentSourcesAreCounted) {
  Pipeline p;
  const ConnectionInfo srv = p.Conn(5, Role::kServer);
  const ConnectionInfo cli = p.Conn(6, Role::kClient);
  p.Send(srv, kIn, "REQ front " + std::string(kTp) + "\n", 7, 0, TL_CTX_TAG(TL_CTAG_SERVER, 3));
  // The kernel's verdict: the same thread, while serving request 3.
  p.Send(cli, kOut, "REQ back\n", 7, 0, TL_CTX_TAG(TL_CTAG_THREAD, 3));
  p.Send(cli, kIn, "RSP\n", 7);
  p.Send(srv, kOut, "RSP\n", 7);
  auto source = [&](const char* kind, const char* src) {
    return p.metrics.GetCounter("threadline_spans_parent_source_total", {{"kind", kind}, {"source", src}}).Value();
  };
  EXPECT_EQ(source("server", "header"), 1u);
  EXPECT_EQ(source("client", "thread"), 1u);
  EXPECT_EQ(source("server", "root"), 0u);  // registered from the start, still zero
  EXPECT_EQ(source("client", "ambiguous"), 0u);

  // Requests of one stream answered out of the protocol's sight: the first two were given up.
  ConnectionInfo c;
  c.id = ConnId{p.pid, 9, 9};
  c.role = Role::kServer;
  p.builder.OnConnectionOpened(c);
  RequestView last;
  for (uint64_t pos : {0u, 10u, 20u}) {
    last.edge = MessageEdge{true, ChunkMeta{1000 + pos, 990, 7, 0, pos}, ChunkMeta{1000 + pos, 990, 7, 0, pos}};
    p.builder.OnRequest(c, Role::kServer, last);
  }
  Record r;
  r.request = last;
  r.response = MessageEdge{true, ChunkMeta{5000, 0, 7, 0, 0}, ChunkMeta{5000, 0, 7, 0, 0}};
  p.builder.OnRecord(c, Role::kServer, std::move(r));
  // And one whose connection ends before its record.
  p.builder.OnRequest(c, Role::kServer, RequestView{.edge = MessageEdge{true, ChunkMeta{6000, 0, 7, 0, 30}, {}}});
  p.builder.OnConnectionDone(c);

  auto lost = [&](const char* reason) {
    return p.metrics.GetCounter("threadline_spans_lost_total", {{"reason", reason}}).Value();
  };
  EXPECT_EQ(lost("abandoned"), 2u);
  EXPECT_EQ(lost("connection_closed"), 1u);
  EXPECT_EQ(lost("in_flight_limit"), 0u);
  EXPECT_EQ(p.metrics.GetCounter("threadline_spans_started_total", {{"kind", "server"}}).Value(), 5u);
  EXPECT_EQ(p.metrics.GetCounter("threadline_spans_started_total", {{"kind", "client"}}).Value(), 1u);
  EXPECT_EQ(p.metrics.CounterTotal("threadline_spans_started_total"),
            p.metrics.CounterTotal("threadline_spans_created_total") + p.metrics.CounterTotal("threadline_spans_lost_total"));
  EXPECT_EQ(p.metrics.CounterTotal("threadline_spans_parent_source_total"),
            p.metrics.CounterTotal("threadline_spans_created_total"));
}

TEST(SpanBuilderTest, KernelIdsAreTiedToTheRequestsStreamPosition) {
  Pipeline p;
  const ConnectionInfo srv = p.Conn(5, Role::kServer);
  TraceCtxEvent e;
  e.id = srv.id;
  e.direction = kIn;
  e.pos = 100;  // the second request's first byte
  e.kind = TL_CTX_SERVER;
  e.trace_id = TraceIdFromHex("11111111111111111111111111111111")->bytes;
  e.span_id = SpanIdFromHex("2222222222222222")->bytes;
  e.trace_flags = 1;
  p.builder.OnKernelTraceContext(e);
  p.Send(srv, kIn, "REQ first\n", 7, 0);
  p.Send(srv, kOut, "RSP\n", 7, 0);
  p.Send(srv, kIn, "REQ second\n", 7, 100);
  p.Send(srv, kOut, "RSP\n", 7, 4);
  ASSERT_EQ(p.out.spans.size(), 2u);
  EXPECT_NE(p.out.spans[0].span_id.Hex(), "2222222222222222");
  EXPECT_EQ(p.out.spans[1].span_id.Hex(), "2222222222222222");
  EXPECT_EQ(p.out.spans[1].trace_id.Hex(), "11111111111111111111111111111111");
  EXPECT_EQ(p.metrics.GetCounter("threadline_kernel_trace_ids_total", {{"result", "used"}}).Value(), 1u);
}

}  // namespace
}  // namespace threadline
