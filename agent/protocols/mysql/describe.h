// A MySQL/MariaDB operation in the OpenTelemetry database conventions (db/semconv.h):
// db.system.name "mariadb" or "mysql" (the server's greeting says which; "mysql" when it was not
// seen), db.namespace the current schema, the statement's summary, operation and table from its
// text (sanitised into db.query.text), the error number as status code.
#pragma once

#include "agent/protocols/describe.h"
#include "agent/protocols/mysql/types.h"

namespace threadline::mysql {

void Describe(const Operation& op, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out);

}  // namespace threadline::mysql
