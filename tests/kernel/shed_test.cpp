// Load shedding in the kernel (bpf/capture/shed.bpf.h, shed_turn.bpf.h) against real loopback
// connections: the decision is per connection, made when it is first seen and again at each
// request boundary (never mid-exchange), the same for both of its ends, and everything a shed
// connection skips is counted.
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "capture_harness.h"
#include "socket_util.h"

namespace threadline::testing {
namespace {

class ShedTest : public CaptureTest {
 protected:
  // A request and a response on the pair: 5 + 7 bytes, seen at each end.
  static void Exchange(const SocketPair& p) {
    char buf[16];
    ASSERT_EQ(write(p.client, "hello", 5), 5);
    ASSERT_EQ(read(p.server, buf, sizeof(buf)), 5);
    ASSERT_EQ(write(p.server, "goodbye", 7), 7);
    ASSERT_EQ(read(p.client, buf, sizeof(buf)), 7);
  }
  bool Captured(int fd) const { return rec_.OpenFor(self(), fd) != nullptr; }
  // Closes both ends (a shed connection's bytes are counted when it is closed).
  static void Close(SocketPair& p) {
    ::close(p.client);
    ::close(p.server);
    p.client = p.server = -1;
  }
};

TEST_F(ShedTest, HalfTheConnectionsShedWholeAndBothEndsAgree) {
  Load();
  if (HasFatalFailure()) return;
  capture_->SetShedFraction(0.5);
  constexpr int kPairs = 40;
  std::vector<std::unique_ptr<SocketPair>> pairs;
  for (int i = 0; i < kPairs; ++i) {
    pairs.push_back(std::make_unique<SocketPair>());
    MakePair(*pairs.back(), i % 2 ? Family::kV6 : Family::kV4);
    Exchange(*pairs.back());
    if (HasFatalFailure()) return;
  }
  Drain();
  int shed = 0;
  for (const auto& p : pairs) {
    const bool client = Captured(p->client), server = Captured(p->server);
    EXPECT_EQ(client, server) << "ports " << p->client_port << " -> " << p->server_port
                              << ": one end shed, the other traced";
    if (client) {
      const ConnOpenEvent* c = rec_.OpenFor(self(), p->client);
      const ConnOpenEvent* s = rec_.OpenFor(self(), p->server);
      EXPECT_EQ(rec_.StreamFor(c->id, Direction::kEgress), "hello");
      EXPECT_EQ(rec_.StreamFor(s->id, Direction::kEgress), "goodbye");
    } else {
      ++shed;
    }
  }
  // 40 hashes at 0.5: all on one side has probability 2^-39.
  EXPECT_GT(shed, 0);
  EXPECT_LT(shed, kPairs);
  EXPECT_EQ(capture_->ReadShedCounts().conns, 2u * shed);  // both ends
  std::vector<int> shed_fds;
  for (const auto& p : pairs)
    if (!Captured(p->client)) shed_fds.insert(shed_fds.end(), {p->client, p->server});
  const size_t closes_before = rec_.closes.size();
  for (auto& p : pairs) Close(*p);
  Drain();
  const tl_shed_counts counts = capture_->ReadShedCounts();
  EXPECT_EQ(counts.conns, 2u * shed);
  EXPECT_EQ(counts.bytes, 24u * shed);  // 12 bytes at each end
  // Shed connections produce nothing at all: no data, no open, no close.
  EXPECT_EQ(rec_.closes.size() - closes_before, 2u * (kPairs - shed));
  for (const auto& d : rec_.data)
    for (int fd : shed_fds) EXPECT_NE(d.ev.id.fd, fd) << "data on a shed connection";
}

TEST_F(ShedTest, EstablishedConnectionsShedAndResumeAtARequestBoundary) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair kept, late;
  MakePair(kept);  // seen at connect/accept with nothing shed
  Exchange(kept);
  capture_->SetShedFraction(1.0);
  MakePair(late);  // shed when new
  Exchange(late);  // its first request on each end is counted
  Exchange(kept);  // a request boundary at each end: ended for userspace, shed from here
  Exchange(kept);
  capture_->SetShedFraction(0.0);
  Exchange(kept);  // the next boundary: captured again, as a connection met mid-life
  Exchange(late);
  if (HasFatalFailure()) return;
  Drain();

