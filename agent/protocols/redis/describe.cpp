#include "agent/protocols/redis/describe.h"

#include <algorithm>
#include <string_view>

#include "agent/protocols/db/semconv.h"

namespace threadline::redis {

namespace {

// Commands whose first argument is a key (or a channel): kept in the text, as the conventions'
// example does (`HMSET myhash field1 ? field2 ?`). Every other argument is a value, a password,
// a script: replaced by ?.
bool FirstArgumentIsKey(std::string_view name) {
  static constexpr std::string_view kCommands[] = {
      "APPEND", "BITCOUNT", "BITFIELD", "BITPOS", "BLMOVE", "BLPOP", "BRPOP", "BRPOPLPUSH",
      "BZPOPMAX", "BZPOPMIN", "COPY", "DECR", "DECRBY", "DEL", "DUMP", "EXISTS", "EXPIRE",
      "EXPIREAT", "EXPIRETIME", "GEOADD", "GEODIST", "GEOHASH", "GEOPOS", "GEORADIUS",
      "GEOSEARCH", "GET", "GETBIT", "GETDEL", "GETEX", "GETRANGE", "GETSET", "HDEL", "HEXISTS",
      "HGET", "HGETALL", "HINCRBY", "HINCRBYFLOAT", "HKEYS", "HLEN", "HMGET", "HMSET",
      "HRANDFIELD", "HSCAN", "HSET", "HSETNX", "HSTRLEN", "HVALS", "INCR", "INCRBY",
      "INCRBYFLOAT", "LINDEX", "LINSERT", "LLEN", "LMOVE", "LPOP", "LPOS", "LPUSH", "LPUSHX",
      "LRANGE", "LREM", "LSET", "LTRIM", "MGET", "MOVE", "MSET", "MSETNX", "PERSIST", "PEXPIRE",
      "PEXPIREAT", "PFADD", "PFCOUNT", "PFMERGE", "PSETEX", "PSUBSCRIBE", "PTTL", "PUBLISH",
      "RENAME", "RENAMENX", "RPOP", "RPOPLPUSH", "RPUSH", "RPUSHX", "SADD", "SCARD", "SDIFF",
      "SET", "SETBIT", "SETEX", "SETNX", "SETRANGE", "SINTER", "SISMEMBER", "SMEMBERS",
      "SMISMEMBER", "SORT", "SPOP", "SRANDMEMBER", "SREM", "SSCAN", "SSUBSCRIBE", "STRLEN",
      "SUBSCRIBE", "SUNION", "TOUCH", "TTL", "TYPE", "UNLINK", "WATCH", "XACK", "XADD", "XDEL",
      "XLEN", "XRANGE", "XREVRANGE", "XTRIM", "ZADD", "ZCARD", "ZINCRBY", "ZRANGE",
      "ZCOUNT", "ZPOPMAX", "ZPOPMIN", "ZRANK", "ZREM", "ZREVRANGE", "ZREVRANK", "ZSCAN",
      "ZSCORE", "ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZMSCORE"};
  return std::find(std::begin(kCommands), std::end(kCommands), name) != std::end(kCommands);
}

// Commands whose first argument is a subcommand (CLIENT LIST, CONFIG GET, ...): kept.
bool FirstArgumentIsSubcommand(std::string_view name) {
  static constexpr std::string_view kCommands[] = {
      "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY",
      "MEMORY", "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO"};
  return std::find(std::begin(kCommands), std::end(kCommands), name) != std::end(kCommands);
}

bool Printable(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

constexpr size_t kMaxPlaceholders = 8;  // then " ..."

bool IsFrame(std::string_view name) { return name == "MULTI" || name == "EXEC" || name == "DISCARD"; }

}  // namespace

std::string SanitizedCommand(const Command& c) {
  std::string out = c.name;
  const bool keep_first = FirstArgumentIsKey(c.name) || FirstArgumentIsSubcommand(c.name);
  size_t placeholders = 0;
  for (uint32_t i = 0; i < c.argc; ++i) {
    // A kept argument must be whole and printable (a key cut at the capture is not shown).
    if (i == 0 && keep_first && Printable(c.args[0]) && c.args[0].size() < Command::kMaxArgBytes) {
      out += ' ';
      out += c.args[0];
      continue;
    }
    if (placeholders++ == kMaxPlaceholders) {
      out += " ...";
      break;
    }
    out += " ?";
  }
  return out;
}

void Describe(const Operation& op, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out) {
  db::OperationFacts f;
  f.system = "redis";
  f.db_namespace = op.db_index;
  std::string name;
  std::string text;
  if (!op.commands.empty()) {
    const Command* first = &op.commands[0];
    uint32_t batch = op.command_count;
    if (op.kind == OpKind::kTransaction) {
      // MULTI and EXEC frame the transaction; the commands in between are its operations.
      batch = 0;
      first = nullptr;
      for (const Command& c : op.commands) {
        if (IsFrame(c.name)) continue;
        if (!first) first = &c;
      }
      const uint32_t frames = static_cast<uint32_t>(std::count_if(op.commands.begin(), op.commands.end(),
                                                                  [](const Command& c) { return IsFrame(c.name); }));
      batch = op.command_count - std::min(frames, op.command_count);
    }
    switch (op.kind) {
      case OpKind::kCommand:
        name = first->name;
        break;
      case OpKind::kPipeline:
        name = op.same_name ? "PIPELINE " + first->name : "PIPELINE";
        break;
      case OpKind::kTransaction:
        name = first && op.same_name ? "MULTI " + first->name : "MULTI";
        break;
    }
    if (op.kind != OpKind::kCommand) f.batch_size = batch;
    if (options.db.query_text) {
      for (const Command& c : op.commands) {
        if (!text.empty()) text += "; ";
        text += SanitizedCommand(c);
      }
      if (op.command_count > op.commands.size()) text += "; ...";
      f.query_text = text;
    }
  }
  f.operation = name;
  f.name = name;  // Redis span names leave the namespace out (a number that reads oddly)
  if (!op.error.empty()) {
    f.status_code = op.error;  // every Redis error prefix is an error
    f.error = true;
  }
  f.request_incomplete = op.request_incomplete;
  f.response_incomplete = op.response_incomplete;
  f.outcome = op.outcome;
  db::Describe(f, role, conn, out);
  if (op.aborted) out.attributes.push_back({"threadline.db.redis.transaction_aborted", true});
}

}  // namespace threadline::redis
