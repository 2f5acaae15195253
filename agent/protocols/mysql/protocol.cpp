#include "agent/protocols/mysql/protocol.h"

#include <array>
#include <optional>
#include <utility>

#include "agent/protocols/db/frame_reader.h"
#include "agent/protocols/db/metrics.h"
#include "agent/protocols/db/stitched_parser.h"
#include "agent/protocols/db/wire.h"
#include "agent/protocols/mysql/parser.h"
#include "agent/protocols/mysql/stitcher.h"

namespace threadline::mysql {

namespace {

// What the clear-text greetings of connections that turned to TLS said, by connection, until
// their plaintext starts (the connection table starts a TLS connection's plaintext as a
// connection of its own, with the same id). A few recent ones: the plaintext follows at once.
class TlsHandoffs {
 public:
  void Put(const ConnId& id, const GreetingFacts& facts) {
    entries_[next_++ % entries_.size()] = Entry{id, facts, true};
  }
  std::optional<GreetingFacts> Take(const ConnId& id) {
    for (Entry& e : entries_)
      if (e.used && e.id == id) {
        e.used = false;
        return e.facts;
      }
    return std::nullopt;
  }

 private:
  struct Entry {
    ConnId id;
    GreetingFacts facts;
    bool used = false;
  };
  std::array<Entry, 64> entries_{};
  size_t next_ = 0;
};

// The first bytes as this connection may take them: a TLS HandshakeResponse only in plaintext.
FirstBytes ClassifyFor(std::span<const uint8_t> bytes, bool tls) {
  const FirstBytes k = Classify(bytes);
  return k == FirstBytes::kTlsHandshakeResponse && !tls ? FirstBytes::kUnknown : k;
}

class MySqlParser final : public db::StitchedParser<Stitcher, Operation, db::FrameReader> {
 public:
  MySqlParser(const ConnectionInfo& conn, const ProtocolOptions& options, db::Metrics& metrics,
              TlsHandoffs& handoffs)
      : StitchedParser(conn, options.db_server_spans, metrics),
        limits_(options.mysql),
        metrics_(metrics),
        handoffs_(handoffs),
        id_(conn.id),
        tls_(conn.tls) {}

  void OnData(Direction dir, std::span<const uint8_t> bytes, const ChunkMeta& meta,
              ParserOutput& out) override {
    if (done()) return;
    const FirstBytes k = stitcher_ ? FirstBytes::kUnknown : ClassifyFor(bytes, tls_);
    if (!side_.Decided()) {
      if (k == FirstBytes::kUnknown) return;  // wait for bytes that tell
      side_.Decide(k == FirstBytes::kGreeting ? db::Other(dir) : dir);
      if (side_.skipped()) return;
    }
    if (!stitcher_) {
      // Seen from its start when the server's greeting is the stream's first bytes, or when a
      // TLS connection's plaintext starts with the client's HandshakeResponse.
      const bool tls_start = k == FirstBytes::kTlsHandshakeResponse && meta.pos == 0;
      const bool at_start = k == FirstBytes::kGreeting && meta.pos == 0;
      if (!at_start && dir != side_.requests()) return;  // answers to commands never seen
      stitcher_.emplace(limits_, metrics_, at_start);
      if (tls_start) stitcher_->StartAfterTls(handoffs_.Take(id_));
    }
    {
      const Call call(*this, out);
      ReaderFor(dir == side_.requests()).Feed(bytes, meta);
    }
    if (stitcher_->done()) {
      client_.Stop();
      server_.Stop();
      if (stitcher_->tls_follows()) handoffs_.Put(id_, *stitcher_->tls_follows());
    }
  }

 private:
  class ClientSide final : public db::FrameReader::Listener {
   public:
    explicit ClientSide(MySqlParser& p) : p_(p) {}
    void OnFrame(const db::Frame& f) override {
      p_.stitcher_->OnClientPacket(f, p_.output());
      if (p_.stitcher_->TakeServerRealign()) p_.server_.Resync();
    }
    void OnFramingLost(const ChunkMeta&, bool) override { p_.stitcher_->OnClientLost(); }

   private:
    MySqlParser& p_;
  };
  class ServerSide final : public db::FrameReader::Listener {
   public:
    explicit ServerSide(MySqlParser& p) : p_(p) {}
    void OnFrame(const db::Frame& f) override { p_.stitcher_->OnServerPacket(f, p_.output()); }
    void OnFramingLost(const ChunkMeta&, bool) override { p_.stitcher_->OnServerLost(); }

   private:
    MySqlParser& p_;
  };

  db::FrameReader& ReaderFor(bool requests) override { return requests ? client_ : server_; }

  const Limits& limits_;
  db::Metrics& metrics_;
  PacketRules client_rules_{true, limits_};
  PacketRules server_rules_{false, limits_};
  ClientSide client_side_{*this};
  ServerSide server_side_{*this};
  db::FrameReader client_{client_rules_, client_side_};
  db::FrameReader server_{server_rules_, server_side_};
  TlsHandoffs& handoffs_;
  const ConnId id_;
  const bool tls_;
};

class MySqlProtocol final : public Protocol {
 public:
  MySqlProtocol(const ProtocolOptions& options, MetricsRegistry& metrics)
      : options_(options), metrics_(metrics, "mysql") {}

  ProtocolId id() const override { return ProtocolId::kMySql; }
  bool Detect(std::span<const uint8_t> bytes, Direction dir, const ConnectionInfo& conn) const override {
    const FirstBytes k = ClassifyFor(bytes, conn.tls);
    if (k == FirstBytes::kUnknown) return false;
    const std::optional<Direction> requests = db::RequestSide::DirectionOf(conn.role);
    if (!requests) return true;
    return (k == FirstBytes::kGreeting) == (dir != *requests);
  }
  std::unique_ptr<ConnectionParser> NewConnection(const ConnectionInfo& conn,
                                                  std::span<const uint8_t> /*first_bytes*/,
                                                  Direction /*dir*/) override {
    return std::make_unique<MySqlParser>(conn, options_, metrics_, handoffs_);
  }

 private:
  ProtocolOptions options_;
  db::Metrics metrics_;
  TlsHandoffs handoffs_;
};

}  // namespace

std::unique_ptr<Protocol> CreateProtocol(const ProtocolOptions& options, MetricsRegistry& metrics) {
  return std::make_unique<MySqlProtocol>(options, metrics);
}

RequestView ViewOf(const Operation& op) {
  RequestView v;
  v.protocol = ProtocolId::kMySql;
  v.edge = MessageEdge{true, op.request_first, op.request_last};
  v.carrier = nullptr;  // MySQL carries no trace context
  v.evidence.target = op.text;
  return v;
}

}  // namespace threadline::mysql
