// The ConnectionParser shape every database protocol has: a RequestSide (which way requests
// travel, whether the connection is parsed at all), a Stitcher made once the conversation can be
// followed, one reader per direction feeding it, and the stitcher's Operations handed to the
// dispatcher as neutral Records. This keeps what is the same for all of them (gaps, close,
// done, the hand-off of results); a protocol keeps OnData (how the first bytes decide the side
// and the start) and its readers' listeners (what a frame means to its stitcher).
//
// Stitcher: Output { OnRequest(const Operation&); OnOperation(Operation&&); }, OnClose(ts, out),
// Abandon(), done(). Reader: Gap(len, meta). ViewOf(const Operation&) is found in the
// protocol's namespace.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>

#include "agent/protocols/db/metrics.h"
#include "agent/protocols/db/wire.h"
#include "agent/protocols/protocol.h"

namespace threadline::db {

template <class Stitcher, class Operation, class Reader>
class StitchedParser : public ConnectionParser {
 public:
  void OnGap(Direction dir, uint64_t len, GapReason /*reason*/, const ChunkMeta& meta,
             ParserOutput& out) final {
    if (done() || !stitcher_) return;
    const Call call(*this, out);
    ReaderFor(dir == side_.requests()).Gap(len, meta);
  }

  void OnClose(uint64_t ts_ns, bool evicted, ParserOutput& out) final {
    closed_ = true;
    if (!stitcher_) return;
    if (evicted) {
      stitcher_->Abandon();
      return;
    }
    const Call call(*this, out);
    stitcher_->OnClose(ts_ns, bridge_);
  }

  bool done() const final { return closed_ || side_.skipped() || (stitcher_ && stitcher_->done()); }
  std::optional<Direction> request_direction() const final { return side_.request_direction(); }

 protected:
  StitchedParser(const ConnectionInfo& conn, bool server_spans, Metrics& metrics)
      : side_(conn.role, server_spans, metrics) {}

  // The reader of the requests' direction, or of the responses'.
  virtual Reader& ReaderFor(bool requests) = 0;

  // The stitcher's results go to the ParserOutput of the call (OnData, OnGap, OnClose) while a
  // Call lives; readers' listeners pass output() to the stitcher.
  class Call {
   public:
    Call(StitchedParser& parser, ParserOutput& out) : parser_(parser) { parser_.bridge_.out_ = &out; }
    ~Call() { parser_.bridge_.out_ = nullptr; }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

   private:
    StitchedParser& parser_;
  };
  typename Stitcher::Output& output() { return bridge_; }

  RequestSide side_;
  std::optional<Stitcher> stitcher_;

 private:
  // Hands the stitcher's results to the call's output, as neutral views.
  class Bridge final : public Stitcher::Output {
   public:
    void OnRequest(const Operation& op) override { out_->OnRequest(ViewOf(op)); }
    void OnOperation(Operation&& op) override {
      Record r;
      r.outcome = op.outcome;
      r.closed_ts_ns = op.closed_ts_ns;
      r.response = MessageEdge{op.response_seen, op.response_first, op.response_last};
      const Operation& placed = r.detail.template emplace<Operation>(std::move(op));
      r.request = ViewOf(placed);  // points into r.detail
      out_->OnRecord(std::move(r));
    }

    ParserOutput* out_ = nullptr;  // during a Call
  };

  Bridge bridge_;
  bool closed_ = false;
};

}  // namespace threadline::db
