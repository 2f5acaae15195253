#include "agent/protocols/mysql/describe.h"

#include <string>

#include "agent/protocols/db/semconv.h"
#include "agent/protocols/db/sql.h"

namespace threadline::mysql {

void Describe(const Operation& op, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out) {
  db::OperationFacts f;
  f.system = op.mariadb ? "mariadb" : "mysql";
  f.db_namespace = op.database;
  db::SqlAnalysis sql;
  std::string name;
  switch (op.kind) {
    case OpKind::kQuery:
    case OpKind::kExecute:
      if (!op.text_known) {
        f.operation = op.kind == OpKind::kExecute ? "EXECUTE" : "QUERY";
        break;
      }
      sql = db::AnalyzeSql(op.text, db::SqlDialect::kMySql);
      db::FillFromSql(sql, options.db, f);
      break;
    case OpKind::kPrepare:
      sql = db::AnalyzeSql(op.text, db::SqlDialect::kMySql);
      db::FillFromSql(sql, options.db, f);
      name = sql.summary.empty() ? "PREPARE" : "PREPARE " + sql.summary;
      f.summary = name;
      f.operation = "PREPARE";
      break;
    case OpKind::kInitDb:
      // COM_INIT_DB is `USE <schema>`: the schema is the target, and the namespace from here on.
      f.operation = "USE";
      f.db_namespace = op.text;
      name = "USE " + op.text;
      f.name = name;
      break;
    case OpKind::kOther:
      f.operation = op.command_name;
      break;
  }
  f.query_truncated = op.text_truncated;
  std::string code;
  if (op.error_code != 0) {
    code = std::to_string(op.error_code);  // the MySQL error number (SQLSTATE is coarser)
    f.status_code = code;
    f.error = true;
  }
  f.request_incomplete = op.request_incomplete;
  f.response_incomplete = op.response_incomplete;
  f.outcome = op.outcome;
  db::Describe(f, role, conn, out);
}

}  // namespace threadline::mysql
