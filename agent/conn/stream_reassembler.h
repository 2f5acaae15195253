// One direction of one connection: turns data segments, which may arrive out of order,
// duplicated, truncated or not at all, into an in-order byte stream with explicit gaps.
//
// Segments are placed by their stream position (the kernel's per-direction byte counter), so
// reordering between threads or CPUs is undone here and a missing event becomes a gap of the
// exact size instead of two messages glued together. Memory is bounded: out-of-order bytes are
// held only up to per-stream limits, a shared budget and a reorder window in event time; past
// those the missing range is given up and reported.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string_view>
#include <vector>

#include "agent/conn/stream_consumer.h"

namespace threadline {

struct ReassemblerLimits {
  uint64_t max_held_bytes = 256 * 1024;  // charged bytes (see kHeldSegmentCharge)
  uint32_t max_held_segments = 256;
  uint64_t reorder_window_ns = 50'000'000;
};

// Held bytes of all streams together. A stream that cannot charge its segment here gives up
// its own oldest hole: streams never take memory from one another.
class HeldBudget {
 public:
  explicit HeldBudget(uint64_t limit) : limit_(limit) {}
  bool Fits(uint64_t n) const { return n <= limit_ && used_ <= limit_ - n; }
  void Charge(uint64_t n) { used_ += n; }
  void Release(uint64_t n) { used_ -= n; }
  uint64_t used() const { return used_; }
  uint64_t limit() const { return limit_; }

 private:
  uint64_t used_ = 0;
  uint64_t limit_;
};

// Which bound made a stream give up waiting for missing bytes.
enum class HoldLimit : uint8_t { kStreamBytes, kStreamSegments, kTotalBytes };
inline constexpr int kHoldLimitCount = 3;
std::string_view ToString(HoldLimit l);

// Where a reassembler delivers. Callbacks must not call back into the same reassembler.
class ReassemblyOutput {
 public:
  virtual ~ReassemblyOutput() = default;
  // `bytes` may point into the caller's segment (in-order path) or into held storage; valid
  // only during the call.
  virtual void OnData(uint64_t pos, std::span<const uint8_t> bytes, const ChunkMeta& meta) = 0;
  virtual void OnGap(uint64_t pos, uint64_t len, GapReason reason, const ChunkMeta& meta) = 0;
  // Bytes received again at positions already delivered or given up.
  virtual void OnDuplicate(uint64_t /*len*/) {}
  virtual void OnHoldLimit(HoldLimit) {}
};

struct StreamSegment {
  uint64_t pos = 0;
  uint64_t size = 0;                  // bytes the syscall moved
  std::span<const uint8_t> captured;  // prefix of those bytes that was copied (clamped to size)
  ChunkMeta meta;
};

class StreamReassembler {
 public:
  // kZero: we saw the connection being set up, so the stream starts at position 0 and a first
  // segment further on means earlier bytes went missing. kFirstSegment: picked up mid-stream,
  // the first segment we see defines the start and nothing before it is reported.
  enum class Origin : uint8_t { kZero, kFirstSegment };

  // Each held segment is charged its captured bytes plus this, so a flood of tiny segments is
  // bounded by the byte limits too (a map node, the vector header and the metadata).
  static constexpr uint64_t kHeldSegmentCharge = 96;

  // `budget` may be null (no shared limit); it must outlive the reassembler.
  StreamReassembler(const ReassemblerLimits& limits, HeldBudget* budget, Origin origin);
  ~StreamReassembler();
  StreamReassembler(const StreamReassembler&) = delete;
  StreamReassembler& operator=(const StreamReassembler&) = delete;

  void Push(const StreamSegment& seg, ReassemblyOutput& out);
  // Gives up holes that held segments have waited on for longer than the reorder window,
  // judged at max(now_ns, newest segment time seen).
  void Expire(uint64_t now_ns, ReassemblyOutput& out);
  // Gives up every hole (kLost) and delivers everything held.
  void Flush(ReassemblyOutput& out);
  // Flush, then report [next_pos, end_pos) as lost: the stream is known to end at end_pos
  // (the kernel's final byte count) and those bytes' events never came.
  void Finish(uint64_t end_pos, const ChunkMeta& meta, ReassemblyOutput& out);

  bool started() const { return started_; }
  uint64_t next_pos() const { return next_pos_; }
  bool holding() const { return !held_.empty(); }
  size_t held_segments() const { return held_.size(); }
  uint64_t held_charge() const { return held_charge_; }  // captured bytes + per-segment charges

 private:
  struct Held {
    uint64_t size = 0;
    std::vector<uint8_t> bytes;
    ChunkMeta meta;
  };
  using HeldMap = std::map<uint64_t, Held>;

  static uint64_t ChargeOf(const Held& h) { return h.bytes.size() + kHeldSegmentCharge; }
  bool WouldExceed(uint64_t charge, HoldLimit* which) const;
  // seg.pos <= next_pos_: delivers what lies beyond next_pos_, counts the rest as duplicate.
  void Deliver(const StreamSegment& seg, ReassemblyOutput& out);
  void DrainHeld(ReassemblyOutput& out);
  // Reports [next_pos_, until) as a gap and delivers whatever held data now fits.
  void SkipTo(uint64_t until, GapReason reason, const ChunkMeta& meta, ReassemblyOutput& out);
  // SkipTo the first held segment.
  void GiveUpFirstHole(GapReason reason, ReassemblyOutput& out);
  void Hold(const StreamSegment& seg, uint64_t captured_len, ReassemblyOutput& out);
  void Unhold(HeldMap::iterator it);
  void RecomputeOldest();

  ReassemblerLimits limits_;
  HeldBudget* budget_;
  bool started_;
  uint64_t next_pos_ = 0;
  uint64_t newest_ts_ns_ = 0;
  uint64_t oldest_held_ts_ns_ = 0;  // meaningful only while holding
  uint64_t held_charge_ = 0;
  HeldMap held_;
};

}  // namespace threadline
