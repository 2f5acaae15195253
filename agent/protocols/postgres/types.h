// PostgreSQL wire protocol v3 operations as the protocols stage hands them to spans (the Record
// detail): one per simple query, per Execute of the extended protocol, per prepare-only batch,
// per function call and per cancel request. Plain values, bounded: the statement text is capped
// and kept only in memory (Describe sanitises it); rows and COPY data are counted, never kept.
#pragma once

#include <cstdint>
#include <string>

#include "agent/conn/stream_consumer.h"
#include "agent/protocols/outcome.h"

namespace threadline::postgres {

enum class OpKind : uint8_t {
  kQuery,         // simple query ('Q'): one or more statements, up to ReadyForQuery
  kExecute,       // extended query: the Parse/Bind/Describe messages before an Execute, and it
  kPrepare,       // extended query batch with a Parse but no Execute, up to its Sync
  kFunctionCall,  // 'F' (legacy fast-path function call)
  kCancel,        // CancelRequest on a connection of its own
};

struct Operation {
  OpKind kind = OpKind::kQuery;
  std::string text;             // the statement as sent, capped (literals included: never exported)
  bool text_truncated = false;  // longer than captured or kept
  bool text_known = true;       // false: Execute of a statement prepared before the agent saw it
  std::string statement;        // prepared statement name ("" for the unnamed one)
  std::string database;         // startup "database" (PostgreSQL defaults it to the user); "" unknown
  std::string error_code;       // SQLSTATE of the first ErrorResponse; "" none
  std::string command_tag;      // the last CommandComplete tag, e.g. "SELECT 5" (no values)
  uint32_t results = 0;         // CommandComplete/EmptyQueryResponse messages
  uint64_t rows = 0;            // DataRow messages
  uint64_t response_bytes = 0;  // backend bytes attributed to the operation
  bool copy = false;            // it ran a COPY
  bool suspended = false;       // the Execute stopped at its row limit (PortalSuspended)
  bool request_incomplete = false;
  bool response_incomplete = false;
  Outcome outcome = Outcome::kComplete;
  uint64_t closed_ts_ns = 0;  // kClosedBeforeResponse, and a cancel request: the connection's end

  // The first and last byte of the request (its first message to its Execute, Query or Sync, and
  // CopyData that followed) and of the response (first backend message to its completion).
  ChunkMeta request_first, request_last;
  bool response_seen = false;
  ChunkMeta response_first, response_last;
};

}  // namespace threadline::postgres
