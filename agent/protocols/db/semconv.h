// The OpenTelemetry database conventions (stable names: db.system.name, db.namespace,
// db.operation.name, db.collection.name, db.query.summary, db.query.text,
// db.response.status_code, error.type, server.*, network.*), for every database protocol: each
// protocol's Describe reads its own operation into OperationFacts and this file names them.
//
// Spans: the name is the query summary (`SELECT shop.orders`), else the operation, else the
// system; ERROR when the database answered with an error (the status code says which) or the
// connection closed before the answer.
#pragma once

#include <cstdint>
#include <string_view>

#include "agent/conn/stream_consumer.h"
#include "agent/protocols/db/sql.h"
#include "agent/protocols/describe.h"
#include "agent/protocols/outcome.h"

namespace threadline::db {

// What the conventions read of one database operation, whatever the protocol. Views into the
// operation (or into an SqlAnalysis the caller holds).
struct OperationFacts {
  std::string_view system;            // db.system.name: "postgresql", "mysql", "mariadb", "redis"
  std::string_view db_namespace;      // db.namespace ("" when unknown)
  std::string_view operation;         // db.operation.name ("" when there is no single one)
  std::string_view collection;        // db.collection.name
  std::string_view stored_procedure;  // db.stored_procedure.name
  std::string_view summary;           // db.query.summary ("" when none)
  std::string_view name;              // the span name; "" : summary, else operation, else system
  std::string_view query_text;        // db.query.text, sanitised ("" : none or turned off)
  bool query_truncated = false;       // the statement was longer than what was captured
  int64_t batch_size = 0;             // db.operation.batch.size, set when >= 2
  std::string_view status_code;       // db.response.status_code ("" when none)
  bool error = false;                 // the database answered with an error (status_code)
  bool request_incomplete = false;    // bytes of the request were not seen
  bool response_incomplete = false;   // bytes of the response were not seen
  Outcome outcome = Outcome::kComplete;
};

void Describe(const OperationFacts& facts, Role role, const ConnectionInfo& conn, ExchangeView& out);

// The SQL-derived facts (summary, operation, collection, procedure, and the sanitised text when
// `options.query_text`) of `analysis`, which must outlive `facts`.
void FillFromSql(const SqlAnalysis& analysis, const DbDescribeOptions& options, OperationFacts& facts);

}  // namespace threadline::db
