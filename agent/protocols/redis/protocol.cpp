#include "agent/protocols/redis/protocol.h"

#include <optional>
#include <utility>

#include "agent/protocols/db/metrics.h"
#include "agent/protocols/db/wire.h"
#include "agent/protocols/redis/parser.h"
#include "agent/protocols/redis/stitcher.h"

namespace threadline::redis {

namespace {

// Hands one call's results of the stitcher to the dispatcher's output, as neutral views.
class Bridge final : public Stitcher::Output {
 public:
  explicit Bridge(ParserOutput& out) : out_(out) {}
  void OnRequest(const Operation& op) override { out_.OnRequest(ViewOf(op)); }
  void OnOperation(Operation&& op) override {
    Record r;
    r.outcome = op.outcome;
    r.closed_ts_ns = op.closed_ts_ns;
    r.response = MessageEdge{op.response_seen, op.response_first, op.response_last};
    const Operation& placed = r.detail.emplace<Operation>(std::move(op));
    r.request = ViewOf(placed);
    out_.OnRecord(std::move(r));
  }

 private:
  ParserOutput& out_;
};

class RedisParser final : public ConnectionParser {
 public:
  RedisParser(const ConnectionInfo& conn, const ProtocolOptions& options, db::Metrics& metrics)
      : side_(conn.role, options.db_server_spans, metrics), limits_(options.redis), metrics_(metrics) {}

  void OnData(Direction dir, std::span<const uint8_t> bytes, const ChunkMeta& meta,
              ParserOutput& out) override {
    if (done()) return;
    if (!side_.Decided()) {
      if (!LooksLikeCommand(bytes)) return;  // wait for a command to tell the direction
      side_.Decide(dir);
      if (side_.skipped()) return;
    }
    const bool commands = dir == side_.requests();
    if (!stitcher_) {
      if (!commands) return;  // replies to commands never seen (joined mid-stream)
      stitcher_.emplace(limits_, metrics_, meta.pos == 0);
    }
    Bridge bridge(out);
    out_ = &bridge;
    if (commands) {
      commands_.Feed(bytes, meta);
    } else {
      if (stitcher_->unaligned()) {
        // Pairing starts again with the first reply read after a command written since.
        if (!stitcher_->can_realign()) {
          out_ = nullptr;
          return;
        }
        replies_.Resync();
        stitcher_->Realigned();
      }
      replies_.Feed(bytes, meta);
    }
    out_ = nullptr;
    StopIfDone();
  }

  void OnGap(Direction dir, uint64_t len, GapReason /*reason*/, const ChunkMeta& meta,
             ParserOutput& out) override {
    if (done() || !stitcher_) return;
    Bridge bridge(out);
    out_ = &bridge;
    (dir == side_.requests() ? commands_ : replies_).Gap(len, meta);
    out_ = nullptr;
  }

  void OnClose(uint64_t ts_ns, bool evicted, ParserOutput& out) override {
    closed_ = true;
    if (!stitcher_) return;
    if (evicted) {
      stitcher_->Abandon();
      return;
    }
    Bridge bridge(out);
    stitcher_->OnClose(ts_ns, bridge);
  }

  bool done() const override { return closed_ || side_.skipped() || (stitcher_ && stitcher_->done()); }
  std::optional<Direction> request_direction() const override { return side_.request_direction(); }

 private:
  class CommandSide final : public RespReader::Listener {
   public:
    explicit CommandSide(RedisParser& p) : p_(p) {}
    void OnValue(const Value& v) override { p_.stitcher_->OnCommand(v, *p_.out_); }
    void OnFramingLost(const ChunkMeta&) override { p_.stitcher_->OnCommandsLost(*p_.out_); }

   private:
    RedisParser& p_;
  };
  class ReplySide final : public RespReader::Listener {
   public:
    explicit ReplySide(RedisParser& p) : p_(p) {}
    void OnValue(const Value& v) override { p_.stitcher_->OnReply(v, *p_.out_); }
    void OnFramingLost(const ChunkMeta&) override { p_.stitcher_->OnRepliesLost(*p_.out_); }

   private:
    RedisParser& p_;
  };

  void StopIfDone() {
    if (!stitcher_->done()) return;
    commands_.Stop();
    replies_.Stop();
  }

  db::RequestSide side_;
  const Limits& limits_;
  db::Metrics& metrics_;
  CommandSide command_side_{*this};
  ReplySide reply_side_{*this};
  RespReader commands_{true, limits_, command_side_};
  RespReader replies_{false, limits_, reply_side_};
  std::optional<Stitcher> stitcher_;
  Stitcher::Output* out_ = nullptr;  // during a call
  bool closed_ = false;
};

class RedisProtocol final : public Protocol {
 public:
  RedisProtocol(const ProtocolOptions& options, MetricsRegistry& metrics)
      : options_(options), metrics_(metrics, "redis") {}

  ProtocolId id() const override { return ProtocolId::kRedis; }
  bool Detect(std::span<const uint8_t> bytes, Direction dir, const ConnectionInfo& conn) const override {
    if (!LooksLikeCommand(bytes)) return false;
    const std::optional<Direction> requests = db::RequestSide::DirectionOf(conn.role);
    return !requests || dir == *requests;
  }
  std::unique_ptr<ConnectionParser> NewConnection(const ConnectionInfo& conn,
                                                  std::span<const uint8_t> /*first_bytes*/,
                                                  Direction /*dir*/) override {
    return std::make_unique<RedisParser>(conn, options_, metrics_);
  }

 private:
  ProtocolOptions options_;
  db::Metrics metrics_;
};

}  // namespace

std::unique_ptr<Protocol> CreateProtocol(const ProtocolOptions& options, MetricsRegistry& metrics) {
  return std::make_unique<RedisProtocol>(options, metrics);
}

RequestView ViewOf(const Operation& op) {
  RequestView v;
  v.protocol = ProtocolId::kRedis;
  v.edge = MessageEdge{true, op.request_first, op.request_last};
  v.carrier = nullptr;  // Redis carries no trace context
  if (!op.commands.empty()) v.evidence.target = op.commands[0].name;
  return v;
}

}  // namespace threadline::redis
