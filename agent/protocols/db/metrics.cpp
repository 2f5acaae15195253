#include "agent/protocols/db/metrics.h"

#include <string>

namespace threadline::db {

std::string_view ToString(Failure f) {
  switch (f) {
    case Failure::kBadMessage: return "bad_message";
    case Failure::kFramingLost: return "framing_lost";
    case Failure::kUnexpectedResponse: return "unexpected_response";
    case Failure::kTooManyPending: return "too_many_pending";
    case Failure::kStatementUnknown: return "statement_unknown";
    case Failure::kGaveUp: return "gave_up";
  }
  return "unknown";
}

Metrics::Metrics(MetricsRegistry& metrics, std::string_view protocol) {
  const std::string p(protocol);
  for (size_t i = 0; i < kFailureCount; ++i)
    failures[i] = &metrics.GetCounter(
        "threadline_parse_failures_total",
        {{"protocol", p}, {"reason", std::string(ToString(static_cast<Failure>(i)))}},
        "Bytes or messages a protocol parser could not parse, by reason");
  for (size_t i = 0; i < kOutcomeCount; ++i)
    operations[i] = &metrics.GetCounter(
        "threadline_db_operations_total",
        {{"protocol", p}, {"outcome", std::string(ToString(static_cast<Outcome>(i)))}},
        "Database operations (queries, commands) seen, by protocol and outcome");
  abandoned = &metrics.GetCounter("threadline_db_operations_abandoned_total", {{"protocol", p}},
                                  "Database operations whose connection the agent evicted before the answer");
  not_executed = &metrics.GetCounter(
      "threadline_db_operations_not_executed_total", {{"protocol", p}},
      "Requests the database skipped after an earlier error in the same batch (no span)");
  server_side = &metrics.GetCounter(
      "threadline_db_server_connections_skipped_total", {{"protocol", p}},
      "Connections of traced database servers left unparsed (db.server_spans off)");
  pushes = &metrics.GetCounter(
      "threadline_db_pushes_total", {{"protocol", p}},
      "Messages a database sent on its own (pub/sub messages, notifications): never taken for replies");
}

}  // namespace threadline::db
