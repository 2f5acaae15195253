// StreamReassembler alone: segments placed by stream position become an in-order byte stream
// with exact gaps, whatever order, duplication or truncation they arrive with.
#include "agent/conn/stream_reassembler.h"

#include <gtest/gtest.h>

#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "tests/unit/conn_test_util.h"

namespace threadline {
namespace {

using conn_test::kMs;
using conn_test::RecordingOutput;
using Origin = StreamReassembler::Origin;
constexpr uint64_t kCharge = StreamReassembler::kHeldSegmentCharge;

struct Harness {
  explicit Harness(Origin origin = Origin::kZero, ReassemblerLimits limits = {},
                   HeldBudget* budget = nullptr)
      : r(limits, budget, origin) {}

  // Returns where the captured bytes live, to check whether delivery copied them.
  const uint8_t* Push(uint64_t pos, std::string_view bytes, uint64_t ts_ns,
                      std::optional<uint64_t> size = std::nullopt) {
    const std::string& stored = store.emplace_back(bytes);
    std::span<const uint8_t> span(reinterpret_cast<const uint8_t*>(stored.data()), stored.size());
    ChunkMeta meta{ts_ns, ts_ns - 1, 7, TL_SYS_READ};
    r.Push(StreamSegment{pos, size.value_or(bytes.size()), span, meta}, out);
    return span.data();
  }

