// Http1Connection: both directions of real conversations (curl, nginx, python3 http.server,
// Node 20), pairing, pipelining, interim responses, upgrades, gaps, limits and garbage.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/protocols/http1/stitcher.h"
#include "tests/unit/http1_test_util.h"

namespace threadline::http1 {
namespace {

using test::Bytes;
using test::Meta;

constexpr Direction kIn = Direction::kIngress;
constexpr Direction kOut = Direction::kEgress;

struct ConnHarness : Http1Connection::Output {
  explicit ConnHarness(Role role = Role::kServer, Http1Limits limits = {})
      : http1_metrics(metrics), conn(role, limits, http1_metrics) {}
  void OnRequest(const Message& m) override { requests.push_back(m.target); }
  void OnExchange(Exchange&& e) override { exchanges.push_back(std::move(e)); }
  void Data(Direction d, std::string_view s, uint64_t ts, uint32_t tid = 100) {
    conn.OnData(d, Bytes(s), Meta(ts, tid), *this);
  }
  void Gap(Direction d, uint64_t len, GapReason reason, const ChunkMeta& meta) {
    conn.OnGap(d, len, reason, meta, *this);
  }
  void Close(uint64_t ts) { conn.OnClose(ts, *this); }
  uint64_t Failures(std::string_view reason) {
    return metrics
        .GetCounter("threadline_parse_failures_total",
                    {{"protocol", "http1"}, {"reason", std::string(reason)}})
        .Value();
  }
  uint64_t Outcomes(std::string_view outcome) {
    return metrics.GetCounter("threadline_http1_exchanges_total", {{"outcome", std::string(outcome)}})
        .Value();
  }
  uint64_t TotalFailures() { return metrics.CounterTotal("threadline_parse_failures_total"); }

