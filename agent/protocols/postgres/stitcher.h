// One PostgreSQL connection's conversation: frontend and backend messages in, Operations out
// (types.h). Pairs every message that expects an answer with it, in order (the backend answers
// in order, pipelined or not), and keeps the per-connection state that gives an Execute its
// text: named and unnamed prepared statements (Parse) and portals (Bind), bounded.
//
// - Simple query ('Q'): one operation up to its ReadyForQuery, whatever number of statements,
//   results and errors it has (an error ends the query; the text's other statements are not run).
// - Extended query: Parse/Bind/Describe messages gather into the operation their Execute ends;
//   a batch with a Parse and no Execute is a prepare operation ended by its Sync. After an
//   ErrorResponse the server skips everything up to the next Sync: the operation in error ends
//   with the error, operations it skipped are counted as not executed and dropped.
// - COPY: CopyData of either side belongs to the operation that started the COPY.
// - Startup: StartupMessage parameters (user, database) are kept for every later operation; the
//   answer to SSLRequest/GSSENCRequest decides whether the connection goes on in the clear
//   (done() once encrypted: the TLS plaintext arrives as a connection of its own from the conn stage).
// - CancelRequest: an operation of its own connection, ended when that connection closes.
//
// Lost framing (a gap over a message boundary) is survived: responses keep pairing with the
// requests known before the gap; messages lost on the frontend leave a placeholder that takes
// the backend's answers up to the next ReadyForQuery. When the backend lost framing (a large
// result read in pieces bigger than the captured prefix, its ReadyForQuery never seen) and the
// client writes a new query, the answers awaited are over (a client writes its next query once
// it read ReadyForQuery): they end as they stand and pairing starts again at the backend's next
// bytes. Only a client pipelining across such a loss gets its earlier operations ended early.
//
// Not thread-safe. Results go to the Output passed to each call, during that call.
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
#include "agent/protocols/postgres/parser.h"
#include "agent/protocols/postgres/types.h"

namespace threadline::postgres {

class Stitcher {
 public:
  class Output {
   public:
    virtual ~Output() = default;
    // An operation's request is whole (before its answer); the same operation comes back later.
    virtual void OnRequest(const Operation&) = 0;
    virtual void OnOperation(Operation&&) = 0;
  };

  // `at_start`: the connection is seen from its first byte (startup packets come first);
  // otherwise it was joined mid-stream. `limits` and `metrics` must outlive the stitcher.
  Stitcher(const Limits& limits, db::Metrics& metrics, bool at_start);
  Stitcher(const Stitcher&) = delete;
  Stitcher& operator=(const Stitcher&) = delete;

  void OnFrontend(const db::Frame& frame, Output& out);
  void OnBackend(const db::Frame& frame, Output& out);
  // Framing was lost on that side (db::FrameReader::Listener::OnFramingLost).
  void OnFrontendLost();
  void OnBackendLost();
  // The connection ended: operations waiting end as they stand (closed before their answer).
  void OnClose(uint64_t ts_ns, Output& out);
  // The agent let go of the connection: what waits is counted as abandoned, nothing is emitted.
  void Abandon();

  // Framing state the readers need.
  bool frontend_startup() const { return phase_ == Phase::kStartup; }
  bool backend_ssl_reply() const { return ssl_requested_; }
  // No more plaintext on this connection (TLS or GSS encryption was accepted), or it was given up.
  bool done() const { return phase_ == Phase::kEncrypted || phase_ == Phase::kGaveUp; }
  // Framing was lost on the backend and a new request was written since: the answers still
  // awaited were given up, and the backend reader must look for a message at its next bytes.
  // True once per realignment (the caller resynchronises the reader).
  bool TakeBackendRealign() { return std::exchange(realign_backend_, false); }

 private:
  enum class Phase : uint8_t { kStartup, kAuth, kReady, kCancel, kEncrypted, kGaveUp };
  // What a frontend message waits for.
  enum class Expect : uint8_t {
    kParse, kBind, kDescribe, kExecute, kClose, kSync, kQuery, kFunction,
    kLost,  // messages lost in a frontend gap: absorbs answers up to the next ReadyForQuery
  };
  static constexpr uint64_t kNoOp = UINT64_MAX;
  struct Entry {
    Expect what;
    uint64_t op = kNoOp;
  };
  struct Slot {
    uint64_t id = 0;
    Operation op;
    bool announced = false;
    bool has_parse = false;
    bool done = false;  // ended: leaves once the operations before it left
    bool drop = false;  // ended without a span (not executed)
    uint32_t entries = 0;  // entries of pending_ that name it
  };

  Slot* Find(uint64_t id);
  // The operation the current extended-query batch gathers into (made on its Parse or Bind).
  Slot* GroupOp(const db::Frame& frame);
  Slot* NewOp(OpKind kind, const db::Frame& frame);
  void Announce(Slot& s, Output& out);
  void AddEntry(Expect what, uint64_t op);
  void Attribute(Slot& s, const db::Frame& frame);
  // Ends the operation; operations leave in request order.
  void End(Slot& s, Outcome outcome, Output& out);
  void Drop(Slot& s, Output& out);
  void Flush(Output& out);
  void OnStartupPacket(const db::Frame& frame, Output& out);
  void OnError(const db::Frame& frame, Output& out);
  void OnReadyForQuery(const db::Frame& frame, Output& out);
  // Pops the head entry; the operation it was the last hope of ends per `fate`.
  enum class Fate : uint8_t { kKeep, kLost, kNotExecuted };
  void PopHead(Fate fate, Output& out);
  // A new request while the backend is unaligned: see the header.
  void RealignBeforeRequest(Output& out);
  void GiveUp();

  const Limits& limits_;
  db::Metrics& metrics_;
  Phase phase_;
  bool ssl_requested_ = false;
  std::string database_;

  std::deque<Entry> pending_;
  std::deque<Slot> ops_;  // waiting, in request order
  uint64_t next_id_ = 0;
  std::optional<uint64_t> group_;    // the extended-query batch being gathered
  std::optional<uint64_t> copy_in_;  // the operation whose COPY FROM STDIN is running
  bool sync_group_failed_ = false;   // an error is skipping messages up to the next Sync
  bool backend_unaligned_ = false;   // framing lost on the backend since its last ReadyForQuery
  bool realign_backend_ = false;
  db::StatementTable<std::string> statements_;
  db::StatementTable<std::string> portals_;
};

}  // namespace threadline::postgres
