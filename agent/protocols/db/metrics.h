// The counters every database protocol keeps, looked up once per protocol and shared by its
// connections: parse failures by reason (threadline_parse_failures_total{protocol,reason}, as
// HTTP's), operations by outcome, and what was dropped on purpose.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/common/metrics.h"
#include "agent/protocols/outcome.h"

namespace threadline::db {

// Why bytes or messages of a database protocol could not be used; a fixed set (metric label).
enum class Failure : uint8_t {
  kBadMessage,          // a header or message that the protocol does not allow here
  kFramingLost,         // a gap swallowed a message boundary: skipped until the next message
  kUnexpectedResponse,  // a response with no request waiting for it (joined mid-stream, lost)
  kTooManyPending,      // requests waiting for responses over the limit: not traced
  kStatementUnknown,    // a prepared statement executed whose text was never seen (or evicted)
  kGaveUp,              // the connection stopped being parsed (failures in a row)
};
inline constexpr size_t kFailureCount = 6;
std::string_view ToString(Failure f);

struct Metrics {
  Metrics(MetricsRegistry& metrics, std::string_view protocol);
  void Fail(Failure f) { failures[static_cast<size_t>(f)]->Add(1); }
  void Ended(Outcome o) { operations[static_cast<size_t>(o)]->Add(1); }

  std::array<Counter*, kFailureCount> failures{};
  std::array<Counter*, kOutcomeCount> operations{};  // by Outcome
  Counter* abandoned = nullptr;     // operations of connections the agent evicted unanswered
  Counter* not_executed = nullptr;  // requests the server skipped after an earlier error
  Counter* server_side = nullptr;   // connections of a traced database server, not parsed
  Counter* pushes = nullptr;        // messages the server sent on its own (pub/sub, notifications)
};

}  // namespace threadline::db
