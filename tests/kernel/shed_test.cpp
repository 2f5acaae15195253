// Load shedding in the kernel (bpf/capture/shed.bpf.h) against real loopback connections: the
// decision is per connection, made once when it is first seen, the same for both of its ends,
// and everything a shed connection skips is counted.
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
  // A request and a response on the pair: 4 data syscalls, 5 + 7 bytes each way.
  static void Exchange(const SocketPair& p) {
    char buf[16];
    ASSERT_EQ(write(p.client, "hello", 5), 5);
    ASSERT_EQ(read(p.server, buf, sizeof(buf)), 5);
    ASSERT_EQ(write(p.server, "goodbye", 7), 7);
    ASSERT_EQ(read(p.client, buf, sizeof(buf)), 7);
  }
  bool Captured(int fd) const { return rec_.OpenFor(self(), fd) != nullptr; }
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
  const tl_shed_counts counts = capture_->ReadShedCounts();
  EXPECT_EQ(counts.conns, 2u * shed);  // both ends
  EXPECT_EQ(counts.calls, 4u * shed);
  EXPECT_EQ(counts.bytes, 24u * shed);
  // Shed connections produce nothing at all: no data, no open, no close.
  for (const auto& p : pairs) {
    if (Captured(p->client)) continue;
    for (const auto& d : rec_.data) EXPECT_NE(d.ev.id.fd, p->client) << "data on a shed connection";
  }
}

TEST_F(ShedTest, DecisionIsMadeOnceAtFirstSightNeverMidStream) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair traced, shed;
  MakePair(traced);  // seen at connect/accept with nothing shed
  capture_->SetShedFraction(1.0);
  MakePair(shed);    // everything new is shed now
  Exchange(traced);
  Exchange(shed);
  capture_->SetShedFraction(0.0);
  Exchange(traced);  // still traced: the fraction never cuts a stream
  Exchange(shed);    // still shed: it is never picked up in the middle either
  SocketPair after;
  MakePair(after);
  Exchange(after);
  if (HasFatalFailure()) return;
  Drain();
  ASSERT_TRUE(Captured(traced.client));
  EXPECT_EQ(rec_.StreamFor(rec_.OpenFor(self(), traced.client)->id, Direction::kEgress), "hellohello");
  EXPECT_EQ(rec_.StreamFor(rec_.OpenFor(self(), traced.server)->id, Direction::kEgress), "goodbyegoodbye");
  EXPECT_FALSE(Captured(shed.client));
  EXPECT_FALSE(Captured(shed.server));
  ASSERT_TRUE(Captured(after.client)) << "fraction 0: new connections are captured again";
  EXPECT_EQ(rec_.StreamFor(rec_.OpenFor(self(), after.client)->id, Direction::kEgress), "hello");
  const tl_shed_counts counts = capture_->ReadShedCounts();
  EXPECT_EQ(counts.conns, 2u);
  EXPECT_EQ(counts.calls, 8u);
  EXPECT_EQ(counts.bytes, 48u);
}

}  // namespace
}  // namespace threadline::testing
