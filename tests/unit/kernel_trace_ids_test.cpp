// Trace ids chosen in the kernel for traceparent injection (TL_EV_TRACE_CTX): decoded field by
// field, and used exactly by the spans built from the data events they precede (decoder ->
// connection table -> protocols -> spans, wired like the agent wires them).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "agent/conn/connection_table.h"
#include "agent/discovery/resource.h"
#include "agent/ingest/decoder.h"
#include "agent/protocols/dispatcher.h"
#include "agent/spans/span_builder.h"

namespace threadline {
namespace {

template <typename T>
std::vector<uint8_t> Bytes(const T& v, std::string_view tail = {}) {
  std::vector<uint8_t> out(sizeof(T) + tail.size());
  std::memcpy(out.data(), &v, sizeof(T));
  std::memcpy(out.data() + sizeof(T), tail.data(), tail.size());
  return out;
}

tl_trace_ctx_event MakeCtx(uint32_t tgid, uint32_t tid, int32_t fd, uint64_t gen, uint8_t kind,
                           uint8_t dir, uint64_t enter_ts, uint8_t trace_byte, uint8_t span_byte,
                           uint8_t parent_byte) {
  tl_trace_ctx_event e{};
  e.hdr = {TL_EV_TRACE_CTX, 0, enter_ts + 1, tgid, tid};
  e.id = {tgid, fd, gen};
  e.pos = 0;
  e.enter_ts_ns = enter_ts;
  std::memset(e.trace_id, trace_byte, 16);
  std::memset(e.span_id, span_byte, 8);
  std::memset(e.parent_span_id, parent_byte, 8);
  e.kind = kind;
  e.direction = dir;
  e.flags = parent_byte ? TL_CTX_F_HAS_PARENT : 0;
  e.trace_flags = 1;
  return e;
}

TEST(KernelTraceIdsTest, DecodesEveryField) {
  struct Sink : EventSink {
    std::optional<TraceCtxEvent> got;
    void OnTraceContext(const TraceCtxEvent& e) override { got = e; }
  } sink;
  auto e = MakeCtx(42, 43, 7, 9, TL_CTX_CLIENT, TL_DIR_EGRESS, 1000, 0xab, 0xcd, 0xef);
  e.pos = 77;
  ASSERT_EQ(DecodeEvent(Bytes(e), sink), DecodeStatus::kOk);
  ASSERT_TRUE(sink.got);
  EXPECT_EQ(sink.got->id, (ConnId{42, 7, 9}));
  EXPECT_EQ(sink.got->tid, 43u);
  EXPECT_EQ(sink.got->pos, 77u);
  EXPECT_EQ(sink.got->enter_ts_ns, 1000u);
  EXPECT_EQ(sink.got->trace_id[15], 0xab);
  EXPECT_EQ(sink.got->span_id[0], 0xcd);
  EXPECT_EQ(sink.got->parent_span_id[7], 0xef);
  EXPECT_EQ(sink.got->kind, TL_CTX_CLIENT);
  EXPECT_EQ(sink.got->direction, Direction::kEgress);
  EXPECT_EQ(sink.got->flags, TL_CTX_F_HAS_PARENT);
  EXPECT_EQ(sink.got->trace_flags, 1);
  // A short record is rejected, not read past its end.
  auto bytes = Bytes(e);
  bytes.resize(bytes.size() - 1);
  EXPECT_EQ(DecodeEvent(bytes, sink), DecodeStatus::kTooShort);
}

struct Collect : SpanSink {
  std::vector<Span> spans;
  void OnSpan(Span s) override { spans.push_back(std::move(s)); }
};

const AttributeValue* Attr(const Span& s, std::string_view key) { return FindAttribute(s.attributes, key); }

// The agent's wiring: data through the table, trace ids straight to the builder.
struct Pipeline : EventSink {
  Pipeline()
      : resources(ResourceCacheOptions{}, metrics),
        builder(SpanBuilderConfig{}, resources, clock, out, metrics),
        dispatcher(DispatcherConfig{}, builder, metrics),
        table(ConnectionTableConfig{}, dispatcher, metrics, nullptr) {}
  void OnConnOpen(const ConnOpenEvent& e) override { table.OnConnOpen(e); }
  void OnConnClose(const ConnCloseEvent& e) override { table.OnConnClose(e); }
  void OnData(const DataEvent& e) override { table.OnData(e); }
  void OnTraceContext(const TraceCtxEvent& e) override { builder.OnKernelTraceContext(e); }
  void Feed(const std::vector<uint8_t>& rec) { ASSERT_EQ(DecodeEvent(rec, *this), DecodeStatus::kOk); }

