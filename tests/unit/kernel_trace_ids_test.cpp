// Trace ids chosen in the kernel for the context on the wire (TL_EV_TRACE_CTX): decoded field by
// field, and used exactly by the spans built from the data events they precede (decoder ->
// connection table -> protocols -> spans, wired like the agent wires them); contexts a TCP
// header option brought (TL_CTX_REMOTE) matched to the request starting in their stream range.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <map>
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
  void OnSpan(Span&& s) override { spans.push_back(std::move(s)); }
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
  auto injected_ctx = MakeCtx(pid, tid, 6, 2, TL_CTX_CLIENT, TL_DIR_EGRESS, 200, 0x11, 0x33, 0x22);
  injected_ctx.flags |= TL_CTX_F_INJECTED;
  p.Feed(Bytes(injected_ctx));
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

// ---- TCP header option contexts (TL_CTX_REMOTE): matched by stream position ----------------

tl_trace_ctx_event Remote(uint32_t tgid, uint32_t tid, int32_t fd, uint64_t gen, uint64_t pos,
                          uint32_t len, uint64_t enter_ts, uint8_t trace_byte, uint8_t span_byte,
                          uint8_t trace_flags = 1) {
  tl_trace_ctx_event e = MakeCtx(tgid, tid, fd, gen, TL_CTX_REMOTE, TL_DIR_INGRESS, enter_ts,
                                 trace_byte, span_byte, span_byte);
  e.pos = pos;
  e.range_len = len;
  e.flags = TL_CTX_F_TCP_OPTION;
  e.trace_flags = trace_flags;
  return e;
}

uint64_t RemoteCount(Pipeline& p, const char* result) {
  return p.metrics.GetCounter("threadline_tcp_option_contexts_total", {{"result", result}}).Value();
}

const std::string kNoContent = "HTTP/1.1 204 No Content\r\n\r\n";

// A server connection (fd 5) of this process, open in the pipeline.
class TcpOptionContextTest : public ::testing::Test {
 protected:
  void SetUp() override { p.Feed(Bytes(Open(pid, 5, 1, TL_ROLE_SERVER, 8080, 40000))); }
  // Bytes read on the server connection at `pos`, by a read that entered at `enter_ts`.
  void Read(uint64_t pos, uint64_t enter_ts, std::string_view bytes) {
    p.Feed(Data(pid, tid, 5, 1, TL_DIR_INGRESS, TL_ROLE_SERVER, pos, enter_ts, bytes));
  }
  void Answer(std::string_view bytes) {
    p.Feed(Data(pid, tid, 5, 1, TL_DIR_EGRESS, TL_ROLE_SERVER, 0, 900, bytes));
  }
  void Option(uint64_t pos, uint64_t len, uint64_t enter_ts, uint8_t trace_byte, uint8_t span_byte,
              uint8_t trace_flags = 1) {
    p.Feed(Bytes(Remote(pid, tid, 5, 1, pos, static_cast<uint32_t>(len), enter_ts, trace_byte,
                        span_byte, trace_flags)));
  }
  Pipeline p;
  const uint32_t pid = static_cast<uint32_t>(getpid());
  const uint32_t tid = pid + 1;
};

TEST_F(TcpOptionContextTest, ParentsTheRequestStartingInItsRange) {
  const std::string req = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
  Option(0, req.size(), 100, 0x44, 0x55, 0);
  Read(0, 100, req);
  Answer(kNoContent);
  ASSERT_EQ(p.out.spans.size(), 1u);
  const Span& s = p.out.spans[0];
  EXPECT_EQ(s.trace_id.Hex(), std::string(32, '4'));
  EXPECT_EQ(s.parent_span_id.Hex(), std::string(16, '5'));
  EXPECT_TRUE(s.parent_is_remote);
  EXPECT_EQ(s.flags, 0u) << "the sender's sampled flag travels with the context";
  EXPECT_EQ(*Attr(s, "threadline.parent.source"), AttributeValue{std::string("tcp_option")});
  EXPECT_EQ(RemoteCount(p, "matched"), 1u);
  EXPECT_EQ(RemoteCount(p, "unmatched"), 0u);
}

