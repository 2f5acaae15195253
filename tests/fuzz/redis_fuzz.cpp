// libFuzzer target: drives a Redis connection parser (RESP2/3 both directions, pairing,
// pipelines, transactions, pub/sub) with bytes, gaps and a close (db_fuzz_driver.h); describes
// every operation and checks the bounds promised.
//
// Input: byte 0 picks the role (client, server with server spans, unknown) and small limits;
// the rest is db_fuzz_driver.h's records.
#include <cstddef>
#include <cstdint>

#include "agent/common/metrics.h"
#include "agent/protocols/redis/describe.h"
#include "agent/protocols/redis/protocol.h"
#include "tests/fuzz/db_fuzz_driver.h"

using namespace threadline;
using fuzz::Check;

namespace {

struct Checker final : fuzz::CheckedOutput<redis::Operation> {
  using CheckedOutput::CheckedOutput;
  void CheckOperation(const redis::Operation& op, const Record& /*r*/, const ExchangeView& /*view*/) override {
    Check(op.commands.size() <= redis::Operation::kKeptCommands);
    Check(op.command_count >= op.commands.size());
    for (const redis::Command& c : op.commands)
      for (const std::string& a : c.args) Check(a.size() <= redis::Command::kMaxArgBytes);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static MetricsRegistry& metrics = *new MetricsRegistry();
  if (size < 1) return 0;
  fuzz::FuzzedConnection fuzzed(data[0]);
  ProtocolOptions& options = fuzzed.options;
  if (fuzzed.small_limits) {
    options.redis.max_line_bytes = 8;
    options.redis.max_depth = 2;
    options.redis.max_pending = 3;
  }
  Checker out(ProtocolId::kRedis, fuzzed);
  std::unique_ptr<Protocol> protocol = redis::CreateProtocol(options, metrics);
  std::unique_ptr<ConnectionParser> parser = protocol->NewConnection(fuzzed.conn, {}, Direction::kEgress);
  fuzz::DriveConnection(*parser, fuzzed.role, data + 1, size - 1, out);
  return 0;
}
