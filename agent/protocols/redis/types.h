// Redis (RESP2 and RESP3) operations as the protocols stage hands them to spans (the Record
// detail): one per command, one per pipeline (commands written before any of their replies was
// read), one per transaction (MULTI ... EXEC/DISCARD). Plain values, bounded: a command keeps its
// name and its first arguments (capped), never the values it writes or reads.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/conn/stream_consumer.h"
#include "agent/protocols/outcome.h"

namespace threadline::redis {

// A command as sent: its name and first arguments (the key, a subcommand), capped.
struct Command {
  static constexpr size_t kKeptArgs = 2;       // after the name
  static constexpr size_t kMaxArgBytes = 128;  // of a kept argument
  std::string name;                            // upper-cased
  std::array<std::string, kKeptArgs> args;     // the first arguments, capped (only in memory)
  uint32_t argc = 0;                           // arguments after the name
  std::string error;  // the reply's error prefix (ERR, WRONGTYPE, ...); "" when not an error
};

enum class OpKind : uint8_t {
  kCommand,      // one command and its reply
  kPipeline,     // several commands written before any of their replies was read
  kTransaction,  // MULTI, the commands it queued, EXEC or DISCARD
};

struct Operation {
  static constexpr size_t kKeptCommands = 8;  // described one by one; the rest only counted
  OpKind kind = OpKind::kCommand;
  std::vector<Command> commands;  // the first kKeptCommands
  uint32_t command_count = 0;     // all of them
  bool same_name = true;          // every command has the name of the first (MULTI/EXEC aside)
  std::string db_index;           // the connection's database ("0" from its start, SELECT n); "" unknown
  std::string error;              // the first error prefix among the replies; "" none
  bool aborted = false;           // EXEC answered null (a WATCHed key changed) or DISCARD
  bool request_incomplete = false;
  bool response_incomplete = false;
  Outcome outcome = Outcome::kComplete;
  uint64_t closed_ts_ns = 0;

  ChunkMeta request_first, request_last;
  bool response_seen = false;
  ChunkMeta response_first, response_last;
};

}  // namespace threadline::redis
