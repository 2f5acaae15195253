#include "agent/conn/stream_reassembler.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace threadline {

std::string_view ToString(HoldLimit l) {
  switch (l) {
    case HoldLimit::kStreamBytes: return "stream-bytes";
    case HoldLimit::kStreamSegments: return "stream-segments";
    case HoldLimit::kTotalBytes: return "total-bytes";
  }
  return "?";
}

StreamReassembler::StreamReassembler(const ReassemblerLimits& limits, HeldBudget* budget,
                                     Origin origin)
    : limits_(limits), budget_(budget), started_(origin == Origin::kZero) {}

StreamReassembler::~StreamReassembler() {
  if (budget_ != nullptr) budget_->Release(held_charge_);
}

void StreamReassembler::Push(const StreamSegment& seg, ReassemblyOutput& out) {
  if (seg.size == 0) return;
  newest_ts_ns_ = std::max(newest_ts_ns_, seg.meta.ts_ns);
  if (!started_) {
    started_ = true;
    next_pos_ = seg.pos;
  }
  const uint64_t captured_len = std::min<uint64_t>(seg.captured.size(), seg.size);
  if (seg.pos > next_pos_) {
    const uint64_t charge = captured_len + kHeldSegmentCharge;
    HoldLimit which;
    if (WouldExceed(charge, &which)) {
      out.OnHoldLimit(which);
      // Give up holes from the lowest position until this segment fits; if even an empty
      // hold would not take it, skip to it and deliver it straight from the caller's span.
      while (seg.pos > next_pos_ && WouldExceed(charge, &which)) {
        if (!held_.empty() && held_.begin()->first < seg.pos) {
          GiveUpFirstHole(GapReason::kBufferLimit, out);
        } else {
          SkipTo(seg.pos, GapReason::kBufferLimit, seg.meta, out);
        }
      }
    }
  }
  if (seg.pos <= next_pos_) {
    Deliver(seg, out);
    DrainHeld(out);
  } else {
    Hold(seg, captured_len, out);
  }
  Expire(newest_ts_ns_, out);
}

void StreamReassembler::Expire(uint64_t now_ns, ReassemblyOutput& out) {
  const uint64_t now = std::max(now_ns, newest_ts_ns_);
  while (!held_.empty() && now - oldest_held_ts_ns_ > limits_.reorder_window_ns) {
    GiveUpFirstHole(GapReason::kLost, out);
  }
}

void StreamReassembler::Flush(ReassemblyOutput& out) {
  while (!held_.empty()) GiveUpFirstHole(GapReason::kLost, out);
}

void StreamReassembler::Finish(uint64_t end_pos, const ChunkMeta& meta, ReassemblyOutput& out) {
  Flush(out);
  if (started_ && end_pos > next_pos_) SkipTo(end_pos, GapReason::kLost, meta, out);
}

bool StreamReassembler::WouldExceed(uint64_t charge, HoldLimit* which) const {
  if (held_.size() >= limits_.max_held_segments) {
    *which = HoldLimit::kStreamSegments;
    return true;
  }
  if (held_charge_ + charge > limits_.max_held_bytes) {
    *which = HoldLimit::kStreamBytes;
    return true;
  }
  if (budget_ != nullptr && !budget_->Fits(charge)) {
    *which = HoldLimit::kTotalBytes;
    return true;
  }
  return false;
}

void StreamReassembler::Deliver(const StreamSegment& seg, ReassemblyOutput& out) {
  const uint64_t end = seg.pos + seg.size;
  if (end <= next_pos_) {
    out.OnDuplicate(seg.size);
    return;
  }
  const uint64_t skip = next_pos_ - seg.pos;
  if (skip > 0) out.OnDuplicate(skip);
  const uint64_t captured_len = std::min<uint64_t>(seg.captured.size(), seg.size);
  if (skip < captured_len) {
    const uint64_t pos = next_pos_;
    next_pos_ = seg.pos + captured_len;
    out.OnData(pos, seg.captured.subspan(skip, captured_len - skip), seg.meta);
  }
  if (end > next_pos_) {
    const uint64_t pos = next_pos_;
    next_pos_ = end;
    out.OnGap(pos, end - pos, GapReason::kNotCaptured, seg.meta);
  }
}

void StreamReassembler::DrainHeld(ReassemblyOutput& out) {
  bool removed = false;
  while (!held_.empty() && held_.begin()->first <= next_pos_) {
    auto node = held_.extract(held_.begin());
    const Held& h = node.mapped();
    held_charge_ -= ChargeOf(h);
    if (budget_ != nullptr) budget_->Release(ChargeOf(h));
    Deliver(StreamSegment{node.key(), h.size, h.bytes, h.meta}, out);
    removed = true;
  }
  if (removed) RecomputeOldest();
}

void StreamReassembler::SkipTo(uint64_t until, GapReason reason, const ChunkMeta& meta,
                               ReassemblyOutput& out) {
  const uint64_t pos = next_pos_;
  next_pos_ = until;
  out.OnGap(pos, until - pos, reason, meta);
  DrainHeld(out);
}

void StreamReassembler::GiveUpFirstHole(GapReason reason, ReassemblyOutput& out) {
  // Copied: draining destroys the segment the metadata comes from.
  const ChunkMeta meta = held_.begin()->second.meta;
  SkipTo(held_.begin()->first, reason, meta, out);
}

void StreamReassembler::Hold(const StreamSegment& seg, uint64_t captured_len,
                             ReassemblyOutput& out) {
  bool replaced = false;
  auto it = held_.find(seg.pos);
  if (it != held_.end()) {
    if (it->second.size >= seg.size) {
      out.OnDuplicate(seg.size);
      return;
    }
    out.OnDuplicate(it->second.size);
    Unhold(it);
    replaced = true;
  }
  Held h{seg.size, {seg.captured.begin(), seg.captured.begin() + captured_len}, seg.meta};
  const uint64_t charge = ChargeOf(h);
  held_charge_ += charge;
  if (budget_ != nullptr) budget_->Charge(charge);
  held_.emplace(seg.pos, std::move(h));
  if (replaced || held_.size() == 1) {
    RecomputeOldest();
  } else {
    oldest_held_ts_ns_ = std::min(oldest_held_ts_ns_, seg.meta.ts_ns);
  }
}

void StreamReassembler::Unhold(HeldMap::iterator it) {
  held_charge_ -= ChargeOf(it->second);
  if (budget_ != nullptr) budget_->Release(ChargeOf(it->second));
  held_.erase(it);
}

void StreamReassembler::RecomputeOldest() {
  // Held segments are few (bounded by max_held_segments) and this runs only when the held
  // set changes, never on the in-order path.
  oldest_held_ts_ns_ = std::numeric_limits<uint64_t>::max();
  for (const auto& [pos, h] : held_) oldest_held_ts_ns_ = std::min(oldest_held_ts_ns_, h.meta.ts_ns);
}

}  // namespace threadline
