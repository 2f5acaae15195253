// Same-node linking by tuple: both arrival orders, keep-alive order, out-of-step queues, bounds.
#include "agent/spans/peer_linker.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

namespace threadline {
namespace {

Tuple Make(uint8_t a, uint16_t pa, uint8_t b, uint16_t pb) {
  Tuple t;
  uint8_t ia[4] = {127, 0, 0, a}, ib[4] = {127, 0, 0, b};
  t.local = IpAddress::V4(ia);
  t.remote = IpAddress::V4(ib);
  t.local_port = pa;
  t.remote_port = pb;
  t.family = AF_INET;
  return t;
}

// The client's view (A:40000 -> B:8080) and the server's view of the same connection.
const Tuple kClient = Make(1, 40000, 2, 8080);
const Tuple kServer = Make(2, 8080, 1, 40000);

PeerLinker::Call CallAt(uint64_t ts) {
  PeerLinker::Call c;
  c.trace_id = TraceId::Random();
  c.span_id = SpanId::Random();
  c.flags = 1;
  c.ts_ns = ts;
  return c;
}

TEST(PeerLinker, ClientFirstThenServer) {
  MetricsRegistry m;
  PeerLinker l(m);
  auto call = CallAt(100);
  EXPECT_FALSE(l.OnClientCall(kClient, call).has_value());
  PeerLinker::Token wait = 99;
  auto got = l.OnServerRequest(kServer, 0, 150, &wait);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->span_id, call.span_id);
  EXPECT_EQ(got->trace_id, call.trace_id);
  EXPECT_EQ(wait, 0u);
  EXPECT_EQ(m.CounterTotal("threadline_peer_links_total"), 1u);
}

TEST(PeerLinker, ServerFirstWaitsForTheClientCall) {
  MetricsRegistry m;
  PeerLinker l(m);
  l.OnClientOpened(kClient);
  PeerLinker::Token wait = 0;
  EXPECT_FALSE(l.OnServerRequest(kServer, 0, 150, &wait).has_value());
  ASSERT_NE(wait, 0u);
  auto token = l.OnClientCall(kClient, CallAt(100));
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(*token, wait);
  EXPECT_EQ(l.waiting_calls(), 0u);
}

TEST(PeerLinker, UntracedPeerMeansNoWait) {
  MetricsRegistry m;
  PeerLinker l(m);
  PeerLinker::Token wait = 7;
  EXPECT_FALSE(l.OnServerRequest(kServer, 0, 150, &wait).has_value());
  EXPECT_EQ(wait, 0u);
}

TEST(PeerLinker, KeepAliveCallsPairInOrder) {
  MetricsRegistry m;
  PeerLinker l(m);
  auto c1 = CallAt(100), c2 = CallAt(200), c3 = CallAt(300);
  l.OnClientCall(kClient, c1);
  l.OnClientCall(kClient, c2);
  PeerLinker::Token w;
  EXPECT_EQ(l.OnServerRequest(kServer, 0, 110, &w)->span_id, c1.span_id);
  EXPECT_EQ(l.OnServerRequest(kServer, 0, 210, &w)->span_id, c2.span_id);
  l.OnClientCall(kClient, c3);
  EXPECT_EQ(l.OnServerRequest(kServer, 0, 310, &w)->span_id, c3.span_id);
}

TEST(PeerLinker, CallWrittenAfterTheRequestWasReadIsNotItsCause) {
  MetricsRegistry m;
  PeerLinker l(m);
  auto late = CallAt(500);
  l.OnClientCall(kClient, late);
  PeerLinker::Token w;
  EXPECT_FALSE(l.OnServerRequest(kServer, 0, 400, &w).has_value());
  EXPECT_EQ(m.GetCounter("threadline_peer_links_total", {{"result", "client_call_dropped"}}).Value(), 1u);
}

TEST(PeerLinker, OtherConnectionsDoNotMatch) {
  MetricsRegistry m;
  PeerLinker l(m);
  l.OnClientCall(kClient, CallAt(100));
  PeerLinker::Token w;
  EXPECT_FALSE(l.OnServerRequest(Make(2, 8080, 1, 40001), 0, 150, &w).has_value());
  EXPECT_FALSE(l.OnServerRequest(Make(3, 8080, 1, 40000), 0, 150, &w).has_value());
}

TEST(PeerLinker, QueuesAreBoundedAndDroppedWithTheServer) {
  MetricsRegistry m;
  PeerLinker l(m);
  for (int i = 0; i < 2000; ++i) l.OnClientCall(kClient, CallAt(i));
  EXPECT_LE(l.waiting_calls(), 512u);  // more than an HTTP/2 connection's tracked streams
  l.OnServerClosed(kServer);
  EXPECT_EQ(l.waiting_calls(), 0u);
}

TEST(PeerLinker, AbandonedWaitIsNotHandedOut) {
  MetricsRegistry m;
  PeerLinker l(m);
  l.OnClientOpened(kClient);
  PeerLinker::Token w = 0;
  l.OnServerRequest(kServer, 0, 150, &w);
  l.Abandon(w);
  EXPECT_FALSE(l.OnClientCall(kClient, CallAt(100)).has_value());  // queued instead
}

}  // namespace
}  // namespace threadline

namespace threadline {
namespace {

// HTTP/2: calls multiplexed on one connection pair by stream id, whatever order either end
// sees them in.
TEST(PeerLinker, StreamsPairByIdInAnyOrder) {
  MetricsRegistry m;
  PeerLinker l(m);
  auto c1 = CallAt(100), c3 = CallAt(110);
  c1.stream_id = 1;
  c3.stream_id = 3;
  EXPECT_FALSE(l.OnClientCall(kClient, c1).has_value());
  EXPECT_FALSE(l.OnClientCall(kClient, c3).has_value());
  PeerLinker::Token wait = 0;
  auto got3 = l.OnServerRequest(kServer, 3, 150, &wait);
  ASSERT_TRUE(got3.has_value());
  EXPECT_EQ(got3->span_id, c3.span_id);
  // Stream 5's server request comes before its call: it waits for that stream, not stream 1's.
  PeerLinker::Token wait5 = 0;
  EXPECT_FALSE(l.OnServerRequest(kServer, 5, 160, &wait5).has_value());
  EXPECT_NE(wait5, 0u);
  auto got1 = l.OnServerRequest(kServer, 1, 170, &wait);
  ASSERT_TRUE(got1.has_value());
  EXPECT_EQ(got1->span_id, c1.span_id);
  auto c5 = CallAt(180);
  c5.stream_id = 5;
  EXPECT_EQ(l.OnClientCall(kClient, c5), std::optional<PeerLinker::Token>(wait5));
}

}  // namespace
}  // namespace threadline
