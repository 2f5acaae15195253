// HTTP/1 as a protocol of the neutral model: what the dispatcher hands the spans stage (request
// views with carrier, evidence and stream positions; records carrying the exchange).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "agent/protocols/dispatcher.h"
#include "tests/unit/conn_test_util.h"

namespace threadline {
namespace {

struct Seen {
  uint32_t stream_id = 0;
  uint64_t first_pos = 0;
  uint64_t last_ts = 0;
  std::string target, request_id, forwarded_for;
  std::vector<std::string> traceparents;
  Role role = Role::kUnknown;
};

struct Recorder : RecordSink {
  void OnRequest(const ConnectionInfo&, Role role, const RequestView& v) override {
    Seen s;
    s.stream_id = v.stream_id;
    s.first_pos = v.edge.first.pos;
    s.last_ts = v.edge.last.ts_ns;
    s.target = v.evidence.target;
    s.request_id = v.evidence.request_id;
    s.forwarded_for = v.evidence.forwarded_for;
    std::string_view tp[4];
    size_t n = v.carrier ? v.carrier->Values("TraceParent", tp) : 0;
    for (size_t i = 0; i < n && i < 4; ++i) s.traceparents.emplace_back(tp[i]);
    s.role = role;
    requests.push_back(s);
  }
  void OnRecord(const ConnectionInfo&, Role, Record&& r) override {
    ASSERT_TRUE(std::holds_alternative<http1::Exchange>(r.detail));
    const auto& e = std::get<http1::Exchange>(r.detail);
    ASSERT_TRUE(e.request != nullptr);
    // The neutral request is the exchange's request, pointed at where the record holds it.
    EXPECT_EQ(r.request.evidence.target.data(), e.request->target.data());
    EXPECT_EQ(r.request.edge.first.pos, e.request->first_chunk.pos);
    records.push_back(r.request.edge.first.pos);
    statuses.push_back(e.response ? e.response->status_code : 0);
  }
  std::vector<Seen> requests;
  std::vector<uint64_t> records;
  std::vector<int> statuses;
};

TEST(Http1ProtocolTest, RequestViewsCarryPositionsCarrierAndEvidence) {
  MetricsRegistry metrics;
  Recorder out;
  ProtocolDispatcher dispatcher(DispatcherConfig{}, out, metrics);
  ConnectionInfo c;
  c.id = ConnId{10, 3, 1};
  c.role = Role::kUnknown;  // decided from the direction requests travel
  dispatcher.OnConnectionOpened(c);

  const std::string first =
      "GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-Request-Id: r-1\r\n"
      "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
  const std::string second = "GET /b HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.1.1.1, 10.2.2.2\r\n\r\n";
  const std::string both = first + second;  // pipelined in one read at stream position 500
  ChunkMeta meta{2000, 1990, 77, 0, 500};
  dispatcher.OnStreamData(c, Direction::kIngress, 500,
                          {reinterpret_cast<const uint8_t*>(both.data()), both.size()}, meta);
  ASSERT_EQ(out.requests.size(), 2u);
  EXPECT_EQ(out.requests[0].role, Role::kServer);
  EXPECT_EQ(out.requests[0].first_pos, 500u);
  EXPECT_EQ(out.requests[1].first_pos, 500u + first.size());
  EXPECT_EQ(out.requests[0].target, "/a?x=1");
  EXPECT_EQ(out.requests[0].request_id, "r-1");
  EXPECT_EQ(out.requests[0].traceparents,
            std::vector<std::string>{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"});
  EXPECT_EQ(out.requests[1].forwarded_for, "10.1.1.1, 10.2.2.2");
  EXPECT_TRUE(out.requests[1].traceparents.empty());

  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  ChunkMeta rmeta{3000, 2990, 77, 0, 0};
  dispatcher.OnStreamData(c, Direction::kEgress, 0,
                          {reinterpret_cast<const uint8_t*>(resp.data()), resp.size()}, rmeta);
  EXPECT_EQ(out.records, (std::vector<uint64_t>{500u, 500u + first.size()}));
  EXPECT_EQ(out.statuses, (std::vector<int>{200, 404}));
}

// Ended connections' parsers are pooled by the protocol and reused: nothing of a connection
// (role, request direction, requests waiting, a half-read message) may reach the next one.
TEST(Http1ProtocolTest, ConnectionsOneAfterAnotherStartFresh) {
  MetricsRegistry metrics;
  Recorder out;
  ProtocolDispatcher dispatcher(DispatcherConfig{}, out, metrics);
  auto feed = [&](const ConnectionInfo& c, Direction dir, const std::string& bytes, uint64_t pos) {
    dispatcher.OnStreamData(c, dir, pos, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                            ChunkMeta{.ts_ns = 1000 + pos, .pos = pos});
  };
  const std::string request = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string response = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";

  // A server connection closed before its response, then one evicted with a request waiting
  // and another half read.
  ConnectionInfo server;
  server.id = ConnId{10, 3, 1};
  server.role = Role::kServer;
  dispatcher.OnConnectionOpened(server);
  feed(server, Direction::kIngress, request, 0);
  dispatcher.OnConnectionClosed(server, CloseReason::kSyscall);
  ASSERT_EQ(out.statuses, std::vector<int>{0});
  ConnectionInfo evicted = server;
  evicted.id.gen = 2;
  dispatcher.OnConnectionOpened(evicted);
  feed(evicted, Direction::kIngress, request + "GET /half HTTP/1.1\r\nHo", 0);
  dispatcher.OnConnectionClosed(evicted, CloseReason::kEvicted);
  ASSERT_EQ(out.statuses.size(), 1u);  // evicted: nothing reported

  // A client connection on the same fd: requests go out, the response comes in.
  ConnectionInfo client = server;
  client.id.gen = 3;
  client.role = Role::kClient;
  out = Recorder{};
  dispatcher.OnConnectionOpened(client);
  feed(client, Direction::kEgress, request, 0);
  feed(client, Direction::kIngress, response, 0);
  ASSERT_EQ(out.requests.size(), 1u);
  EXPECT_EQ(out.requests[0].role, Role::kClient);
  EXPECT_EQ(out.requests[0].target, "/a");
  EXPECT_EQ(out.statuses, std::vector<int>{201});
  dispatcher.OnConnectionClosed(client, CloseReason::kSyscall);
  EXPECT_EQ(out.statuses, std::vector<int>{201});  // nothing left waiting

  // Role unknown: decided from this connection's bytes alone.
  ConnectionInfo unknown = server;
  unknown.id.gen = 4;
  unknown.role = Role::kUnknown;
  out = Recorder{};
  dispatcher.OnConnectionOpened(unknown);
  feed(unknown, Direction::kIngress, request, 0);
  feed(unknown, Direction::kEgress, response, 0);
  ASSERT_EQ(out.requests.size(), 1u);
  EXPECT_EQ(out.requests[0].role, Role::kServer);
  EXPECT_EQ(out.requests[0].first_pos, 0u);
  EXPECT_EQ(out.statuses, std::vector<int>{201});
  EXPECT_EQ(dispatcher.tracked(), 1u);
}

}  // namespace
}  // namespace threadline
