// Http2Connection: streams from frames, fed at every split point; concurrency, gRPC, resets,
// GOAWAY, CONTINUATION, hostile header blocks, lost bytes and connections joined mid-way.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "agent/protocols/http2/connection.h"
#include "agent/protocols/http2/protocol.h"
#include "tests/unit/http2_test_util.h"

namespace threadline::http2 {
namespace {

using namespace test;

constexpr Direction kIn = Direction::kIngress;
constexpr Direction kOut = Direction::kEgress;

struct Harness {
  explicit Harness(Role role = Role::kServer, bool joined = false, Http2Limits limits = {})
      : http2_metrics(metrics), conn(role, joined, limits, http2_metrics) {}
  void Feed(Direction d, const Bytes& b, uint64_t ts = 1000, uint64_t pos = 0) {
    conn.OnData(d, b, ChunkMeta{ts, ts - 5, 7, 0, pos}, out);
  }
  uint64_t Failures(std::string_view reason) {
    return metrics.GetCounter("threadline_parse_failures_total",
                              {{"protocol", "http2"}, {"reason", std::string(reason)}})
        .Value();
  }
  MetricsRegistry metrics;
  Http2Metrics http2_metrics;
  Http2Connection conn;
  Recorder out;
};

Bytes GetRequest(uint32_t stream, std::string_view path, std::string_view extra_name = "",
                 std::string_view extra_value = "") {
  std::vector<std::pair<std::string, std::string>> f = {
      {":method", "GET"}, {":scheme", "http"}, {":path", std::string(path)}, {":authority", "h:8080"},
      {"user-agent", "curl/7.88.1"}};
  if (!extra_name.empty()) f.emplace_back(std::string(extra_name), std::string(extra_value));
  return Frame(FrameType::kHeaders, kFlagEndHeaders | kFlagEndStream, stream, Block(f));
}

Bytes Response(uint32_t stream, std::string_view status, std::string_view body) {
  Bytes data;
  Append(data, body);
  return Concat({Frame(FrameType::kHeaders, kFlagEndHeaders, stream, Block({{":status", std::string(status)}})),
                 Frame(FrameType::kData, kFlagEndStream, stream, data)});
}

TEST(Http2Connection, PriorKnowledgeRequestAtEverySplitPoint) {
  const Bytes client = Concat({Preface(), Settings(), GetRequest(1, "/items/42?x=1", "traceparent",
                                                                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")});
  const Bytes server = Concat({Settings(), Response(1, "404", "not here")});
  for (size_t cut = 0; cut <= client.size(); ++cut) {
    for (size_t scut : {size_t{0}, size_t{9}, server.size() / 2, server.size()}) {
      Harness h;
      h.Feed(kIn, Bytes(client.begin(), client.begin() + cut), 1000, 0);
      h.Feed(kIn, Bytes(client.begin() + cut, client.end()), 1100, cut);
      h.Feed(kOut, Bytes(server.begin(), server.begin() + scut), 2000, 0);
      h.Feed(kOut, Bytes(server.begin() + scut, server.end()), 2100, scut);
      ASSERT_EQ(h.out.records.size(), 1u) << "cut " << cut << "/" << scut;
      const StreamRecord& r = h.out.records[0];
      EXPECT_EQ(r.stream_id, 1u);
      EXPECT_EQ(r.method, "GET");
      EXPECT_EQ(r.path, "/items/42?x=1");
      EXPECT_EQ(r.authority, "h:8080");
      EXPECT_EQ(r.user_agent, "curl/7.88.1");
      EXPECT_EQ(r.status, 404);
      EXPECT_EQ(r.response.body_bytes, 8u);
      EXPECT_FALSE(r.request.incomplete || r.response.incomplete);
      EXPECT_EQ(h.out.outcomes[0], Outcome::kComplete);
      ASSERT_EQ(h.out.requests, std::vector<uint32_t>{1});
      EXPECT_EQ(h.out.traceparents[0], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
      // The request's first byte: its HEADERS frame, after the preface and SETTINGS.
      EXPECT_EQ(h.out.first_pos[0], kPreface.size() + Settings().size());
      EXPECT_EQ(h.metrics.CounterTotal("threadline_parse_failures_total"), 0u);
    }
  }
}

TEST(Http2Connection, ConcurrentStreamsEndInAnyOrder) {
  Harness h;
  h.Feed(kIn, Concat({Preface(), Settings(), GetRequest(1, "/a"), GetRequest(3, "/b"), GetRequest(5, "/c")}));
  h.Feed(kOut, Concat({Settings(), Response(5, "200", "c"), Response(1, "201", "a"), Response(3, "500", "b")}));
  ASSERT_EQ(h.out.records.size(), 3u);
  EXPECT_EQ(h.out.records[0].path, "/c");
  EXPECT_EQ(h.out.records[0].status, 200);
  EXPECT_EQ(h.out.records[1].path, "/a");
  EXPECT_EQ(h.out.records[2].path, "/b");
  EXPECT_EQ(h.out.records[2].status, 500);
  EXPECT_EQ(h.conn.open_streams(), 0u);
}

TEST(Http2Connection, GrpcUnaryWithTrailersAndMessages) {
  Harness h;
  const Bytes req_headers = Block({{":method", "POST"}, {":scheme", "http"}, {":path", "/helloworld.Greeter/SayHello"},
                                   {":authority", "localhost:50051"}, {"content-type", "application/grpc"}, {"te", "trailers"}});
  h.Feed(kIn, Concat({Preface(), Settings(), Frame(FrameType::kHeaders, kFlagEndHeaders, 1, req_headers),
                      Frame(FrameType::kData, kFlagEndStream, 1, GrpcMessageBytes("abc"))}));
  h.Feed(kOut, Concat({Settings(),
                       Frame(FrameType::kHeaders, kFlagEndHeaders, 1, Block({{":status", "200"}, {"content-type", "application/grpc"}})),
                       Frame(FrameType::kData, 0, 1, Concat({GrpcMessageBytes("hello"), GrpcMessageBytes("x")})),
                       Frame(FrameType::kHeaders, kFlagEndHeaders | kFlagEndStream, 1,
                             Block({{"grpc-status", "0"}, {"grpc-message", ""}}))}));
  ASSERT_EQ(h.out.records.size(), 1u);
  const StreamRecord& r = h.out.records[0];
  EXPECT_EQ(r.content_type, "application/grpc");
  ASSERT_TRUE(r.grpc_status.has_value());
  EXPECT_EQ(*r.grpc_status, 0);
  EXPECT_EQ(r.request.messages, 1u);
  EXPECT_EQ(r.response.messages, 2u);
  ASSERT_EQ(r.response.first_messages.size(), 2u);
  EXPECT_EQ(r.response.first_messages[0].size, 5u);
}

TEST(Http2Connection, TrailersOnlyErrorResetAndGoAway) {
  Harness h;
  const Bytes grpc_req = Frame(FrameType::kHeaders, kFlagEndHeaders | kFlagEndStream, 1,
                               Block({{":method", "POST"}, {":path", "/p.S/M"}, {"content-type", "application/grpc"}}));
  h.Feed(kIn, Concat({Preface(), grpc_req, GetRequest(3, "/reset"), GetRequest(5, "/late"), GetRequest(7, "/later")}));
  // Trailers-Only: the status in the response headers, which end the stream.
  h.Feed(kOut, Frame(FrameType::kHeaders, kFlagEndHeaders | kFlagEndStream, 1,
                     Block({{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", "12"}})));
  h.Feed(kIn, Frame(FrameType::kRstStream, 0, 3, {0, 0, 0, 8}));  // CANCEL by the client
  h.Feed(kOut, Frame(FrameType::kGoAway, 0, 0, {0, 0, 0, 5, 0, 0, 0, 0}));  // last stream 5
  ASSERT_EQ(h.out.records.size(), 3u);
  EXPECT_EQ(*h.out.records[0].grpc_status, 12);
  EXPECT_EQ(h.out.outcomes[1], Outcome::kReset);
  EXPECT_EQ(*h.out.records[1].reset_code, 8u);
  EXPECT_TRUE(h.out.records[1].reset_by_client);
  EXPECT_EQ(h.out.outcomes[2], Outcome::kRefused);
  EXPECT_EQ(h.out.records[2].path, "/later");
  EXPECT_EQ(h.conn.open_streams(), 1u);  // stream 5 may still be answered
}

TEST(Http2Connection, HeaderBlockAcrossContinuationFrames) {
  Harness h;
  const Bytes block = Block({{":method", "GET"}, {":path", "/split"}, {"x-request-id", "abc"}});
  const Bytes a(block.begin(), block.begin() + 5), b(block.begin() + 5, block.begin() + 12),
      c(block.begin() + 12, block.end());
  h.Feed(kIn, Concat({Preface(), Frame(FrameType::kHeaders, kFlagEndStream, 1, a),
                      Frame(FrameType::kContinuation, 0, 1, b),
                      Frame(FrameType::kContinuation, kFlagEndHeaders, 1, c)}));
  h.Feed(kOut, Response(1, "200", ""));
  ASSERT_EQ(h.out.records.size(), 1u);
  EXPECT_EQ(h.out.records[0].path, "/split");
}

TEST(Http2Connection, EndlessContinuationIsCountedAndBounded) {
  Http2Limits limits;
  limits.max_header_block_bytes = 1024;
  Harness h(Role::kServer, false, limits);
  h.Feed(kIn, Concat({Preface(), Frame(FrameType::kHeaders, 0, 1, Bytes(100, 0x00))}));
  for (int i = 0; i < 200; ++i) {
    h.Feed(kIn, Frame(FrameType::kContinuation, 0, 1, Bytes(100, 0x41)));
    ASSERT_LE(h.conn.buffered_bytes(), 2048u);
  }
  EXPECT_EQ(h.Failures("header_block_too_large"), 1u);
  // The connection goes on: a later stream is still seen (its literals need no table).
  h.Feed(kIn, Frame(FrameType::kContinuation, kFlagEndHeaders, 1, {}));
  h.Feed(kIn, GetRequest(3, "/after"));
  h.Feed(kOut, Response(3, "200", ""));
  ASSERT_EQ(h.out.records.size(), 1u);
  EXPECT_EQ(h.out.records[0].path, "/after");
}

TEST(Http2Connection, HostileBlocksAreCountedNeverCrash) {
  Harness h;
  h.Feed(kIn, Concat({Preface(), Frame(FrameType::kHeaders, kFlagEndHeaders, 1, {0xbe})}));  // bad index
  h.Feed(kIn, Frame(FrameType::kHeaders, kFlagEndHeaders | kFlagPadded, 3, {200, 0x82}));   // pad > length
  h.Feed(kIn, Frame(FrameType::kContinuation, kFlagEndHeaders, 9, {0x82}));                // no block open
  EXPECT_EQ(h.Failures("hpack_bad_index"), 1u);
  EXPECT_EQ(h.Failures("bad_frame"), 1u);
  EXPECT_EQ(h.Failures("continuation_expected"), 1u);
}

TEST(Http2Connection, TooManyStreamsAreCountedAndHpackStaysInStep) {
  Http2Limits limits;
  limits.max_streams = 2;
  Harness h(Role::kServer, false, limits);
  // Stream 5's block inserts into the dynamic table; stream 7 refers to it.
  h.Feed(kIn, Concat({Preface(), GetRequest(1, "/1"), GetRequest(3, "/3"),
                      Frame(FrameType::kHeaders, kFlagEndHeaders | kFlagEndStream, 5,
                            Block({{":path", "/dyn"}}, /*incremental=*/true))}));
  h.Feed(kOut, Response(1, "200", ""));
  h.Feed(kIn, Frame(FrameType::kHeaders, kFlagEndHeaders | kFlagEndStream, 7, {0x82, 0xbe}));
  h.Feed(kOut, Response(7, "200", ""));
  EXPECT_EQ(h.Failures("too_many_streams"), 1u);
  ASSERT_EQ(h.out.records.size(), 2u);
  EXPECT_EQ(h.out.records[1].path, "/dyn");
  EXPECT_FALSE(h.out.records[1].request.incomplete);
}

TEST(Http2Connection, JoinedMidwayKeepsLiteralsAndFlagsTheRest) {
  Harness h(Role::kServer, /*joined=*/true);
  // A dynamic reference (index 62: inserted before we joined) and literals.
  Bytes block{0x82, 0xbe};
  const Bytes lit = Block({{":path", "/mid"}});
  block.insert(block.end(), lit.begin(), lit.end());
  h.Feed(kIn, Frame(FrameType::kHeaders, kFlagEndHeaders | kFlagEndStream, 41, block));
  h.Feed(kOut, Response(41, "200", "ok"));
  ASSERT_EQ(h.out.records.size(), 1u);
  EXPECT_EQ(h.out.records[0].stream_id, 41u);
  EXPECT_EQ(h.out.records[0].method, "GET");
  EXPECT_EQ(h.out.records[0].path, "/mid");
  EXPECT_TRUE(h.out.records[0].request.incomplete);
  EXPECT_TRUE(h.out.records[0].joined_mid_connection);
  EXPECT_EQ(h.metrics.GetCounter("threadline_http2_unknown_header_fields_total").Value(), 1u);
  EXPECT_EQ(h.metrics.GetCounter("threadline_http2_connections_joined_total").Value(), 1u);
}

TEST(Http2Connection, LostBytesInDataKeepFramingLostHeaderResyncsAtAChunk) {
  Harness h;
  h.Feed(kIn, Concat({Preface(), GetRequest(1, "/big")}));
  const Bytes headers = Frame(FrameType::kHeaders, kFlagEndHeaders, 1, Block({{":status", "200"}}));
  Bytes data_header = Frame(FrameType::kData, kFlagEndStream, 1, Bytes(5000, 'x'));
  data_header.resize(kFrameHeaderBytes + 100);  // 100 payload bytes captured, 4900 lost
  h.Feed(kOut, Concat({headers, data_header}));
  h.conn.OnGap(kOut, 4900, GapReason::kNotCaptured, ChunkMeta{3000, 2990, 7, 0, 0}, h.out);
  ASSERT_EQ(h.out.records.size(), 1u);
  EXPECT_EQ(h.out.records[0].response.body_bytes, 5000u);
  // A gap over a frame header: framing is lost until a chunk starts with a plausible frame.
  h.Feed(kIn, GetRequest(3, "/x"));
  h.conn.OnGap(kOut, 3, GapReason::kLost, ChunkMeta{4000, 3990, 7, 0, 0}, h.out);
  h.Feed(kOut, Bytes{0xde, 0xad, 0xbe, 0xef});  // not a frame: still lost
  h.Feed(kOut, Response(3, "204", ""));         // a whole frame run: found again
  EXPECT_EQ(h.Failures("framing_lost"), 1u);
  ASSERT_EQ(h.out.records.size(), 2u);
  EXPECT_EQ(h.out.records[1].status, 204);
}

TEST(Http2Connection, CloseEndsOpenStreamsEvictionAbandonsThem) {
  Harness h;
  h.Feed(kIn, Concat({Preface(), GetRequest(1, "/a"), GetRequest(3, "/b")}));
  h.conn.OnClose(9000, false, h.out);
  ASSERT_EQ(h.out.records.size(), 2u);
  EXPECT_EQ(h.out.outcomes[0], Outcome::kClosedBeforeResponse);
  // Response bytes lost while a stream was open: if its end never shows, it was in them.
  Harness l;
  l.Feed(kIn, Concat({Preface(), GetRequest(1, "/a"), GetRequest(3, "/b")}));
  l.Feed(kOut, Response(3, "200", ""));
  l.conn.OnGap(kOut, 500, GapReason::kNotCaptured, ChunkMeta{5000, 4990, 7, 0, 0}, l.out);
  l.conn.OnClose(9000, false, l.out);
  ASSERT_EQ(l.out.records.size(), 2u);
  EXPECT_EQ(l.out.outcomes[1], Outcome::kResponseLost);
  Harness e;
  e.Feed(kIn, Concat({Preface(), GetRequest(1, "/a")}));
  e.conn.OnClose(9000, true, e.out);
  EXPECT_TRUE(e.out.records.empty());
  EXPECT_EQ(e.metrics.GetCounter("threadline_http2_streams_abandoned_total").Value(), 1u);
}

TEST(Http2Connection, RoleFromThePrefaceWhenTheKernelDidNotKnow) {
  Harness h(Role::kUnknown);
  h.Feed(kOut, Settings());  // the server side may speak first
  h.Feed(kIn, Concat({Preface(), GetRequest(1, "/a")}));
  h.Feed(kOut, Response(1, "200", ""));
  EXPECT_EQ(h.conn.request_direction(), kIn);
  ASSERT_EQ(h.out.records.size(), 1u);
}

TEST(Http2Detect, PrefaceServerSettingsAndMidwayFrames) {
  EXPECT_TRUE(LooksLikeFrames(Settings()));
  EXPECT_TRUE(LooksLikeFrames(Concat({Settings(), GetRequest(1, "/")})));
  Bytes http1;
  Append(http1, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_FALSE(LooksLikeFrames(http1));
  Bytes tls{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03};
  EXPECT_FALSE(LooksLikeFrames(tls));
}

}  // namespace
}  // namespace threadline::http2
