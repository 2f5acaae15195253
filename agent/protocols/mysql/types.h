// MySQL / MariaDB client/server protocol operations as the protocols stage hands them to spans
// (the Record detail): one per command that gets an answer (COM_QUERY, COM_STMT_PREPARE,
// COM_STMT_EXECUTE, COM_INIT_DB, COM_PING, ...). Plain values, bounded: the statement text is
// capped and kept only in memory (Describe sanitises it); rows are counted, never kept.
#pragma once

#include <cstdint>
#include <string>

#include "agent/conn/stream_consumer.h"
#include "agent/protocols/outcome.h"

namespace threadline::mysql {

enum class OpKind : uint8_t {
  kQuery,    // COM_QUERY: one or more statements, every result set up to the last
  kPrepare,  // COM_STMT_PREPARE
  kExecute,  // COM_STMT_EXECUTE of a statement prepared on the connection
  kInitDb,   // COM_INIT_DB (what `USE db` becomes in the CLI)
  kOther,    // PING, RESET CONNECTION, STATISTICS, ...: named by `command_name`
};

struct Operation {
  OpKind kind = OpKind::kQuery;
  uint8_t command = 0;           // the COM_* byte
  const char* command_name = "";  // static storage, for kOther
  std::string text;              // statement (or schema of COM_INIT_DB) as sent, capped; never exported as is
  bool text_truncated = false;
  bool text_known = true;        // false: executes a statement prepared before the agent saw it
  uint32_t statement_id = 0;
  std::string database;          // the connection's current schema; "" unknown
  bool mariadb = false;          // the server's greeting said MariaDB (db.system.name)
  uint16_t error_code = 0;       // of an ERR packet; 0: none
  std::string sqlstate;          // of the ERR packet
  uint32_t result_sets = 0;
  uint64_t rows = 0;
  bool request_incomplete = false;
  bool response_incomplete = false;
  Outcome outcome = Outcome::kComplete;
  uint64_t closed_ts_ns = 0;

  ChunkMeta request_first, request_last;
  bool response_seen = false;
  ChunkMeta response_first, response_last;
};

}  // namespace threadline::mysql
