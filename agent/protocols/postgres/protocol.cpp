#include "agent/protocols/postgres/protocol.h"

#include <optional>
#include <utility>

#include "agent/protocols/db/frame_reader.h"
#include "agent/protocols/db/metrics.h"
#include "agent/protocols/db/wire.h"
#include "agent/protocols/postgres/parser.h"
#include "agent/protocols/postgres/stitcher.h"

namespace threadline::postgres {

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
    r.request = ViewOf(placed);  // points into r.detail
    out_.OnRecord(std::move(r));
  }

 private:
  ParserOutput& out_;
};

class PostgresParser final : public ConnectionParser {
 public:
  PostgresParser(const ConnectionInfo& conn, const ProtocolOptions& options, db::Metrics& metrics)
      : side_(conn.role, options.db_server_spans, metrics),
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
    Bridge bridge(out);
    out_ = &bridge;
    (dir == side_.requests() ? front_ : back_).Feed(bytes, meta);
    out_ = nullptr;
  }

  void OnGap(Direction dir, uint64_t len, GapReason /*reason*/, const ChunkMeta& meta,
             ParserOutput& out) override {
    if (done() || !stitcher_) return;
    Bridge bridge(out);
    out_ = &bridge;
    (dir == side_.requests() ? front_ : back_).Gap(len, meta);
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
  class FrontSide final : public db::FrameReader::Listener {
   public:
    explicit FrontSide(PostgresParser& p) : p_(p) {}
    void OnFrame(const db::Frame& f) override {
      p_.stitcher_->OnFrontend(f, *p_.out_);
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
      p_.stitcher_->OnBackend(f, *p_.out_);
      p_.SyncRules();
    }
    void OnFramingLost(const ChunkMeta&, bool) override { p_.stitcher_->OnBackendLost(); }

   private:
    PostgresParser& p_;
  };

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

  db::RequestSide side_;
  const Limits& limits_;
  db::Metrics& metrics_;
  FrontendRules front_rules_;
  BackendRules back_rules_;
  FrontSide front_side_{*this};
  BackSide back_side_{*this};
  db::FrameReader front_{front_rules_, front_side_};
  db::FrameReader back_{back_rules_, back_side_};
  std::optional<Stitcher> stitcher_;
  Stitcher::Output* out_ = nullptr;  // during a call
  bool closed_ = false;
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