TEST_F(TcpOptionContextTest, PipelinedRequestsInOneReadEachTakeTheContextOfTheirOwnRange) {
  const std::string r1 = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string r2 = "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody";
  const std::string r3 = "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
  // One segment per request, the first two with an option (the third's sender had no room).
  Option(0, r1.size(), 100, 0x61, 0x71);
  Option(r1.size(), r2.size(), 100, 0x62, 0x72);
  Read(0, 100, r1 + r2 + r3);
  Answer(kNoContent + kNoContent + kNoContent);
  ASSERT_EQ(p.out.spans.size(), 3u);
  EXPECT_EQ(p.out.spans[0].parent_span_id.Hex(), "7171717171717171");
  EXPECT_EQ(p.out.spans[0].trace_id.Hex(), "61616161616161616161616161616161");
  EXPECT_EQ(p.out.spans[1].parent_span_id.Hex(), "7272727272727272");
  EXPECT_EQ(p.out.spans[1].trace_id.Hex(), "62626262626262626262626262626262");
  EXPECT_FALSE(p.out.spans[2].parent_span_id.valid());
  EXPECT_EQ(*Attr(p.out.spans[2], "threadline.parent.source"), AttributeValue{std::string("root")});
  EXPECT_EQ(RemoteCount(p, "matched"), 2u);
}

TEST_F(TcpOptionContextTest, ARequestStartingMidReadMatchesByPosition) {
  const std::string r1 = "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n";
  const std::string r2 = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
  Read(0, 100, r1 + "01234");
  // The rest of the body and the next request came in one segment carrying the next's option:
  // its range starts before the request (GSO/coalescing), the request is the first starting in it.
  Option(r1.size() + 5, 5 + r2.size(), 150, 0x81, 0x91);
  Read(r1.size() + 5, 150, "56789" + r2);
  Answer(kNoContent + kNoContent);
  ASSERT_EQ(p.out.spans.size(), 2u);
  EXPECT_FALSE(p.out.spans[0].parent_span_id.valid()) << "the range starts inside /big's body";
  EXPECT_EQ(p.out.spans[1].parent_span_id.Hex(), "9191919191919191");
  EXPECT_EQ(RemoteCount(p, "matched"), 1u);
  EXPECT_EQ(RemoteCount(p, "unmatched"), 0u);
}

TEST_F(TcpOptionContextTest, AnOptionNoRequestStartsAtIsSupersededByTheNextRequestsOwn) {
  const std::string r1 = "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n";
  const std::string body(20, 'x');
  const std::string r2 = "GET /later HTTP/1.1\r\nHost: a\r\n\r\n";
  Read(0, 100, r1);
  // An option on body bytes only (a sender that took a body write for a request start), then
  // the next request's own: each request takes the latest context at or before its start.
  Option(r1.size(), 20, 150, 0xa1, 0xb1);
  Read(r1.size(), 150, body);
  Option(r1.size() + 20, r2.size(), 160, 0xc1, 0xd1);
  Read(r1.size() + 20, 160, r2);
  Answer(kNoContent + kNoContent);
  ASSERT_EQ(p.out.spans.size(), 2u);
  EXPECT_FALSE(p.out.spans[0].parent_span_id.valid());
  EXPECT_EQ(p.out.spans[1].parent_span_id.Hex(), "d1d1d1d1d1d1d1d1");
  for (const Span& s : p.out.spans) EXPECT_NE(s.trace_id.Hex(), "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1");
  EXPECT_EQ(RemoteCount(p, "matched"), 1u);
  EXPECT_EQ(RemoteCount(p, "unmatched"), 1u);
}

TEST_F(TcpOptionContextTest, ARangeNoRequestStartsInIsCountedNeverMisapplied) {
  const std::string r1 = "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n";
  const std::string body(20, 'x');
  const std::string r2 = "GET /later HTTP/1.1\r\nHost: a\r\n\r\n";
  Read(0, 100, r1);
  // An option on body bytes only (a sender that took a body write for a request start).
  Option(r1.size(), 20, 150, 0xa1, 0xb1);
  Read(r1.size(), 150, body);
  Read(r1.size() + 20, 160, r2);
  Answer(kNoContent + kNoContent);
  ASSERT_EQ(p.out.spans.size(), 2u);
  for (const Span& s : p.out.spans) {
    EXPECT_FALSE(s.parent_span_id.valid());
    EXPECT_NE(s.trace_id.Hex(), "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1");
  }
  EXPECT_EQ(RemoteCount(p, "matched"), 0u);
  EXPECT_EQ(RemoteCount(p, "unmatched"), 1u);
}

