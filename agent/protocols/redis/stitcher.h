// One Redis connection's conversation: commands and replies in (parser.h values), Operations
// out (types.h). Replies answer commands in order; what the server sends on its own is never
// taken for a reply: RESP3 pushes ('>'), and in RESP2 the message arrays of a subscribed
// connection (counted as pushes, no span).
//
// Grouping: commands written before any reply of theirs was read form one pipeline operation (a
// client that waits for each reply makes one operation per command); MULTI opens a transaction
// that the commands it queues and EXEC or DISCARD join. An operation ends when the reply of its
// last command arrives; operations end in order.
//
// Per-connection state: the database index (0 from the connection's start, SELECT n after its
// +OK, RESET), whether the connection is subscribed. MONITOR and SYNC/PSYNC turn the connection
// into a stream of another kind: parsing stops there.
//
// Lost framing on either side leaves replies unaligned with commands: what waits ends as lost,
// and pairing starts again with the first reply after the next command (a client that waits for
// its replies reads every earlier one before writing again).
//
// Not thread-safe. Results go to the Output passed to each call, during that call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

#include "agent/protocols/db/metrics.h"
#include "agent/protocols/redis/parser.h"
#include "agent/protocols/redis/types.h"

namespace threadline::redis {

class Stitcher {
 public:
  class Output {
   public:
    virtual ~Output() = default;
    virtual void OnRequest(const Operation&) = 0;  // an operation's first command is whole
    virtual void OnOperation(Operation&&) = 0;
  };

  // `at_start`: the connection is seen from its first byte (its database is 0).
  Stitcher(const Limits& limits, db::Metrics& metrics, bool at_start);
  Stitcher(const Stitcher&) = delete;
  Stitcher& operator=(const Stitcher&) = delete;

  void OnCommand(const Value& v, Output& out);
  void OnReply(const Value& v, Output& out);
  // Framing was lost on that side.
  void OnCommandsLost(Output& out);
  void OnRepliesLost(Output& out);
  void OnClose(uint64_t ts_ns, Output& out);
  void Abandon();

  // Replies are unaligned (lost framing); they pair again from the first reply after a command
  // written since: the connection resynchronises the reply reader then and calls Realigned().
  bool unaligned() const { return unaligned_; }
  bool can_realign() const { return unaligned_ && command_since_; }
  void Realigned() { unaligned_ = command_since_ = false; }

  // No more RESP on this connection (MONITOR, replication) or given up.
  bool done() const { return done_; }

 private:
  struct Pending {
    uint64_t group = 0;
    uint32_t replies_left = 1;
    bool until_unsubscribed = false;  // UNSUBSCRIBE with no channel: until a count of 0
    std::string confirmation;         // (p|s)(un)subscribe: the kind of its confirmations
    uint32_t command_index = UINT32_MAX;  // in the operation's kept commands
    std::string select;               // SELECT n: the index, taken on +OK
    bool reset = false;               // RESET
    bool monitor = false;             // MONITOR: a stream of another kind follows its +OK
  };
  struct Group {
    uint64_t id = 0;
    Operation op;
    uint32_t waiting = 0;      // commands without their reply
    bool replied = false;      // a reply of it was read: no command joins it any more
    bool in_multi = false;     // a transaction whose EXEC/DISCARD was not written yet
    bool done = false;
  };

  Group* Find(uint64_t id);
  Group& GroupFor(const Command& c, const Value& v, Output& out);
  void Attribute(Group& g, const Value& v);
  void Complete(Group& g, Outcome outcome, Output& out);
  void Flush(Output& out);
  bool IsPush(const Value& v) const;
  void EndAllAsLost(Output& out);

  const Limits& limits_;
  db::Metrics& metrics_;
  std::string db_;  // "" unknown
  bool subscribed_ = false;
  bool done_ = false;
  bool unaligned_ = false;
  bool command_since_ = false;
  std::deque<Pending> pending_;
  std::deque<Group> groups_;
  uint64_t next_id_ = 0;
};

}  // namespace threadline::redis
