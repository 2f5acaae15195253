// h2c by Upgrade (RFC 9113 §3.2) through the dispatcher: the HTTP/1 parser sees the upgrade
// request and its 101, hands the connection to HTTP/2, and the upgraded request comes out as
// stream 1 with the identity it was announced with. Every split point of both directions, the
// client's preface arriving before the 101 was seen, refused upgrades (held bytes replayed as
// HTTP/1) and upgrades to protocols the agent does not parse.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "agent/protocols/dispatcher.h"
#include "tests/unit/http2_test_util.h"

namespace threadline {
namespace {

using namespace http2::test;
using http2::FrameType;
using http2::kFlagAck;
using http2::kFlagEndHeaders;
using http2::kFlagEndStream;

constexpr Direction kIn = Direction::kIngress;
constexpr Direction kOut = Direction::kEgress;

const std::string kTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

Bytes Text(std::string_view s) {
  Bytes b;
  Append(b, s);
  return b;
}

Bytes UpgradeRequest(std::string_view path = "/a", std::string_view upgrade = "h2c") {
  return Text("GET " + std::string(path) + " HTTP/1.1\r\nHost: h:8080\r\nUser-Agent: curl/7.88.1\r\n"
              "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: " + std::string(upgrade) + "\r\n"
              "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\ntraceparent: " + kTraceparent +
              "\r\nX-Request-Id: r-7\r\n\r\n");
}

Bytes SwitchingProtocols(std::string_view upgrade = "h2c") {
  return Text("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " +
              std::string(upgrade) + "\r\n\r\n");
}

Bytes Headers(uint32_t stream, const std::vector<std::pair<std::string, std::string>>& fields,
              bool end_stream) {
  return Frame(FrameType::kHeaders, kFlagEndHeaders | (end_stream ? kFlagEndStream : 0), stream,
               Block(fields));
}

Bytes Data(uint32_t stream, std::string_view body) {
  return Frame(FrameType::kData, kFlagEndStream, stream, Text(body));
}

// What the server writes after the 101 (its SETTINGS, then stream 1's response), and what the
// client writes after reading it (its preface, then a second request on stream 3).
Bytes ServerAfter101() {
  return Concat({Settings(), Headers(1, {{":status", "200"}}, false), Data(1, "hello")});
}
Bytes ClientAfter101() {
  return Concat({Preface(), Settings(), Frame(FrameType::kSettings, kFlagAck, 0, {}),
                 Headers(3, {{":method", "GET"}, {":scheme", "http"}, {":path", "/b"},
                             {":authority", "h:8080"}}, true)});
}
Bytes ServerStream3() {
  return Concat({Frame(FrameType::kSettings, kFlagAck, 0, {}), Headers(3, {{":status", "404"}}, false),
                 Data(3, "none")});
}

struct Seen {
  ProtocolId protocol = ProtocolId::kHttp1;
  uint32_t stream_id = 0;
  uint64_t first_pos = 0, first_ts = 0;
  std::string traceparent;
};

struct Recorder : RecordSink {
  void OnRequest(const ConnectionInfo&, Role r, const RequestView& v) override {
    role = r;
    requests.push_back(Read(v));
  }
  void OnRecord(const ConnectionInfo&, Role r, Record&& rec) override {
    role = r;
    records.push_back(Read(rec.request));
    outcomes.push_back(rec.outcome);
    response_last_ts.push_back(rec.response.seen ? rec.response.last.ts_ns : 0);
    if (auto* s = std::get_if<http2::StreamRecord>(&rec.detail)) streams.push_back(*s);
    if (auto* e = std::get_if<http1::Exchange>(&rec.detail)) {
      exchanges.push_back(e->response ? e->response->status_code : 0);
      exchange_targets.push_back(e->request ? e->request->target : "");
    }
  }
  static Seen Read(const RequestView& v) {
    Seen s{v.protocol, v.stream_id, v.edge.first.pos, v.edge.first.ts_ns, ""};
    std::string_view tp[1];
    if (v.carrier && v.carrier->Values("traceparent", tp) == 1) s.traceparent = std::string(tp[0]);
    return s;
  }
  Role role = Role::kUnknown;
  std::vector<Seen> requests, records;
  std::vector<Outcome> outcomes;
  std::vector<uint64_t> response_last_ts;
  std::vector<http2::StreamRecord> streams;
  std::vector<uint16_t> exchanges;
  std::vector<std::string> exchange_targets;
};

// One connection through the dispatcher, each direction's stream positions numbered.
struct Conn {
  explicit Conn(Role role = Role::kServer) : dispatcher(DispatcherConfig{}, out, metrics) {
    c.id = ConnId{10, 3, 1};
    c.role = role;
    dispatcher.OnConnectionOpened(c);
  }
  void Feed(Direction d, const Bytes& b, uint64_t ts) {
    if (b.empty()) return;
    uint64_t& pos = d == kIn ? in_pos : out_pos;
    dispatcher.OnStreamData(c, d, pos, b, ChunkMeta{ts, ts - 5, 7, 0, pos});
    pos += b.size();
  }
  // `b` cut at `at` into two chunks (ts, ts + 1).
  void FeedSplit(Direction d, const Bytes& b, size_t at, uint64_t ts) {
    Feed(d, Bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(at)), ts);
    Feed(d, Bytes(b.begin() + static_cast<std::ptrdiff_t>(at), b.end()), ts + 1);
  }
  void Close() { dispatcher.OnConnectionClosed(c, CloseReason::kSyscall); }
  uint64_t Switches() {
    return metrics.GetCounter("threadline_protocol_switches_total", {{"protocol", "http2"}}).Value();
  }
  uint64_t Http2Failures() {
    uint64_t n = 0;
    for (std::string_view r : {"bad_preface", "bad_frame", "framing_lost", "continuation_expected"})
      n += metrics.GetCounter("threadline_parse_failures_total",
                              {{"protocol", "http2"}, {"reason", std::string(r)}}).Value();
    return n;
  }
  MetricsRegistry metrics;
  Recorder out;
  ProtocolDispatcher dispatcher;
  ConnectionInfo c;
  uint64_t in_pos = 0, out_pos = 0;
};

// What every ordering and split must produce: the upgraded request as stream 1 (announced as
// an HTTP/1 request, stream id 0, at its first byte), then stream 3, both as HTTP/2 records.
void ExpectUpgradedStreams(const Conn& conn, uint64_t response1_ts, const std::string& where) {
  SCOPED_TRACE(where);
  const Recorder& out = conn.out;
  ASSERT_EQ(out.requests.size(), 2u);
  EXPECT_EQ(out.requests[0].protocol, ProtocolId::kHttp1);
  EXPECT_EQ(out.requests[0].stream_id, 0u);
  EXPECT_EQ(out.requests[0].first_pos, 0u);
  EXPECT_EQ(out.requests[0].traceparent, kTraceparent);
  EXPECT_EQ(out.requests[1].stream_id, 3u);
  ASSERT_EQ(out.records.size(), 2u);
  EXPECT_TRUE(out.exchanges.empty());  // no HTTP/1 record of the upgrade request (no 101 span)
  ASSERT_EQ(out.streams.size(), 2u);
  // Stream 1 first: its record keeps the HTTP/1 announcement's identity.
  EXPECT_EQ(out.records[0].stream_id, 0u);
  EXPECT_EQ(out.records[0].first_pos, out.requests[0].first_pos);
  EXPECT_EQ(out.records[0].first_ts, out.requests[0].first_ts);
  EXPECT_EQ(out.records[0].traceparent, kTraceparent);
  const http2::StreamRecord& s1 = out.streams[0];
  EXPECT_EQ(s1.stream_id, 1u);
  EXPECT_EQ(s1.method, "GET");
  EXPECT_EQ(s1.path, "/a");
  EXPECT_EQ(s1.authority, "h:8080");
  EXPECT_EQ(s1.scheme, "http");
  EXPECT_EQ(s1.user_agent, "curl/7.88.1");
  EXPECT_EQ(s1.status, 200);
  EXPECT_EQ(s1.response.body_bytes, 5u);
  EXPECT_FALSE(s1.request.incomplete);
  EXPECT_FALSE(s1.response.incomplete);
  EXPECT_EQ(out.outcomes[0], Outcome::kComplete);
  EXPECT_EQ(out.response_last_ts[0], response1_ts);
  const http2::StreamRecord& s3 = out.streams[1];
  EXPECT_EQ(s3.stream_id, 3u);
  EXPECT_EQ(out.records[1].stream_id, 3u);
  EXPECT_EQ(s3.path, "/b");
  EXPECT_EQ(s3.status, 404);
  EXPECT_EQ(out.outcomes[1], Outcome::kComplete);
  EXPECT_EQ(out.role, Role::kServer);
}

TEST(H2cUpgrade, ServerSideAtEverySplitPointOfTheResponse) {
  // The 101 and the HTTP/2 bytes after it, cut anywhere (Go's h2c writes them in one go, and
  // curl reads them in one read).
  const Bytes response = Concat({SwitchingProtocols(), ServerAfter101()});
  for (size_t cut = 0; cut <= response.size(); ++cut) {
    Conn conn;
    conn.Feed(kIn, UpgradeRequest(), 1000);
    conn.FeedSplit(kOut, response, cut, 2000);
    conn.Feed(kIn, ClientAfter101(), 3000);
    conn.Feed(kOut, ServerStream3(), 4000);
    ExpectUpgradedStreams(conn, cut == response.size() ? 2000 : 2001, "cut " + std::to_string(cut));
    EXPECT_EQ(conn.Switches(), 1u);
    EXPECT_EQ(conn.Http2Failures(), 0u);
  }
}

TEST(H2cUpgrade, ServerSideAtEverySplitPointOfTheClientAfter101) {
  const Bytes request = Concat({UpgradeRequest(), ClientAfter101()});
  const size_t upgrade_end = UpgradeRequest().size();
  // From the end of the request line on: detection needs a first chunk with a whole one.
  for (size_t cut = 17; cut <= request.size(); ++cut) {
    Conn conn;
    // Bytes the client sent before the agent saw the 101 (a client that did not wait, or a
    // read reported before the write of the 101): held, then handed over.
    const size_t before = std::max(cut, upgrade_end);
    conn.Feed(kIn, Bytes(request.begin(), request.begin() + static_cast<std::ptrdiff_t>(cut)), 1000);
    if (before > cut)
      conn.Feed(kIn, Bytes(request.begin() + static_cast<std::ptrdiff_t>(cut),
                           request.begin() + static_cast<std::ptrdiff_t>(before)), 1001);
    conn.Feed(kOut, Concat({SwitchingProtocols(), ServerAfter101()}), 2000);
    conn.Feed(kIn, Bytes(request.begin() + static_cast<std::ptrdiff_t>(before), request.end()), 3000);
    conn.Feed(kOut, ServerStream3(), 4000);
    ExpectUpgradedStreams(conn, 2000, "cut " + std::to_string(cut));
    EXPECT_EQ(conn.Http2Failures(), 0u);
  }
}

TEST(H2cUpgrade, ClientSideAndRoleFromTheRequestDirection) {
  for (Role role : {Role::kClient, Role::kUnknown}) {
    Conn conn(role);
    conn.Feed(kOut, UpgradeRequest(), 1000);
    conn.Feed(kIn, Concat({SwitchingProtocols(), ServerAfter101()}), 2000);
    conn.Feed(kOut, ClientAfter101(), 3000);
    conn.Feed(kIn, ServerStream3(), 4000);
    ASSERT_EQ(conn.out.streams.size(), 2u);
    EXPECT_EQ(conn.out.role, Role::kClient);
    EXPECT_EQ(conn.out.records[0].stream_id, 0u);
    EXPECT_EQ(conn.out.streams[0].status, 200);
    EXPECT_EQ(conn.out.streams[1].status, 404);
    EXPECT_EQ(conn.out.response_last_ts[0], 2000u);
  }
}

TEST(H2cUpgrade, ClosedBeforeStreamOneIsAnsweredIsReportedAsHttp2) {
  Conn conn;
  conn.Feed(kIn, UpgradeRequest(), 1000);
  conn.Feed(kOut, Concat({SwitchingProtocols(), Settings()}), 2000);
  conn.Close();
  ASSERT_EQ(conn.out.streams.size(), 1u);
  EXPECT_EQ(conn.out.outcomes[0], Outcome::kClosedBeforeResponse);
  EXPECT_EQ(conn.out.records[0].stream_id, 0u);
  EXPECT_EQ(conn.out.streams[0].path, "/a");
}

TEST(H2cUpgrade, RefusedUpgradeReplaysHeldBytesAsHttp1) {
  // The server ignores the Upgrade (most HTTP/1 servers do) and the client had pipelined a
  // second request behind it: both exchanges are HTTP/1, in order.
  const Bytes second = Text("GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
  const Bytes request = Concat({UpgradeRequest(), second});
  for (size_t cut = 17; cut <= request.size(); ++cut) {
    SCOPED_TRACE(cut);
    Conn conn;
    conn.FeedSplit(kIn, request, cut, 1000);
    conn.Feed(kOut, Text("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n"), 2000);
    EXPECT_EQ(conn.out.exchanges, (std::vector<uint16_t>{200, 204}));
    EXPECT_EQ(conn.out.exchange_targets, (std::vector<std::string>{"/a", "/next"}));
    EXPECT_EQ(conn.Switches(), 0u);
  }
}

TEST(H2cUpgrade, UpgradeAcceptedAfterARefusedOneInTheSameResponseChunk) {
  // Two upgrade requests pipelined: the second waits behind the first. The server refuses the
  // first (200) and accepts the second (101) in one write, so the second request is parsed
  // from held bytes and handed to HTTP/2 inside one call: it is still announced once, whole,
  // before its stream's record (found by the fuzzer: it was announced moved-from, empty).
  const Bytes first = UpgradeRequest("/a");
  const Bytes second = UpgradeRequest("/b2");
  Conn conn;
  conn.Feed(kIn, Concat({first, second}), 1000);
  conn.Feed(kOut, Concat({Text("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), SwitchingProtocols(),
                          ServerAfter101()}), 2000);
  conn.Feed(kIn, Concat({Preface(), Settings()}), 3000);
  conn.Close();
  ASSERT_EQ(conn.out.requests.size(), 2u);
  EXPECT_EQ(conn.out.requests[1].first_pos, first.size());
  EXPECT_EQ(conn.out.requests[1].traceparent, kTraceparent);
  EXPECT_EQ(conn.out.exchange_targets, std::vector<std::string>{"/a"});
  ASSERT_EQ(conn.out.streams.size(), 1u);
  EXPECT_EQ(conn.out.streams[0].path, "/b2");
  EXPECT_EQ(conn.out.streams[0].status, 200);
  EXPECT_EQ(conn.Switches(), 1u);
}

TEST(H2cUpgrade, UpgradeToAnotherProtocolStaysAnHttp1Span) {
  Conn conn;
  conn.Feed(kIn, UpgradeRequest("/ws", "websocket"), 1000);
  conn.Feed(kIn, Bytes{0x81, 0x02, 'h', 'i'}, 1001);  // a frame sent before the 101 was seen
  conn.Feed(kOut, Concat({SwitchingProtocols("websocket"), Bytes{0x81, 0x00}}), 2000);
  conn.Feed(kIn, Bytes{0x81, 0x02, 'h', 'o'}, 3000);
  conn.Close();
  EXPECT_EQ(conn.out.exchanges, std::vector<uint16_t>{101});
  EXPECT_EQ(conn.out.outcomes, std::vector<Outcome>{Outcome::kUpgraded});
  EXPECT_EQ(conn.Switches(), 0u);
  EXPECT_EQ(conn.metrics.GetCounter("threadline_parse_failures_total",
                                    {{"protocol", "http1"}, {"reason", "bad_start_line"}}).Value(), 0u);
}

TEST(H2cUpgrade, HoldIsBoundedAClientThatNeverWaitsIsParsedAsHttp1) {
  Conn conn;
  conn.Feed(kIn, UpgradeRequest(), 1000);
  const std::string body(1000, 'x');
  const std::string post = "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + body;
  size_t sent = 0;
  uint64_t ts = 1001;
  while (sent <= http1::Http1Connection::kMaxHeldBytes) {
    conn.Feed(kIn, Text(post), ts++);
    sent += post.size();
  }
  // The hold gave up: the POSTs were parsed and wait for their responses.
  conn.Close();
  EXPECT_GE(conn.out.requests.size(), sent / post.size());
  EXPECT_EQ(conn.Switches(), 0u);
}

}  // namespace
}  // namespace threadline
