#include "agent/protocols/postgres/describe.h"

#include <string>

#include "agent/protocols/db/semconv.h"
#include "agent/protocols/db/sql.h"

namespace threadline::postgres {

void Describe(const Operation& op, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out) {
  db::OperationFacts f;
  f.system = "postgresql";
  f.db_namespace = op.database;
  db::SqlAnalysis sql;
  std::string prepare_summary;
  switch (op.kind) {
    case OpKind::kQuery:
    case OpKind::kExecute:
      if (!op.text_known) {
        f.operation = "EXECUTE";  // a statement prepared before the agent saw the connection
        break;
      }
      sql = db::AnalyzeSql(op.text, db::SqlDialect::kPostgres);
      db::FillFromSql(sql, options.db, f);
      break;
    case OpKind::kPrepare:
      sql = db::AnalyzeSql(op.text, db::SqlDialect::kPostgres);
      db::FillFromSql(sql, options.db, f);
      prepare_summary = sql.summary.empty() ? "PREPARE" : "PREPARE " + sql.summary;
      f.summary = prepare_summary;
      f.operation = "PREPARE";
      break;
    case OpKind::kFunctionCall:
      f.operation = "FUNCTION CALL";
      break;
    case OpKind::kCancel:
      f.operation = "CANCEL";
      break;
  }
  f.query_truncated = op.text_truncated;
  // An ErrorResponse is an error whatever its class (warnings come as notices).
  if (!op.error_code.empty()) {
    f.status_code = op.error_code;
    f.error = true;
  }
  f.request_incomplete = op.request_incomplete;
  f.response_incomplete = op.response_incomplete;
  f.outcome = op.outcome;
  db::Describe(f, role, conn, out);
}

}  // namespace threadline::postgres
