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
  Close(shed);
  const tl_shed_counts counts = capture_->ReadShedCounts();
  EXPECT_EQ(counts.conns, 2u);
  EXPECT_EQ(counts.bytes, 48u);  // two exchanges, 12 bytes each, at each end
}

}  // namespace
}  // namespace threadline::testing