TEST_F(TcpOptionContextTest, TheKernelsChoiceOfTheRequestsIdsWins) {
  // The kernel chose this request's ids without the option (its outgoing calls carry that
  // trace): the span follows the kernel, and the context is counted unmatched.
  const std::string req = "GET /k HTTP/1.1\r\nHost: a\r\n\r\n";
  Option(0, req.size(), 100, 0x44, 0x55);
  auto ids = MakeCtx(pid, tid, 5, 1, TL_CTX_SERVER, TL_DIR_INGRESS, 100, 0x66, 0x77, 0);
  p.Feed(Bytes(ids));
  Read(0, 100, req);
  Answer(kNoContent);
  ASSERT_EQ(p.out.spans.size(), 1u);
  EXPECT_EQ(p.out.spans[0].span_id.Hex(), std::string(16, '7'));
  EXPECT_NE(p.out.spans[0].trace_id.Hex(), std::string(32, '4'));
  EXPECT_NE(*Attr(p.out.spans[0], "threadline.parent.source"), AttributeValue{std::string("tcp_option")});
  EXPECT_EQ(RemoteCount(p, "unmatched"), 1u);
}

TEST_F(TcpOptionContextTest, ATraceparentHeaderWins) {
  const std::string req = "GET /h HTTP/1.1\r\nHost: a\r\n"
                          "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
  Option(0, req.size(), 100, 0x44, 0x55);
  Read(0, 100, req);
  Answer(kNoContent);
  ASSERT_EQ(p.out.spans.size(), 1u);
  EXPECT_EQ(p.out.spans[0].trace_id.Hex(), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(p.out.spans[0].parent_span_id.Hex(), "b7ad6b7169203331");
  EXPECT_EQ(*Attr(p.out.spans[0], "threadline.parent.source"), AttributeValue{std::string("header")});
  EXPECT_EQ(RemoteCount(p, "header_wins"), 1u);
}

TEST_F(TcpOptionContextTest, ContextsLeftAtCloseAreCountedUnmatched) {
  Option(0, 10, 100, 0x44, 0x55);
  Read(0, 100, std::string("\x01\x02binary", 8));
  tl_conn_event close = Open(pid, 5, 1, TL_ROLE_SERVER, 8080, 40000);
  close.hdr.type = TL_EV_CONN_CLOSE;
  close.close_reason = TL_CLOSE_SYSCALL;
  p.Feed(Bytes(close));
  EXPECT_TRUE(p.out.spans.empty());
  EXPECT_EQ(RemoteCount(p, "unmatched"), 1u);
}

TEST_F(TcpOptionContextTest, ClientSpansSayTheirContextWentInAnOption) {
  p.Feed(Bytes(Open(pid, 6, 2, TL_ROLE_CLIENT, 40001, 9090)));
  auto ctx = MakeCtx(pid, tid, 6, 2, TL_CTX_CLIENT, TL_DIR_EGRESS, 200, 0x11, 0x33, 0);
  ctx.flags |= TL_CTX_F_TCP_OPTION;
  p.Feed(Bytes(ctx));
  p.Feed(Data(pid, tid, 6, 2, TL_DIR_EGRESS, TL_ROLE_CLIENT, 0, 200, "GET /o HTTP/1.1\r\nHost: b\r\n\r\n"));
  p.Feed(Data(pid, tid, 6, 2, TL_DIR_INGRESS, TL_ROLE_CLIENT, 0, 300, kNoContent));
  ASSERT_EQ(p.out.spans.size(), 1u);
  const Span& c = p.out.spans[0];
  EXPECT_EQ(c.span_id.Hex(), std::string(16, '3'));
  EXPECT_EQ(c.trace_id.Hex(), std::string(32, '1'));
  ASSERT_NE(Attr(c, "threadline.tcp_option.sent"), nullptr);
  EXPECT_EQ(Attr(c, "threadline.traceparent.injected"), nullptr) << "nothing was injected";
}

TEST_F(TcpOptionContextTest, OptionIdsBelongToTheFirstRequestStartingInTheirWrite) {
  p.Feed(Bytes(Open(pid, 6, 2, TL_ROLE_CLIENT, 40001, 9090)));
  // One write holds bytes before a request start (here the end of a request the kernel gave no
  // ids, as an HTTP/2 preface would be) and two requests: the option's ids, sent on the write's
  // first segment, are those of the first request starting at or after the write, as the
  // receiver matches them; the request after it gets ids of its own.
  const std::string a = "GET /a HTTP/1.1\r\nHost: b\r\n\r\n";
  const std::string bc = "GET /b HTTP/1.1\r\nHost: b\r\n\r\nGET /c HTTP/1.1\r\nHost: b\r\n\r\n";
  const std::string second = a.substr(a.size() - 3) + bc;  // a's last bytes, then b and c
  p.Feed(Data(pid, tid, 6, 2, TL_DIR_EGRESS, TL_ROLE_CLIENT, 0, 100, a.substr(0, a.size() - 3)));
  auto ctx = MakeCtx(pid, tid, 6, 2, TL_CTX_CLIENT, TL_DIR_EGRESS, 200, 0x11, 0x33, 0);
  ctx.flags |= TL_CTX_F_TCP_OPTION;
  ctx.pos = a.size() - 3;
  p.Feed(Bytes(ctx));
  p.Feed(Data(pid, tid, 6, 2, TL_DIR_EGRESS, TL_ROLE_CLIENT, a.size() - 3, 200, second));
  p.Feed(Data(pid, tid, 6, 2, TL_DIR_INGRESS, TL_ROLE_CLIENT, 0, 300, kNoContent + kNoContent + kNoContent));
  ASSERT_EQ(p.out.spans.size(), 3u);
  std::map<std::string, const Span*> by_path;
  for (const Span& s : p.out.spans) by_path[std::get<std::string>(*Attr(s, "url.path"))] = &s;
  ASSERT_EQ(by_path.size(), 3u);
  EXPECT_EQ(by_path["/b"]->span_id.Hex(), std::string(16, '3'));
  EXPECT_EQ(by_path["/b"]->trace_id.Hex(), std::string(32, '1'));
  EXPECT_NE(Attr(*by_path["/b"], "threadline.tcp_option.sent"), nullptr);
  for (const char* other : {"/a", "/c"}) {
    EXPECT_NE(by_path[other]->span_id.Hex(), std::string(16, '3')) << other;
    EXPECT_EQ(Attr(*by_path[other], "threadline.tcp_option.sent"), nullptr) << other;
  }
}

TEST_F(TcpOptionContextTest, AnInstrumentedClientsOwnTraceparentDecidesItsSpan) {
  p.Feed(Bytes(Open(pid, 6, 2, TL_ROLE_CLIENT, 40001, 9090)));
  // The kernel chose ids for the option, but the application sent its own header: the receiver
  // takes the header, and our span joins the application's (header rule), as without the option.
  auto ctx = MakeCtx(pid, tid, 6, 2, TL_CTX_CLIENT, TL_DIR_EGRESS, 200, 0x11, 0x33, 0);
  ctx.flags |= TL_CTX_F_TCP_OPTION;
  p.Feed(Bytes(ctx));
  p.Feed(Data(pid, tid, 6, 2, TL_DIR_EGRESS, TL_ROLE_CLIENT, 0, 200,
              "GET /o HTTP/1.1\r\nHost: b\r\n"
              "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"));
  p.Feed(Data(pid, tid, 6, 2, TL_DIR_INGRESS, TL_ROLE_CLIENT, 0, 300, kNoContent));
  ASSERT_EQ(p.out.spans.size(), 1u);
  const Span& c = p.out.spans[0];
  EXPECT_EQ(c.trace_id.Hex(), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(c.parent_span_id.Hex(), "b7ad6b7169203331");
  EXPECT_EQ(*Attr(c, "threadline.parent.source"), AttributeValue{std::string("header")});
  EXPECT_EQ(Attr(c, "threadline.tcp_option.sent"), nullptr);
}

// Both ends on this node (nginx's upstream keep-alive connection): a request linked by its option
// must still take its client call out of the tuple rule's pairing order, or the connection's next
// request (no option: its sender's context was ambiguous) pairs with that call, a wrong parent,
// and every later one is one off. Both orders the ends can be seen in.
class TcpOptionAndTupleTest : public ::testing::TestWithParam<bool> {
 protected:
  // The server end of client connection fd 6 (10.0.0.1:40001 -> 10.0.0.2:9090): fd 5 of `srv`.
  void SetUp() override {
    p.Feed(Bytes(Open(cli, 6, 2, TL_ROLE_CLIENT, 40001, 9090)));
    tl_conn_event s = Open(srv, 5, 3, TL_ROLE_SERVER, 9090, 40001);
    inet_pton(AF_INET, "10.0.0.2", s.tuple.saddr);
    inet_pton(AF_INET, "10.0.0.1", s.tuple.daddr);
    p.Feed(Bytes(s));
  }
  void ClientWrites(uint64_t pos, uint64_t ts, const std::string& req, bool option) {
    if (option) {
      auto ctx = MakeCtx(cli, cli, 6, 2, TL_CTX_CLIENT, TL_DIR_EGRESS, ts, 0x11, 0x33, 0);
      ctx.flags |= TL_CTX_F_TCP_OPTION;
      ctx.pos = pos;
      p.Feed(Bytes(ctx));
    }
    p.Feed(Data(cli, cli, 6, 2, TL_DIR_EGRESS, TL_ROLE_CLIENT, pos, ts, req));
  }
  void ServerReads(uint64_t pos, uint64_t ts, const std::string& req, bool option) {
    if (option) {
      auto ctx = Remote(srv, srv, 5, 3, pos, static_cast<uint32_t>(req.size()), ts, 0x11, 0x33);
      p.Feed(Bytes(ctx));
    }
    p.Feed(Data(srv, srv, 5, 3, TL_DIR_INGRESS, TL_ROLE_SERVER, pos, ts, req));
  }
  void Exchange(uint64_t pos, uint64_t resp_pos, uint64_t ts, const std::string& req, bool option) {
    if (GetParam()) {  // the client's write seen first
      ClientWrites(pos, ts, req, option);
      ServerReads(pos, ts + 1, req, option);
    } else {
      ServerReads(pos, ts + 1, req, option);
      ClientWrites(pos, ts, req, option);
    }
    p.Feed(Data(srv, srv, 5, 3, TL_DIR_EGRESS, TL_ROLE_SERVER, resp_pos, ts + 2, kNoContent));
    p.Feed(Data(cli, cli, 6, 2, TL_DIR_INGRESS, TL_ROLE_CLIENT, resp_pos, ts + 3, kNoContent));
  }
  Pipeline p;
  const uint32_t cli = static_cast<uint32_t>(getpid());
  const uint32_t srv = cli + 7;
};

TEST_P(TcpOptionAndTupleTest, ARequestLinkedByItsOptionKeepsTheTuplePairingInStep) {
  const std::string r1 = "GET /1 HTTP/1.1\r\nHost: b\r\n\r\n";
  const std::string r2 = "GET /2 HTTP/1.1\r\nHost: b\r\n\r\n";
  const std::string r3 = "GET /3 HTTP/1.1\r\nHost: b\r\n\r\n";
  Exchange(0, 0, 100, r1, true);
  Exchange(r1.size(), kNoContent.size(), 200, r2, false);
  Exchange(r1.size() + r2.size(), 2 * kNoContent.size(), 300, r3, false);
  std::map<std::string, const Span*> client, server;
  for (const Span& s : p.out.spans)
    (s.kind == SpanKind::kClient ? client : server)[std::get<std::string>(*Attr(s, "url.path"))] = &s;
  ASSERT_EQ(client.size(), 3u);
  ASSERT_EQ(server.size(), 3u);
  EXPECT_EQ(*Attr(*server["/1"], "threadline.parent.source"), AttributeValue{std::string("tcp_option")});
  for (const char* path : {"/1", "/2", "/3"}) {
    EXPECT_EQ(server[path]->parent_span_id, client[path]->span_id) << path;
    EXPECT_EQ(server[path]->trace_id, client[path]->trace_id) << path;
  }
  EXPECT_EQ(*Attr(*server["/2"], "threadline.parent.source"), AttributeValue{std::string("tuple")});
}

INSTANTIATE_TEST_SUITE_P(BothOrders, TcpOptionAndTupleTest, ::testing::Bool());

}  // namespace
}  // namespace threadline
