// A Redis operation in the OpenTelemetry database conventions (db/semconv.h): db.system.name
// "redis", db.namespace the database index, db.operation.name the command (PIPELINE <cmd> /
// MULTI <cmd> for batches, with db.operation.batch.size), db.query.text in redis-cli syntax with
// every value replaced by ? (the key and a subcommand kept), the error prefix as status code.
#pragma once

#include <string>

#include "agent/protocols/describe.h"
#include "agent/protocols/redis/types.h"

namespace threadline::redis {

void Describe(const Operation& op, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out);

// One command as db.query.text shows it: `SET user:1 ?`, `HSET h ? ? ? ?`, `AUTH ?`.
std::string SanitizedCommand(const Command& c);

}  // namespace threadline::redis