  for (int fd : {kept.client, kept.server}) {
    std::vector<const ConnOpenEvent*> opens;
    for (const auto& o : rec_.opens)
      if (o.id.tgid == self() && o.id.fd == fd) opens.push_back(&o);
    ASSERT_EQ(opens.size(), 2u) << "fd " << fd << ": opened, then resumed";
    const bool client = fd == kept.client;
    EXPECT_EQ(opens[0]->source, client ? ConnSource::kConnect : ConnSource::kAccept);
    EXPECT_EQ(opens[1]->source, ConnSource::kFirstIo);
    EXPECT_EQ(opens[1]->role, client ? Role::kClient : Role::kServer);
    EXPECT_GT(opens[1]->id.gen, opens[0]->id.gen);
    // The first generation: one whole exchange, ended where the response ended.
    const ConnCloseEvent* close = rec_.CloseFor(opens[0]->id);
    ASSERT_NE(close, nullptr);
    EXPECT_EQ(close->reason, CloseReason::kShed);
    EXPECT_EQ(close->bytes[static_cast<int>(Direction::kEgress)], client ? 5u : 7u);
    EXPECT_EQ(close->bytes[static_cast<int>(Direction::kIngress)], client ? 7u : 5u);
    EXPECT_EQ(rec_.StreamFor(opens[0]->id, Direction::kEgress), client ? "hello" : "goodbye");
    EXPECT_EQ(rec_.StreamFor(opens[0]->id, Direction::kIngress), client ? "goodbye" : "hello");
    // The resumed generation starts at position 0 with the request that resumed it.
    EXPECT_EQ(rec_.StreamFor(opens[1]->id, Direction::kEgress), client ? "hello" : "goodbye");
    EXPECT_EQ(rec_.StreamFor(opens[1]->id, Direction::kIngress), client ? "goodbye" : "hello");
    EXPECT_EQ(rec_.CloseFor(opens[1]->id), nullptr);
  }
  const ConnOpenEvent* late_client = rec_.OpenFor(self(), late.client);
  ASSERT_NE(late_client, nullptr) << "shed when new, resumed at a request boundary";
  EXPECT_EQ(late_client->source, ConnSource::kFirstIo);
  EXPECT_EQ(rec_.StreamFor(late_client->id, Direction::kEgress), "hello");
  ASSERT_NE(rec_.OpenFor(self(), late.server), nullptr);
  EXPECT_EQ(rec_.StreamFor(rec_.OpenFor(self(), late.server)->id, Direction::kEgress), "goodbye");

  const tl_shed_counts counts = capture_->ReadShedCounts();
  EXPECT_EQ(counts.conns, 2u);        // late, both ends, when new
  EXPECT_EQ(counts.established, 2u);  // kept, both ends
  EXPECT_EQ(counts.resumed, 4u);
  EXPECT_EQ(counts.requests, 6u);     // kept: 2 exchanges, late: 1, at each end
  EXPECT_EQ(counts.bytes, 72u);       // 3 exchanges of 12 bytes while shed, at each end
}

TEST_F(ShedTest, AShedConnectionStaysShedWhileBelowTheThreshold) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);
  capture_->SetShedFraction(1.0);
  for (int i = 0; i < 3; ++i) Exchange(p);
  if (HasFatalFailure()) return;
  Drain();
  // The open, then one close at the first request boundary: nothing else, no data at all.
  for (int fd : {p.client, p.server}) {
    const ConnOpenEvent* o = rec_.OpenFor(self(), fd);
    ASSERT_NE(o, nullptr);
    const ConnCloseEvent* c = rec_.CloseFor(o->id);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->reason, CloseReason::kShed);
    EXPECT_EQ(c->bytes[0] + c->bytes[1], 0u);
    for (const auto& d : rec_.data) EXPECT_NE(d.ev.id.fd, fd) << "data on a shed connection";
  }
  Close(p);
  const tl_shed_counts counts = capture_->ReadShedCounts();
  EXPECT_EQ(counts.established, 2u);
  EXPECT_EQ(counts.requests, 6u);
  EXPECT_EQ(counts.bytes, 72u);  // counted when closed
  EXPECT_EQ(counts.resumed, 0u);
}

}  // namespace
}  // namespace threadline::testing
