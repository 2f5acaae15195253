#include "agent/protocols/postgres/protocol.h"

#include <optional>
#include <utility>

#include "agent/protocols/db/frame_reader.h"
#include "agent/protocols/db/metrics.h"
#include "agent/protocols/db/stitched_parser.h"
#include "agent/protocols/db/wire.h"
#include "agent/protocols/postgres/parser.h"
#include "agent/protocols/postgres/stitcher.h"

namespace threadline::postgres {

namespace {

class PostgresParser final : public db::StitchedParser<Stitcher, Operation, db::FrameReader> {
 public:
  PostgresParser(const ConnectionInfo& conn, const ProtocolOptions& options, db::Metrics& metrics)
      : StitchedParser(conn, options.db_server_spans, metrics),
        limits_(options.postgres),
        metrics_(metrics),
        front_rules_(limits_) {}

  void OnData(Direction dir, std::span<const uint8_t> bytes, const ChunkMeta& meta,
              ParserOutput& out) override {
    if (done()) return;
    if (!side_.Decided()) {
      const FirstBytes k = Classify(bytes);
      if (k == FirstBytes::kUnknown) return;  // wait for bytes that tell
      side_.Decide(k == FirstBytes::kBackend ? db::Other(dir) : dir);
      if (side_.skipped()) return;
    }
    if (!stitcher_) {
      // Seen from its start when the frontend's first bytes (stream position 0) are a startup
      // packet; else joined mid-stream.
      const bool at_start = dir == side_.requests() && meta.pos == 0 && Classify(bytes) == FirstBytes::kStartup;
      stitcher_.emplace(limits_, metrics_, at_start);
      SyncRules();
    }
    const Call call(*this, out);
    ReaderFor(dir == side_.requests()).Feed(bytes, meta);
  }

 private:
  class FrontSide final : public db::FrameReader::Listener {
   public:
    explicit FrontSide(PostgresParser& p) : p_(p) {}
    void OnFrame(const db::Frame& f) override {
      p_.stitcher_->OnFrontend(f, p_.output());
      p_.SyncRules();
    }
    void OnFramingLost(const ChunkMeta&, bool) override { p_.stitcher_->OnFrontendLost(); }

   private:
    PostgresParser& p_;
  };
  class BackSide final : public db::FrameReader::Listener {
   public:
    explicit BackSide(PostgresParser& p) : p_(p) {}
    void OnFrame(const db::Frame& f) override {
      p_.stitcher_->OnBackend(f, p_.output());
      p_.SyncRules();
    }
    void OnFramingLost(const ChunkMeta&, bool) override { p_.stitcher_->OnBackendLost(); }

   private:
    PostgresParser& p_;
  };

  db::FrameReader& ReaderFor(bool requests) override { return requests ? front_ : back_; }

  // The framing each side expects next follows the conversation (startup packets, SSL answer).
  void SyncRules() {
    front_rules_.startup = stitcher_->frontend_startup();
    back_rules_.ssl_reply = stitcher_->backend_ssl_reply();
    if (stitcher_->TakeBackendRealign()) back_.Resync();
    if (stitcher_->done()) {
      front_.Stop();
      back_.Stop();
    }
  }

  const Limits& limits_;
  db::Metrics& metrics_;
  FrontendRules front_rules_;
  BackendRules back_rules_;
  FrontSide front_side_{*this};
  BackSide back_side_{*this};
  db::FrameReader front_{front_rules_, front_side_};
  db::FrameReader back_{back_rules_, back_side_};
};

class PostgresProtocol final : public Protocol {
 public:
  PostgresProtocol(const ProtocolOptions& options, MetricsRegistry& metrics)
      : options_(options), metrics_(metrics, "postgres") {}

  ProtocolId id() const override { return ProtocolId::kPostgres; }
  bool Detect(std::span<const uint8_t> bytes, Direction dir, const ConnectionInfo& conn) const override {
    const FirstBytes k = Classify(bytes);
    if (k == FirstBytes::kUnknown) return false;
    // With a known role, the bytes must travel the way their side does.
    const std::optional<Direction> requests = db::RequestSide::DirectionOf(conn.role);
    if (!requests) return true;
    return (k == FirstBytes::kBackend) == (dir != *requests);
  }
  std::unique_ptr<ConnectionParser> NewConnection(const ConnectionInfo& conn,
                                                  std::span<const uint8_t> /*first_bytes*/,
                                                  Direction /*dir*/) override {
    return std::make_unique<PostgresParser>(conn, options_, metrics_);
  }

 private:
  ProtocolOptions options_;
  db::Metrics metrics_;
};

}  // namespace

std::unique_ptr<Protocol> CreateProtocol(const ProtocolOptions& options, MetricsRegistry& metrics) {
  return std::make_unique<PostgresProtocol>(options, metrics);
}

RequestView ViewOf(const Operation& op) {
  RequestView v;
  v.protocol = ProtocolId::kPostgres;
  v.edge = MessageEdge{true, op.request_first, op.request_last};
  v.carrier = nullptr;  // PostgreSQL carries no trace context
  v.evidence.target = op.text;
  return v;
}

}  // namespace threadline::postgres
