// One MySQL/MariaDB connection's conversation: client and server packets in, Operations out
// (types.h). A client packet with sequence id 0 starts a command; the server's packets answer the
// oldest command waiting, read by a small state machine per response: OK, ERR, a result set
// (column count, column definitions, the EOF that ends them unless CLIENT_DEPRECATE_EOF, rows,
// an EOF or OK that ends the rows), more result sets while SERVER_MORE_RESULTS_EXISTS, the
// prepared-statement OK with its parameter and column definitions, LOCAL INFILE.
//
// Per-connection state: the server (MariaDB or MySQL) and the capabilities from the handshake,
// the current schema (handshake, COM_INIT_DB, USE, COM_CHANGE_USER), prepared statements by id
// (bounded).
// Capabilities unknown (joined mid-stream): EOF packets are told apart by their size (an EOF is
// 5 bytes; a row or OK that ends rows is not).
//
// Payloads of 16 MiB - 1 continue in the next packet: those are never read as packets of their
// own. When the server's side lost framing (a result larger than the captured prefix, its end
// never seen), the client's next command says the answer is over (the protocol answers one
// command at a time): what waits ends as it stands, and pairing starts again at the server's
// next bytes. The handshake's SSLRequest turns the connection into TLS: the plaintext arrives as a
// connection of its own, started by StartAfterTls with what the greeting said. A negotiated
// CLIENT_COMPRESS stops parsing (compressed packets). Not thread-safe; results go to the Output
// passed to each call, during that call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "agent/protocols/db/frame_reader.h"
#include "agent/protocols/db/metrics.h"
#include "agent/protocols/db/statement_table.h"
#include "agent/protocols/mysql/parser.h"
#include "agent/protocols/mysql/types.h"

namespace threadline::mysql {

// What a connection's clear-text greeting said, kept when TLS takes over: the TLS plaintext is a
// connection of its own that starts at the client's HandshakeResponse, after the greeting.
struct GreetingFacts {
  bool mariadb = false;
  uint32_t capabilities = 0;
};

class Stitcher {
 public:
  class Output {
   public:
    virtual ~Output() = default;
    virtual void OnRequest(const Operation&) = 0;  // a command is whole (before its answer)
    virtual void OnOperation(Operation&&) = 0;
  };

  // `at_start`: the connection is seen from its first byte (the server's greeting comes first).
  Stitcher(const Limits& limits, db::Metrics& metrics, bool at_start);
  Stitcher(const Stitcher&) = delete;
  Stitcher& operator=(const Stitcher&) = delete;

  // The connection is a TLS connection's plaintext, starting at the HandshakeResponse that
  // followed the SSLRequest; `greeting`: what the clear-text greeting said, when it was seen.
  void StartAfterTls(const std::optional<GreetingFacts>& greeting);
  // The client asked for TLS after this greeting (once done(): its plaintext comes next).
  const std::optional<GreetingFacts>& tls_follows() const { return tls_follows_; }

  void OnClientPacket(const db::Frame& f, Output& out);
  void OnServerPacket(const db::Frame& f, Output& out);
  void OnClientLost();
  void OnServerLost();
  void OnClose(uint64_t ts_ns, Output& out);
  void Abandon();

  // Framing was lost on the server's side and the client wrote a command since: the answers
  // awaited were given up, and the server's reader must look for a packet at its next bytes.
  // True once per realignment (the caller resynchronises the reader).
  bool TakeServerRealign() { return std::exchange(realign_server_, false); }

  // No more plaintext protocol here (TLS, replication) or given up.
  bool done() const { return phase_ == Phase::kDone; }

 private:
  enum class Phase : uint8_t { kGreeting, kHandshakeResponse, kAuth, kCommand, kDone };
  // Where a response is.
  enum class Resp : uint8_t {
    kFirst,             // its first packet: OK, ERR, EOF, LOCAL INFILE, or a column count
    kColumns,           // column definitions
    kColumnsEnd,        // the EOF after them (classic), when there is one
    kRows,              // rows up to the EOF / OK that ends them (or an ERR)
    kParams,            // a prepare's parameter definitions
    kParamsEnd,         // the EOF after them
    kPrepareColumns,    // a prepare's column definitions
    kPrepareColumnsEnd,
    kOnePacket,         // COM_STATISTICS: one string
  };
  struct Slot {
    Operation op;
    Resp resp = Resp::kFirst;
    uint64_t left = 0;          // definitions still to come
    uint64_t prepare_columns = 0;
  };

  void OnCommand(const db::Frame& f, Output& out);
  void OnHandshake(const db::Frame& f);
  // Reads one server packet of the oldest response; returns true when that response is over.
  bool Step(Slot& s, const db::Frame& f);
  bool AfterDefinitions(Slot& s, const db::Frame& f, Resp classic_end, Resp next, bool next_exists);
  void Attribute(Slot& s, const db::Frame& f);
  void Finish(Output& out);  // the oldest command's response is over
  // Whether the EOF that follows definitions is sent: known from the capabilities, or unknown.
  enum class Eof : uint8_t { kSent, kNotSent, kUnknown };
  Eof EofAfterDefinitions() const;

  const Limits& limits_;
  db::Metrics& metrics_;
  Phase phase_;
  uint32_t server_caps_ = 0;
  uint32_t client_caps_ = 0;
  bool server_caps_known_ = false;  // a greeting was decoded
  bool caps_known_ = false;         // both sides' (DEPRECATE_EOF, QUERY_ATTRIBUTES)
  bool mariadb_ = false;
  std::optional<GreetingFacts> tls_follows_;
  std::string database_;
  bool client_continues_ = false;  // the last client packet was 16 MiB - 1: the next continues it
  bool server_continues_ = false;
  int stray_eof_seq_ = -1;  // an EOF that may still end the response just ended (caps unknown)
  bool server_unaligned_ = false;  // framing lost on the server's side, answers still awaited
  bool realign_server_ = false;
  uint32_t last_prepared_ = 0;
  std::deque<Slot> ops_;
  db::StatementTable<uint32_t> statements_;
};

}  // namespace threadline::mysql