  MetricsRegistry metrics;
  Http1Metrics http1_metrics;
  std::vector<std::string> requests;  // targets of the requests announced, in order
  std::vector<Exchange> exchanges;
  Http1Connection conn;
};

TEST(Http1Stitcher, CurlAgainstNginxKeepAlive) {
  ConnHarness h(Role::kServer);
  h.Data(kIn, test::kCurlGet, 1000, 11);
  std::string ok = test::NginxOk(615);
  h.Data(kOut, std::string_view(ok).substr(0, 200), 2000, 12);
  h.Data(kOut, std::string_view(ok).substr(200), 3000, 13);
  h.Data(kIn, test::kCurlGet, 4000, 11);
  h.Data(kOut, test::kNginxNotModified, 5000, 12);
  ASSERT_EQ(h.exchanges.size(), 2u);
  const Exchange& e = h.exchanges[0];
  EXPECT_EQ(e.outcome, Outcome::kComplete);
  ASSERT_TRUE(e.request && e.response);
  EXPECT_EQ(e.request->method, "GET");
  EXPECT_EQ(e.request->target, "/index.html");
  EXPECT_EQ(e.request->first_chunk.ts_ns, 1000u);
  EXPECT_EQ(e.request->first_chunk.tid, 11u);
  EXPECT_EQ(e.response->status_code, 200);
  EXPECT_EQ(e.response->body_bytes, 615u);
  EXPECT_EQ(e.response->first_chunk.ts_ns, 2000u);
  EXPECT_EQ(e.response->first_chunk.enter_ts_ns, 1990u);
  EXPECT_EQ(e.response->last_chunk.ts_ns, 3000u);
  EXPECT_EQ(e.response->last_chunk.tid, 13u);
  EXPECT_EQ(h.exchanges[1].response->status_code, 304);
  EXPECT_EQ(h.Outcomes("complete"), 2u);
  EXPECT_EQ(h.TotalFailures(), 0u);
  EXPECT_EQ(h.conn.pending_requests(), 0u);
}

TEST(Http1Stitcher, ClientRoleRequestsOnEgress) {
  ConnHarness h(Role::kClient);
  h.Data(kOut, test::kCurlGet, 1000);
  h.Data(kIn, test::kNodeChunked, 2000);
  ASSERT_EQ(h.exchanges.size(), 1u);
  EXPECT_EQ(h.exchanges[0].response->framing, Framing::kChunked);
  EXPECT_EQ(h.exchanges[0].response->body_bytes, 11u);
}

TEST(Http1Stitcher, UnknownRoleDecidedFromFirstBytes) {
  ConnHarness h(Role::kUnknown);
  h.Data(kOut, test::kCurlGet, 1000);
  h.Data(kIn, test::NginxOk(1), 2000);
  ASSERT_EQ(h.exchanges.size(), 1u);
  EXPECT_EQ(h.conn.request_direction(), kOut);
}

TEST(Http1Stitcher, PipelinedRequestsInOneChunk) {
  ConnHarness h;
  h.Data(kIn,
         "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
         "HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"
         "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
         1000);
  EXPECT_EQ(h.requests, (std::vector<std::string>{"/a", "/b", "/c"}));
  EXPECT_EQ(h.conn.pending_requests(), 3u);
  std::string head_reply = test::NginxOk(615).substr(0, test::NginxOk(615).size() - 615);
  h.Data(kOut, test::NginxOk(5) + head_reply + test::NginxOk(7), 2000);
  ASSERT_EQ(h.exchanges.size(), 3u);
  EXPECT_EQ(h.exchanges[0].request->target, "/a");
  EXPECT_EQ(h.exchanges[0].response->body_bytes, 5u);
  EXPECT_EQ(h.exchanges[1].request->method, "HEAD");
  EXPECT_EQ(h.exchanges[1].response->body_bytes, 0u);  // Content-Length: 615, but HEAD
  EXPECT_EQ(h.exchanges[2].request->body_bytes, 3u);
  EXPECT_EQ(h.exchanges[2].response->body_bytes, 7u);
}

TEST(Http1Stitcher, HundredKeepAliveRequests) {
  ConnHarness h;
  for (int i = 0; i < 100; ++i) {
    std::string req = "GET /item/" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
    h.Data(kIn, req, 1000 + 10 * i, 1);
    h.Data(kOut, i % 2 ? std::string(test::kNodeChunked) : test::NginxOk(i), 1005 + 10 * i, 2);
  }
  ASSERT_EQ(h.exchanges.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(h.exchanges[i].request->target, "/item/" + std::to_string(i));
    EXPECT_EQ(h.exchanges[i].response->last_chunk.ts_ns, 1005u + 10 * i);
  }
}

// With a MessagePool the messages an output hands back are reused for the next ones: a
// keep-alive connection's later exchanges carry their own values (nothing stale from the
// message whose buffers they reuse), the pool keeps the buffers, and it stays bounded.
struct PoolHarness : Http1Connection::Output {
  explicit PoolHarness(MessagePool& pool) : http1_metrics(metrics), conn(Role::kServer, {}, http1_metrics, {}, &pool) {}
  void OnExchange(Exchange&& e) override {
    // What a span needs, read before the messages go back to the pool.
    seen.push_back(e.request->method + " " + e.request->target + " " + std::to_string(e.response->status_code) +
                   " " + std::string(e.request->headers.Get("x-request-id").value_or("-")) + " " +
                   std::to_string(e.request->headers.size()));
  }
  MetricsRegistry metrics;
  Http1Metrics http1_metrics;
  Http1Connection conn;
  std::vector<std::string> seen;
};

TEST(Http1Stitcher, PooledMessagesAreReusedAndCleared) {
  MessagePool pool;
  PoolHarness h(pool);
  for (int i = 0; i < 50; ++i) {
    // Every other request carries an extra header: a reused message must not keep it.
    std::string req = "GET /items/" + std::to_string(1000 + i) + "?q=1 HTTP/1.1\r\nHost: x\r\n" +
                      (i % 2 ? "X-Request-Id: " + std::to_string(i) + "\r\n" : std::string()) + "\r\n";
    h.conn.OnData(kIn, Bytes(req), Meta(1000 + 10 * i, 1), h);
    h.conn.OnData(kOut, Bytes(i % 3 ? test::NginxOk(i) : std::string(test::kNginxNotModified)),
                  Meta(1005 + 10 * i, 2), h);
  }
  ASSERT_EQ(h.seen.size(), 50u);
  for (int i = 0; i < 50; ++i) {
    const std::string want = "GET /items/" + std::to_string(1000 + i) + "?q=1 " + (i % 3 ? "200" : "304") + " " +
                             (i % 2 ? std::to_string(i) + " 2" : std::string("- 1"));
    EXPECT_EQ(h.seen[i], want) << i;
  }
  // Both messages of the last exchange came back; the next request takes one of them.
  EXPECT_EQ(pool.size(), 2u);
}

TEST(Http1Stitcher, MessagePoolIsBounded) {
  MessagePool pool;
  for (size_t i = 0; i < MessagePool::kMaxMessages + 10; ++i) {
    auto m = std::make_unique<Message>();
    m->target.assign(i % 2 ? 100 : MessagePool::kMaxRetainedBytes * 2, 'x');
    m->headers.Add("Name", std::string(MessagePool::kMaxRetainedBytes * 2, 'v'));  // too large to keep
    m->trailers.Add("T", "v");
    m->status_code = 200;
    pool.Give(std::move(m));
  }
  EXPECT_EQ(pool.size(), MessagePool::kMaxMessages);
  std::unique_ptr<Message> m = pool.New();
  EXPECT_EQ(pool.size(), MessagePool::kMaxMessages - 1);
  EXPECT_TRUE(m->target.empty());
  EXPECT_GE(m->target.capacity(), 100u);  // the small buffer is kept
  EXPECT_LE(m->headers.capacity(), MessagePool::kMaxRetainedBytes);  // the large one is not
  EXPECT_TRUE(m->headers.empty());
  EXPECT_TRUE(m->trailers.empty());
  EXPECT_EQ(m->status_code, 0);
  EXPECT_EQ(m->headers.fields().begin(), m->headers.fields().end());
  m->headers.Add("A", "b");  // a lent (here: fresh) header buffer works as a new one
  EXPECT_EQ(m->headers.Get("a").value_or(""), "b");
}

// Message::Reset clears member by member (not by rebuilding the Message): a reset Message equals
// a new one in every member, whatever it held, and keeps its buffers.
TEST(Http1Message, ResetEqualsDefault) {
  Message m;
  m.kind = MessageKind::kResponse;
  m.version_minor = 0;
  m.method = "PROPPATCH";
  m.target.assign(300, 't');
  m.status_code = 404;
  m.reason = "Not Found";
  for (int i = 0; i < 70; ++i) m.headers.Add("Host", std::string(i == 3 ? 9000 : 10, 'v'));
  m.headers.Skip();
  m.header_bytes = 1;
  m.framing = Framing::kChunked;
  m.body_bytes = 2;
  m.body_wire_bytes = 3;
  m.body_bytes_not_captured = 4;
  m.truncated = true;
  m.trailers.Add("T", "v");
  m.connection_close = m.upgrade_requested = m.expect_continue = m.te_and_cl = true;
  m.first_chunk = ChunkMeta{1, 2, 3, 4, 5, 6};
  m.last_chunk = ChunkMeta{7, 8, 9, 10, 11, 12};
  const size_t target_capacity = m.target.capacity();
  const size_t header_capacity = m.headers.capacity();
  m.Reset();
  const Message d;
  EXPECT_EQ(m.kind, d.kind);
  EXPECT_EQ(m.version_minor, d.version_minor);
  EXPECT_EQ(m.method, d.method);
  EXPECT_EQ(m.target, d.target);
  EXPECT_EQ(m.status_code, d.status_code);
  EXPECT_EQ(m.reason, d.reason);
  for (const HeaderList* l : {&m.headers, &m.trailers}) {
    EXPECT_EQ(l->size(), 0u);
    EXPECT_TRUE(l->empty());
    EXPECT_EQ(l->fields().begin(), l->fields().end());
    EXPECT_EQ(l->dropped_fields(), 0u);
    EXPECT_FALSE(l->values_truncated());
    EXPECT_FALSE(l->Find("Host"));
    EXPECT_FALSE(l->MayHave("X-Other"));
  }
  EXPECT_FALSE(m.trailers.holds_buffer());
  EXPECT_EQ(m.header_bytes, d.header_bytes);
  EXPECT_EQ(m.framing, d.framing);
  EXPECT_EQ(m.body_bytes, d.body_bytes);
  EXPECT_EQ(m.body_wire_bytes, d.body_wire_bytes);
  EXPECT_EQ(m.body_bytes_not_captured, d.body_bytes_not_captured);
  EXPECT_EQ(m.truncated, d.truncated);
  EXPECT_EQ(m.connection_close, d.connection_close);
  EXPECT_EQ(m.upgrade_requested, d.upgrade_requested);
  EXPECT_EQ(m.expect_continue, d.expect_continue);
  EXPECT_EQ(m.te_and_cl, d.te_and_cl);
  for (const auto& [a, b] : {std::pair{m.first_chunk, d.first_chunk}, std::pair{m.last_chunk, d.last_chunk}}) {
    EXPECT_EQ(a.ts_ns, b.ts_ns);
    EXPECT_EQ(a.enter_ts_ns, b.enter_ts_ns);
    EXPECT_EQ(a.tid, b.tid);
    EXPECT_EQ(a.syscall, b.syscall);
    EXPECT_EQ(a.pos, b.pos);
    EXPECT_EQ(a.ctx_tag, b.ctx_tag);
  }
  EXPECT_EQ(m.target.capacity(), target_capacity);
  EXPECT_EQ(m.headers.capacity(), header_capacity);
  // An obs-fold right after the reset joins nothing (the skipped field before it is forgotten).
  m.headers.AppendToLast("x");
  EXPECT_TRUE(m.headers.empty());
  m.headers.Add("Host", "h");
  m.headers.AppendToLast("more");
  EXPECT_EQ(m.headers.Get("host").value_or(""), "h more");
}

// A client that keeps 20 requests in flight for 500 requests: the queue of pending requests
// never drains, so its storage is moved down as it goes (PendingQueue); every response must
// still pair with its own request, in order.
TEST(Http1Stitcher, PipelineThatNeverDrainsPairsInOrder) {
  ConnHarness h;
  auto request = [](int i) { return "GET /p/" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n"; };
  constexpr int kDepth = 20, kTotal = 500;
  for (int i = 0; i < kDepth; ++i) h.Data(kIn, request(i), 1000 + i, 1);
  for (int i = 0; i < kTotal; ++i) {
    h.Data(kOut, test::NginxOk(i % 50), 100000 + 10 * i, 2);
    if (i + kDepth < kTotal) h.Data(kIn, request(i + kDepth), 100001 + 10 * i, 1);
    ASSERT_EQ(h.exchanges.size(), static_cast<size_t>(i + 1));
    EXPECT_EQ(h.conn.pending_requests(), static_cast<size_t>(std::min(kDepth, kTotal - i - 1)));
  }
  for (int i = 0; i < kTotal; ++i) {
    ASSERT_TRUE(h.exchanges[i].request && h.exchanges[i].response) << i;
    EXPECT_EQ(h.exchanges[i].request->target, "/p/" + std::to_string(i));
    EXPECT_EQ(h.exchanges[i].response->body_bytes, static_cast<uint64_t>(i % 50));
  }
  EXPECT_EQ(h.TotalFailures(), 0u);
}

TEST(Http1Stitcher, ExpectContinueCountsInterim) {
  ConnHarness h;
  h.Data(kIn,
         "PUT /upload HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/7.88.1\r\nContent-Length: 10\r\n"
         "Expect: 100-continue\r\n\r\n",
         1000);
  h.Data(kOut, "HTTP/1.1 100 Continue\r\n\r\n", 2000);
  h.Data(kIn, "0123456789", 3000, 7);
  h.Data(kOut, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 4000);
  ASSERT_EQ(h.exchanges.size(), 1u);
  EXPECT_EQ(h.exchanges[0].interim_responses, 1u);
  EXPECT_TRUE(h.exchanges[0].request->expect_continue);
  EXPECT_EQ(h.exchanges[0].request->last_chunk.tid, 7u);
  EXPECT_EQ(h.exchanges[0].response->status_code, 201);
}

TEST(Http1Stitcher, UpgradeStopsParsing) {
  ConnHarness h;
  h.Data(kIn,
         "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
         1000);
  h.Data(kOut,
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05hello",
         2000);
  h.Data(kIn, std::string("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11), 3000);
  h.Data(kOut, std::string(5000, '\x02'), 4000);
  h.Close(5000);
  ASSERT_EQ(h.exchanges.size(), 1u);
  EXPECT_EQ(h.exchanges[0].outcome, Outcome::kUpgraded);
  EXPECT_TRUE(h.exchanges[0].request->upgrade_requested);
  EXPECT_TRUE(h.conn.upgraded());
  EXPECT_EQ(h.TotalFailures(), 0u);
  EXPECT_EQ(h.Outcomes("upgraded"), 1u);
}

TEST(Http1Stitcher, ConnectTunnelAndRefusal) {
  ConnHarness refused(Role::kClient);
  refused.Data(kOut, "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 1000);
  refused.Data(kIn, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", 2000);
  refused.Data(kOut, "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 3000);
  refused.Data(kIn, test::NginxOk(2), 4000);
  ASSERT_EQ(refused.exchanges.size(), 2u);
  EXPECT_EQ(refused.exchanges[0].response->status_code, 407);
  EXPECT_EQ(refused.exchanges[1].request->target, "http://a/");

  ConnHarness tunnel(Role::kClient);
  tunnel.Data(kOut, "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 1000);
  tunnel.Data(kIn, "HTTP/1.1 200 Connection established\r\n\r\n", 2000);
  tunnel.Data(kOut, std::string("\x16\x03\x01\x02\x00\x01", 6), 3000);
  ASSERT_EQ(tunnel.exchanges.size(), 1u);
  EXPECT_EQ(tunnel.exchanges[0].outcome, Outcome::kTunnel);
  EXPECT_EQ(tunnel.TotalFailures(), 0u);
}

TEST(Http1Stitcher, RequestWithoutResponseThenClose) {
  ConnHarness h;
  h.Data(kIn, test::kCurlGet, 1000);
  EXPECT_TRUE(h.exchanges.empty());
  h.Close(9000);
  ASSERT_EQ(h.exchanges.size(), 1u);
  EXPECT_EQ(h.exchanges[0].outcome, Outcome::kClosedBeforeResponse);
  EXPECT_EQ(h.exchanges[0].closed_ts_ns, 9000u);
  EXPECT_FALSE(h.exchanges[0].response);
  EXPECT_EQ(h.Outcomes("closed_before_response"), 1u);
}

TEST(Http1Stitcher, PythonHttp10UntilClose) {
  Http1Limits limits;
  limits.parser.stored_fields = StoredFields::kAll;  // Server is not a field the agent reads
  ConnHarness h(Role::kServer, limits);
  h.Data(kIn, "GET /stream HTTP/1.0\r\nHost: x\r\n\r\n", 1000);
  h.Data(kOut, test::kPythonUntilClose, 2000, 5);
  EXPECT_TRUE(h.exchanges.empty());
  h.Close(3000);
  ASSERT_EQ(h.exchanges.size(), 1u);
  EXPECT_EQ(h.exchanges[0].outcome, Outcome::kComplete);
  EXPECT_EQ(h.exchanges[0].response->framing, Framing::kUntilClose);
  EXPECT_EQ(h.exchanges[0].response->last_chunk.ts_ns, 2000u);
  EXPECT_EQ(h.exchanges[0].response->headers.Get("Server"), "BaseHTTP/0.6 Python/3.11.7");
}

TEST(Http1Stitcher, ResponseWithoutRequestWhenJoinedMidStream) {
  ConnHarness h;
  h.Data(kIn, "rest of an upload body we joined in the middle of", 1000);
  h.Data(kOut, test::PythonOk(3), 2000);
  h.Data(kIn, test::kCurlGet, 3000);
  h.Data(kOut, test::PythonOk(4), 4000);
  ASSERT_EQ(h.exchanges.size(), 2u);
  EXPECT_EQ(h.exchanges[0].outcome, Outcome::kResponseWithoutRequest);
  EXPECT_FALSE(h.exchanges[0].request);
  EXPECT_EQ(h.exchanges[1].outcome, Outcome::kComplete);
  EXPECT_EQ(h.exchanges[1].response->body_bytes, 4u);
}

TEST(Http1Stitcher, GapInRequestHeadersKeepsPairingAligned) {
  ConnHarness h;
  h.Data(kIn, "GET /lost HTTP/1.1\r\nHo", 1000);
  h.Gap(kIn, 40, GapReason::kLost, Meta(1000));
  h.Data(kIn, "ept: */*\r\n\r\nGET /found HTTP/1.1\r\nHost: x\r\n\r\n", 1100);
  h.Data(kOut, test::NginxOk(1) + test::NginxOk(2), 2000);
  ASSERT_EQ(h.exchanges.size(), 2u);
  EXPECT_EQ(h.exchanges[0].outcome, Outcome::kResponseWithoutRequest);
  EXPECT_EQ(h.exchanges[0].response->body_bytes, 1u);
  EXPECT_EQ(h.exchanges[1].request->target, "/found");
  EXPECT_EQ(h.exchanges[1].response->body_bytes, 2u);
  EXPECT_EQ(h.Failures("gap_in_headers"), 1u);
}

TEST(Http1Stitcher, GapInResponseHeadersMarksResponseLost) {
  ConnHarness h;
  h.Data(kIn, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 1000);
  h.Data(kOut, "HTTP/1.1 200 OK\r\nCont", 2000);
  h.Gap(kOut, 100, GapReason::kLost, Meta(2000));
  h.Data(kOut, "xx\r\n\r\n" + test::NginxOk(9), 3000);
  ASSERT_EQ(h.exchanges.size(), 2u);
  EXPECT_EQ(h.exchanges[0].outcome, Outcome::kResponseLost);
  EXPECT_EQ(h.exchanges[0].request->target, "/a");
  EXPECT_EQ(h.exchanges[1].request->target, "/b");
  EXPECT_EQ(h.exchanges[1].response->body_bytes, 9u);
}

TEST(Http1Stitcher, NotCapturedGapInLargeBody) {
  ConnHarness h;
  h.Data(kIn, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + std::string(4000, 'b'), 1000);
  h.Gap(kIn, 1'000'000 - 4000, GapReason::kNotCaptured, Meta(1000, 3));
  h.Data(kOut, "HTTP/1.1 204 No Content\r\n\r\n", 2000);
  ASSERT_EQ(h.exchanges.size(), 1u);
  EXPECT_EQ(h.exchanges[0].request->body_bytes, 1'000'000u);
  EXPECT_EQ(h.exchanges[0].request->body_bytes_not_captured, 996'000u);
  EXPECT_EQ(h.exchanges[0].request->last_chunk.tid, 3u);
}

TEST(Http1Stitcher, MegabyteHeaderBlockIsBoundedAndCounted) {
  ConnHarness h;
  h.Data(kIn, "GET /huge HTTP/1.1\r\nHost: x\r\n", 1000);
  std::string filler = "X-Filler: " + std::string(990, 'z') + "\r\n";
  for (int i = 0; i < 1024; ++i) {
    h.Data(kIn, filler, 1000);
    ASSERT_LE(h.conn.buffered_bytes(), Http1Limits{}.parser.max_header_bytes);
  }
  h.Data(kIn, "\r\n", 1000);
  h.Data(kOut, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n", 2000);
  h.Data(kIn, test::kCurlGet, 3000);
  h.Data(kOut, test::NginxOk(1), 4000);
  EXPECT_EQ(h.Failures("header_too_large"), 1u);
  EXPECT_FALSE(h.conn.gave_up());
  ASSERT_EQ(h.exchanges.size(), 2u);
  EXPECT_EQ(h.exchanges[0].outcome, Outcome::kResponseWithoutRequest);  // the 431
  EXPECT_EQ(h.exchanges[1].request->target, "/index.html");
}

TEST(Http1Stitcher, TooManyPipelinedRequestsAreDroppedAndPairingHolds) {
  Http1Limits limits;
  limits.max_pending_requests = 4;
  ConnHarness h(Role::kServer, limits);
  std::string reqs, resps;
  for (int i = 0; i < 6; ++i) {
    reqs += "GET /" + std::to_string(i) + " HTTP/1.1\r\n\r\n";
    resps += test::NginxOk(i);
  }
  h.Data(kIn, reqs, 1000);
  EXPECT_EQ(h.Failures("too_many_pipelined"), 2u);
  h.Data(kOut, resps, 2000);
  h.Data(kIn, "GET /after HTTP/1.1\r\n\r\n", 3000);
  h.Data(kOut, test::NginxOk(77), 4000);
  ASSERT_EQ(h.exchanges.size(), 5u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(h.exchanges[i].response->body_bytes, static_cast<uint64_t>(i));
  EXPECT_EQ(h.exchanges[4].request->target, "/after");
  EXPECT_EQ(h.exchanges[4].response->body_bytes, 77u);
  EXPECT_FALSE(h.conn.gave_up());
}

// Responses that answer nothing while a request is still arriving (its body not complete) wait
// behind it to keep the order: max_pending_requests entries wait in all, the rest are counted (found by
// fuzz.http1: they piled up without bound).
TEST(Http1Stitcher, ResponsesAnsweringNothingBehindAnUnfinishedRequestAreBounded) {
  Http1Limits limits;
  limits.max_pending_requests = 4;
  ConnHarness h(Role::kServer, limits);
  h.Data(kIn, "POST /big HTTP/1.1\r\nContent-Length: 100000\r\n\r\nxxxx", 1000);
  std::string resps;
  for (int i = 0; i < 20; ++i) resps += test::NginxOk(i);
  h.Data(kOut, resps, 2000);
  EXPECT_LE(h.conn.pending_requests(), 2 * limits.max_pending_requests);
  // The first answers the POST; of the 19 others, max_pending_requests - 1 wait behind it.
  EXPECT_EQ(h.Failures("too_many_pipelined"), 19u - (limits.max_pending_requests - 1));
  h.Close(3000);
  ASSERT_EQ(h.exchanges.size(), limits.max_pending_requests);
  EXPECT_EQ(h.exchanges[0].request->target, "/big");
  EXPECT_EQ(h.exchanges[0].response->body_bytes, 0u);
  EXPECT_EQ(h.exchanges[1].outcome, Outcome::kResponseWithoutRequest);
}

TEST(Http1Stitcher, GarbageTlsAndHttp2GiveUp) {
  ConnHarness tls;
  std::string hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  for (int i = 0; i < 40; ++i) tls.Data(kIn, hello + std::string(64 * 1024, '\xaa'), 1000);
  EXPECT_TRUE(tls.exchanges.empty());
  EXPECT_TRUE(tls.conn.gave_up());
  EXPECT_EQ(tls.Failures("gave_up"), 1u);
  EXPECT_GE(tls.TotalFailures(), 8u);

  ConnHarness h2;
  h2.Data(kIn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1000);
  h2.Data(kIn, std::string("\x00\x00\x12\x04\x00\x00\x00\x00\x00", 9), 1000);
  h2.Close(2000);
  EXPECT_TRUE(h2.exchanges.empty());
  EXPECT_GE(h2.Failures("bad_start_line"), 1u);

  // Text lines are scanned cheaply for a message start; only a long run of them gives up.
  ConnHarness lines;
  for (int i = 0; i < 20; ++i) lines.Data(kIn, "hello there, not http\r\n", 1000);
  EXPECT_EQ(lines.TotalFailures(), 1u);
  EXPECT_FALSE(lines.conn.gave_up());
  std::string text;
  for (int i = 0; i < 10'000; ++i) text += "hello there, not http\r\n";
  for (int i = 0; i < 10; ++i) lines.Data(kIn, text, 1000);
  EXPECT_TRUE(lines.conn.gave_up());
  EXPECT_TRUE(lines.exchanges.empty());
}

// Interleaved conversation fed whole, one byte at a time, and in random pieces.
TEST(Http1Stitcher, SplitsDoNotChangeExchanges) {
  struct Step {
    Direction dir;
    std::string bytes;
  };
  std::vector<Step> steps = {
      {kIn, std::string(test::kCurlGet) + "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                          "3;e=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"},
      {kOut, test::NginxOk(615) + std::string(test::kNodeChunked)},
      {kIn, "PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"},
      {kOut, "HTTP/1.1 100 Continue\r\n\r\n"},
      {kIn, std::string("data") + std::string(test::kCurlHead)},
      {kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" +
                 test::NginxOk(615).substr(0, test::NginxOk(615).size() - 615)},
      {kIn, "GET /last HTTP/1.0\r\n\r\n"},
      {kOut, std::string(test::kPythonUntilClose)},
  };
  auto run = [&](auto&& split) {
    ConnHarness h;
    uint64_t ts = 1000;
    for (const Step& s : steps) split(h, s.dir, s.bytes, ts += 1000);
    h.Close(ts + 1);
    std::string out;
    for (const Exchange& e : h.exchanges) out += test::Summary(e);
    return out;
  };
  std::string whole = run([](ConnHarness& h, Direction d, const std::string& b, uint64_t ts) {
    h.Data(d, b, ts);
  });
  EXPECT_EQ(std::count(whole.begin(), whole.end(), '\n'), 5 * 3 + 1 * 0);
  std::string bytewise = run([](ConnHarness& h, Direction d, const std::string& b, uint64_t ts) {
    for (size_t i = 0; i < b.size(); ++i) h.Data(d, std::string_view(b).substr(i, 1), ts);
  });
  EXPECT_EQ(bytewise, whole);
  for (uint32_t seed = 1; seed <= 10; ++seed) {
    std::string random = run([seed](ConnHarness& h, Direction d, const std::string& b, uint64_t ts) {
      size_t off = 0;
      for (size_t piece : test::RandomPieces(b.size(), seed * 7919 + static_cast<uint32_t>(b.size()), 40)) {
        h.Data(d, std::string_view(b).substr(off, piece), ts);
        off += piece;
      }
    });
    EXPECT_EQ(random, whole) << "seed " << seed;
  }
}

}  // namespace
}  // namespace threadline::http1
