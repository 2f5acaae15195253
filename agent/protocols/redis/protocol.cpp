#include "agent/protocols/redis/protocol.h"

#include <optional>
#include <utility>

#include "agent/protocols/db/metrics.h"
#include "agent/protocols/db/stitched_parser.h"
#include "agent/protocols/db/wire.h"
#include "agent/protocols/redis/parser.h"
#include "agent/protocols/redis/stitcher.h"

namespace threadline::redis {

namespace {

class RedisParser final : public db::StitchedParser<Stitcher, Operation, RespReader> {
 public:
  RedisParser(const ConnectionInfo& conn, const ProtocolOptions& options, db::Metrics& metrics)
      : StitchedParser(conn, options.db_server_spans, metrics), limits_(options.redis), metrics_(metrics) {}

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
    if (!commands && stitcher_->unaligned()) {
      // Pairing starts again with the first reply read after a command written since.
      if (!stitcher_->can_realign()) return;
      replies_.Resync();
      stitcher_->Realigned();
    }
    {
      const Call call(*this, out);
      ReaderFor(commands).Feed(bytes, meta);
    }
    if (stitcher_->done()) {
      commands_.Stop();
      replies_.Stop();
    }
  }

 private:
  class CommandSide final : public RespReader::Listener {
   public:
    explicit CommandSide(RedisParser& p) : p_(p) {}
    void OnValue(const Value& v) override { p_.stitcher_->OnCommand(v, p_.output()); }
    void OnFramingLost(const ChunkMeta&) override { p_.stitcher_->OnCommandsLost(p_.output()); }

   private:
    RedisParser& p_;
  };
  class ReplySide final : public RespReader::Listener {
   public:
    explicit ReplySide(RedisParser& p) : p_(p) {}
    void OnValue(const Value& v) override { p_.stitcher_->OnReply(v, p_.output()); }
    void OnFramingLost(const ChunkMeta&) override { p_.stitcher_->OnRepliesLost(p_.output()); }

   private:
    RedisParser& p_;
  };

  RespReader& ReaderFor(bool requests) override { return requests ? commands_ : replies_; }

  const Limits& limits_;
  db::Metrics& metrics_;
  CommandSide command_side_{*this};
  ReplySide reply_side_{*this};
  RespReader commands_{true, limits_, command_side_};
  RespReader replies_{false, limits_, reply_side_};
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