  StreamReassembler r;
  RecordingOutput out;
  std::deque<std::string> store;
};

TEST(StreamReassemblerTest, InOrderSegmentsPassTheCallersBytesThrough) {
  Harness h;
  h.Push(0, "GET", 1);
  const uint8_t* second = h.Push(3, " /", 2);
  EXPECT_EQ(h.out.last_data, second);  // no copy on the in-order path
  h.Push(5, " HTTP/1.1", 3);
  EXPECT_EQ(h.out.rendered, "0:GET 3: / 5: HTTP/1.1");
  EXPECT_EQ(h.r.next_pos(), 14u);
  EXPECT_FALSE(h.r.holding());
  ASSERT_EQ(h.out.metas.size(), 3u);
  EXPECT_EQ(h.out.metas[1].ts_ns, 2u);
  EXPECT_EQ(h.out.metas[1].tid, 7u);
  EXPECT_EQ(h.out.contract_violations, 0);
}

TEST(StreamReassemblerTest, OutOfOrderSegmentsAreHeldThenDeliveredInOrder) {
  Harness h;
  h.Push(10, "!!", 3);
  h.Push(5, "world", 2);
  EXPECT_EQ(h.out.rendered, "");
  EXPECT_EQ(h.r.held_segments(), 2u);
  EXPECT_EQ(h.r.held_charge(), 7 + 2 * kCharge);
  h.Push(0, "hello", 1);
  EXPECT_EQ(h.out.rendered, "0:hello 5:world 10:!!");
  EXPECT_EQ(h.r.held_segments(), 0u);
  EXPECT_EQ(h.r.held_charge(), 0u);
  EXPECT_EQ(h.r.next_pos(), 12u);
  // Held bytes keep their own syscall's metadata.
  ASSERT_EQ(h.out.metas.size(), 3u);
  EXPECT_EQ(h.out.metas[1].ts_ns, 2u);
  EXPECT_EQ(h.out.metas[2].ts_ns, 3u);
  EXPECT_EQ(h.out.contract_violations, 0);
}

TEST(StreamReassemblerTest, MissingSegmentBecomesLostGapOnceTheWindowPasses) {
  Harness h;  // window 50 ms
  h.Push(0, "aaaa", 0);
  h.Push(8, "cccc", 1 * kMs);   // [4, 8) never comes
  h.Push(12, "dddd", 10 * kMs);
  h.Push(16, "eeee", 51 * kMs);  // exactly 50 ms after the oldest held: still waiting
  EXPECT_EQ(h.out.rendered, "0:aaaa");
  h.Push(20, "ffff", 52 * kMs);
  EXPECT_EQ(h.out.rendered, "0:aaaa 4:[lost 4] 8:cccc 12:dddd 16:eeee 20:ffff");
  EXPECT_FALSE(h.r.holding());
  EXPECT_EQ(h.out.contract_violations, 0);
}

TEST(StreamReassemblerTest, ExpireUsesTheCallersClockWhenNoNewDataComes) {
  Harness h;
  h.Push(0, "ab", 100 * kMs);
  h.Push(5, "fg", 101 * kMs);
  h.r.Expire(140 * kMs, h.out);
  EXPECT_EQ(h.out.rendered, "0:ab");
  h.r.Expire(152 * kMs, h.out);
  EXPECT_EQ(h.out.rendered, "0:ab 2:[lost 3] 5:fg");
  ASSERT_EQ(h.out.metas.size(), 3u);
  EXPECT_EQ(h.out.metas[1].ts_ns, 101 * kMs);  // a gap carries the metadata of what follows it
}

TEST(StreamReassemblerTest, OnlyHolesOlderThanTheWindowAreGivenUp) {
  Harness h;
  h.Push(0, "a", 0);
  h.Push(2, "c", 1 * kMs);    // hole [1, 2), old
  h.Push(4, "e", 40 * kMs);   // hole [3, 4), recent
  h.r.Expire(60 * kMs, h.out);
  EXPECT_EQ(h.out.rendered, "0:a 1:[lost 1] 2:c");
  EXPECT_TRUE(h.r.holding());
  h.Push(3, "d", 61 * kMs);
  EXPECT_EQ(h.out.rendered, "0:a 1:[lost 1] 2:c 3:d 4:e");
}

TEST(StreamReassemblerTest, FlushGivesUpEveryHole) {
  Harness h;
  h.Push(3, "d", 1);
  h.Push(6, "gh", 2);
  h.r.Flush(h.out);
  EXPECT_EQ(h.out.rendered, "0:[lost 3] 3:d 4:[lost 2] 6:gh");
  EXPECT_EQ(h.r.next_pos(), 8u);
  EXPECT_EQ(h.out.contract_violations, 0);
}

TEST(StreamReassemblerTest, TruncatedCaptureBecomesNotCapturedGap) {
  Harness h;
  h.Push(0, "abc", 1, /*size=*/10);
  h.Push(10, "klm", 2);
  EXPECT_EQ(h.out.rendered, "0:abc 3:[not-captured 7] 10:klm");
}

TEST(StreamReassemblerTest, HeldTruncatedSegmentKeepsItsGapWhenDrained) {
  Harness h;
  h.Push(4, "ef", 2, /*size=*/5);
  h.Push(9, "j", 3);
  h.Push(0, "abcd", 1);
  EXPECT_EQ(h.out.rendered, "0:abcd 4:ef 6:[not-captured 3] 9:j");
  EXPECT_EQ(h.r.held_charge(), 0u);
}

TEST(StreamReassemblerTest, DuplicatesAndOverlapsAreTrimmedAndCounted) {
  Harness h;
  h.Push(0, "abcdef", 1);
  h.Push(0, "abc", 2);    // all seen
  h.Push(4, "efgh", 3);   // "ef" seen
  EXPECT_EQ(h.out.rendered, "0:abcdef 6:gh");
  EXPECT_EQ(h.out.duplicate_bytes, 5u);
  EXPECT_EQ(h.r.next_pos(), 8u);
}

TEST(StreamReassemblerTest, OverlapIntoAnUncapturedRangeDeliversOnlyTheNewBytes) {
  Harness h;
  h.Push(0, "abcd", 1, /*size=*/10);
  h.Push(8, "ijkl", 2);
  EXPECT_EQ(h.out.rendered, "0:abcd 4:[not-captured 6] 10:kl");
  EXPECT_EQ(h.out.duplicate_bytes, 2u);
}

TEST(StreamReassemblerTest, OverlappingHeldSegmentsAreTrimmedAgainstEachOther) {
  Harness h;
  h.Push(2, "cdef", 1);
  h.Push(4, "efgh", 2);
  h.Push(2, "cd", 3);  // same position as a longer held one
  EXPECT_EQ(h.out.duplicate_bytes, 2u);
  h.Push(0, "ab", 4);
  EXPECT_EQ(h.out.rendered, "0:ab 2:cdef 6:gh");
  EXPECT_EQ(h.out.duplicate_bytes, 4u);
}

TEST(StreamReassemblerTest, MidStreamStartBeginsAtTheFirstSegmentWithoutAGap) {
  Harness h(Origin::kFirstSegment);
  EXPECT_FALSE(h.r.started());
  h.Push(1000, "xyz", 1);
  h.Push(1003, "!", 2);
  h.Push(990, "0123456789", 3);  // older than where we started: already gone
  EXPECT_EQ(h.out.rendered, "1000:xyz 1003:!");
  EXPECT_EQ(h.out.duplicate_bytes, 10u);
  h.r.Finish(1010, ChunkMeta{}, h.out);
  EXPECT_EQ(h.out.rendered, "1000:xyz 1003:! 1004:[lost 6]");
}

TEST(StreamReassemblerTest, MidStreamStartAtPositionZeroIsAnOrdinaryStart) {
  Harness h(Origin::kFirstSegment);
  h.Push(0, "ab", 1);
  h.Push(4, "ef", 2);  // must wait for [2, 4), not restart the stream
  EXPECT_EQ(h.out.rendered, "0:ab");
  h.Push(2, "cd", 3);
  EXPECT_EQ(h.out.rendered, "0:ab 2:cd 4:ef");
}

TEST(StreamReassemblerTest, KnownStartReportsMissingFirstBytes) {
  Harness h(Origin::kZero);
  h.Push(7, "hij", 1 * kMs);
  EXPECT_EQ(h.out.rendered, "");
  h.r.Expire(60 * kMs, h.out);
  EXPECT_EQ(h.out.rendered, "0:[lost 7] 7:hij");
}

TEST(StreamReassemblerTest, PerStreamByteLimitGivesUpTheOldestHole) {
  ReassemblerLimits limits;
  limits.max_held_bytes = 2 * (kCharge + 4);
  Harness h(Origin::kZero, limits);
  h.Push(0, "aaaa", 1);
  h.Push(8, "cccc", 2);   // hole [4, 8)
  h.Push(16, "eeee", 3);  // hole [12, 16)
  EXPECT_EQ(h.out.rendered, "0:aaaa");
  h.Push(24, "gggg", 4);  // does not fit: the first hole goes
  EXPECT_EQ(h.out.rendered, "0:aaaa 4:[buffer-limit 4] 8:cccc");
  ASSERT_EQ(h.out.limits.size(), 1u);
  EXPECT_EQ(h.out.limits[0], HoldLimit::kStreamBytes);
  EXPECT_EQ(h.r.held_segments(), 2u);
  h.Push(12, "dddd", 5);
  h.Push(20, "ffff", 6);
  EXPECT_EQ(h.out.rendered, "0:aaaa 4:[buffer-limit 4] 8:cccc 12:dddd 16:eeee 20:ffff 24:gggg");
  EXPECT_EQ(h.out.contract_violations, 0);
}

TEST(StreamReassemblerTest, PerStreamSegmentLimitGivesUpTheOldestHole) {
  ReassemblerLimits limits;
  limits.max_held_segments = 1;
  Harness h(Origin::kZero, limits);
  h.Push(2, "c", 1);
  h.Push(5, "f", 2);
  EXPECT_EQ(h.out.rendered, "0:[buffer-limit 2] 2:c");
  ASSERT_EQ(h.out.limits.size(), 1u);
  EXPECT_EQ(h.out.limits[0], HoldLimit::kStreamSegments);
  EXPECT_EQ(h.r.held_segments(), 1u);
}

TEST(StreamReassemblerTest, SegmentTooLargeToHoldIsDeliveredDirectlyAfterAGap) {
  ReassemblerLimits limits;
  limits.max_held_bytes = kCharge + 2;
  Harness h(Origin::kZero, limits);
  h.Push(0, "ab", 1);
  const uint8_t* big = h.Push(10, "klmnop", 2);
  EXPECT_EQ(h.out.rendered, "0:ab 2:[buffer-limit 8] 10:klmnop");
  EXPECT_EQ(h.out.last_data, big);
  EXPECT_EQ(h.r.held_charge(), 0u);
}

TEST(StreamReassemblerTest, SharedBudgetMakesTheAskingStreamGiveUpItsOwnHole) {
  HeldBudget budget(kCharge + 4);
  Harness a(Origin::kZero, {}, &budget);
  Harness b(Origin::kZero, {}, &budget);
  a.Push(4, "eeee", 1);
  EXPECT_EQ(budget.used(), kCharge + 4);
  b.Push(0, "ab", 2);
  b.Push(3, "d", 3);  // nothing left in the budget
  EXPECT_EQ(b.out.rendered, "0:ab 2:[buffer-limit 1] 3:d");
  ASSERT_EQ(b.out.limits.size(), 1u);
  EXPECT_EQ(b.out.limits[0], HoldLimit::kTotalBytes);
  EXPECT_EQ(a.out.rendered, "");  // a keeps waiting for its hole
  a.Push(0, "abcd", 4);
  EXPECT_EQ(a.out.rendered, "0:abcd 4:eeee");
  EXPECT_EQ(budget.used(), 0u);
}

TEST(StreamReassemblerTest, DestructionReturnsHeldBytesToTheBudget) {
  HeldBudget budget(1 << 20);
  {
    Harness h(Origin::kZero, {}, &budget);
    h.Push(5, "xyz", 1);
    EXPECT_EQ(budget.used(), kCharge + 3);
  }
  EXPECT_EQ(budget.used(), 0u);
}

TEST(StreamReassemblerTest, FinishReportsTrailingBytesThatNeverArrived) {
  Harness h;
  h.Push(0, "0123456789", 1);
  h.Push(15, "fg", 2);
  h.r.Finish(20, ChunkMeta{9, 9, 1, TL_SYS_CLOSE}, h.out);
  EXPECT_EQ(h.out.rendered, "0:0123456789 10:[lost 5] 15:fg 17:[lost 3]");
  EXPECT_EQ(h.out.metas.back().syscall, TL_SYS_CLOSE);
}

TEST(StreamReassemblerTest, FinishOfAStreamNeverSeenMidStreamReportsNothing) {
  Harness h(Origin::kFirstSegment);
  h.r.Finish(20, ChunkMeta{}, h.out);
  EXPECT_EQ(h.out.rendered, "");
}

TEST(StreamReassemblerTest, EmptySegmentsChangeNothing) {
  Harness h;
  h.Push(5, "", 1);
  EXPECT_FALSE(h.r.holding());
  EXPECT_EQ(h.r.next_pos(), 0u);
  EXPECT_EQ(h.out.rendered, "");
}

}  // namespace
}  // namespace threadline
