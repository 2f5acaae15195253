// A PostgreSQL operation in the OpenTelemetry database conventions (db/semconv.h):
// db.system.name "postgresql", db.namespace the startup's database, the statement's summary,
// operation and table from its text (sanitised into db.query.text), SQLSTATE of an error.
#pragma once

#include "agent/protocols/describe.h"
#include "agent/protocols/postgres/types.h"

namespace threadline::postgres {

void Describe(const Operation& op, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out);

}  // namespace threadline::postgres