  MetricsRegistry metrics;
  BootClock clock;
  Collect out;
  ResourceCache resources;
  SpanBuilder builder;
  ProtocolDispatcher dispatcher;
  ConnectionTable table;
};

tl_conn_event Open(uint32_t tgid, int32_t fd, uint64_t gen, uint8_t role, uint16_t sport, uint16_t dport) {
  tl_conn_event e{};
  e.hdr = {TL_EV_CONN_OPEN, 0, 10, tgid, tgid};
  e.id = {tgid, fd, gen};
  e.tuple.family = AF_INET;
  inet_pton(AF_INET, "10.0.0.1", e.tuple.saddr);
  inet_pton(AF_INET, "10.0.0.2", e.tuple.daddr);
  e.tuple.sport = sport;
  e.tuple.dport = dport;
  e.role = role;
  e.source = role == TL_ROLE_CLIENT ? TL_SRC_CONNECT : TL_SRC_ACCEPT;
  return e;
}

std::vector<uint8_t> Data(uint32_t tgid, uint32_t tid, int32_t fd, uint64_t gen, uint8_t dir,
                          uint8_t role, uint64_t pos, uint64_t enter_ts, std::string_view bytes) {
  tl_data_event e{};
  e.hdr = {TL_EV_DATA, 0, enter_ts + 5, tgid, tid};
  e.id = {tgid, fd, gen};
  e.pos = pos;
  e.enter_ts_ns = enter_ts;
  e.size = static_cast<uint32_t>(bytes.size());
  e.captured = e.size;
  e.direction = dir;
  e.syscall = dir == TL_DIR_EGRESS ? TL_SYS_WRITE : TL_SYS_READ;
  e.role = role;
  return Bytes(e, bytes);
}

TEST(KernelTraceIdsTest, SpansUseExactlyTheKernelsIds) {
  Pipeline p;
  const uint32_t pid = static_cast<uint32_t>(getpid()), tid = pid + 1;
  // A server request arrives; the kernel named its ids (trace 0x11.., span 0x22..).
  p.Feed(Bytes(Open(pid, 5, 1, TL_ROLE_SERVER, 8080, 40000)));
  p.Feed(Bytes(MakeCtx(pid, tid, 5, 1, TL_CTX_SERVER, TL_DIR_INGRESS, 100, 0x11, 0x22, 0)));
  const std::string req = "GET /front HTTP/1.1\r\nHost: a\r\n\r\n";
  p.Feed(Data(pid, tid, 5, 1, TL_DIR_INGRESS, TL_ROLE_SERVER, 0, 100, req));
  // The same thread calls out; the kernel injected (trace 0x11.., span 0x33.., parent 0x22..).
  p.Feed(Bytes(Open(pid, 6, 2, TL_ROLE_CLIENT, 40001, 9090)));
  p.Feed(Bytes(MakeCtx(pid, tid, 6, 2, TL_CTX_CLIENT, TL_DIR_EGRESS, 200, 0x11, 0x33, 0x22)));
  const std::string out_req = "GET /back HTTP/1.1\r\nHost: b\r\n\r\n";
  p.Feed(Data(pid, tid, 6, 2, TL_DIR_EGRESS, TL_ROLE_CLIENT, 0, 200, out_req));
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  p.Feed(Data(pid, tid, 6, 2, TL_DIR_INGRESS, TL_ROLE_CLIENT, 0, 300, resp));
  p.Feed(Data(pid, tid, 5, 1, TL_DIR_EGRESS, TL_ROLE_SERVER, 0, 400, resp));

  ASSERT_EQ(p.out.spans.size(), 2u);
  const Span& client = p.out.spans[0];
  const Span& server = p.out.spans[1];
  ASSERT_EQ(server.kind, SpanKind::kServer);
  ASSERT_EQ(client.kind, SpanKind::kClient);
  EXPECT_EQ(server.trace_id.Hex(), std::string(32, '1'));
  EXPECT_EQ(server.span_id.Hex(), std::string(16, '2'));
  EXPECT_FALSE(server.parent_span_id.valid());
  EXPECT_EQ(client.trace_id.Hex(), std::string(32, '1'));
  EXPECT_EQ(client.span_id.Hex(), std::string(16, '3'));
  EXPECT_EQ(client.parent_span_id.Hex(), std::string(16, '2'));
  const AttributeValue* injected = Attr(client, "threadline.traceparent.injected");
  ASSERT_NE(injected, nullptr);
  EXPECT_EQ(*injected, AttributeValue{true});
  EXPECT_EQ(Attr(server, "threadline.traceparent.injected"), nullptr);
  EXPECT_EQ(*Attr(client, "threadline.parent.source"), AttributeValue{std::string("thread")});
  EXPECT_EQ(p.metrics.GetCounter("threadline_kernel_trace_ids_total", {{"result", "used"}}).Value(), 2u);
  EXPECT_EQ(p.metrics.CounterTotal("threadline_kernel_trace_ids_total"), 2u);  // nothing else
}

TEST(KernelTraceIdsTest, IdsOfAnotherStreamPositionAreNotUsed) {
  Pipeline p;
  const uint32_t pid = static_cast<uint32_t>(getpid()), tid = pid + 1;
  p.Feed(Bytes(Open(pid, 5, 1, TL_ROLE_SERVER, 8080, 40000)));
  // Ids for a read that is not the one carrying the request (a request further on).
  auto ctx = MakeCtx(pid, tid, 5, 1, TL_CTX_SERVER, TL_DIR_INGRESS, 100, 0x11, 0x22, 0);
  ctx.pos = 500;
  p.Feed(Bytes(ctx));
  p.Feed(Data(pid, tid, 5, 1, TL_DIR_INGRESS, TL_ROLE_SERVER, 0, 100, "GET / HTTP/1.1\r\n\r\n"));
  p.Feed(Data(pid, tid, 5, 1, TL_DIR_EGRESS, TL_ROLE_SERVER, 0, 400, "HTTP/1.1 204 No Content\r\n\r\n"));
  ASSERT_EQ(p.out.spans.size(), 1u);
  EXPECT_NE(p.out.spans[0].span_id.Hex(), std::string(16, '2'));
  EXPECT_NE(p.out.spans[0].trace_id.Hex(), std::string(32, '1'));
  EXPECT_EQ(p.metrics.GetCounter("threadline_kernel_trace_ids_total", {{"result", "used"}}).Value(), 0u);
}

}  // namespace
}  // namespace threadline
