// libFuzzer target: drives a MySQL/MariaDB connection parser (packet framing, the handshake,
// response state machines, prepared statements by id) with bytes, gaps and a close
// (db_fuzz_driver.h); describes every operation (the SQL sanitiser reads fuzzed statements) and
// checks the bounds promised.
//
// Input: byte 0 picks the role (client, server with server spans, unknown), small limits, TLS
// plaintext (0x20), and (0x40) a second connection: the records after the first close are the TLS
// plaintext of the same connection (the clear-text greeting's facts handed over by connection
// id); the rest is db_fuzz_driver.h's records.
#include <cstddef>
#include <cstdint>

#include "agent/common/metrics.h"
#include "agent/protocols/mysql/describe.h"
#include "agent/protocols/mysql/protocol.h"
#include "tests/fuzz/db_fuzz_driver.h"

using namespace threadline;
using fuzz::Check;

namespace {

struct Checker final : fuzz::CheckedOutput<mysql::Operation> {
  using CheckedOutput::CheckedOutput;
  void CheckOperation(const mysql::Operation& op, const Record& /*r*/, const ExchangeView& view) override {
    Check(op.text.size() <= limits.max_statement_bytes);
    fuzz::CheckSanitizedText(view);
  }
  mysql::Limits limits;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static MetricsRegistry& metrics = *new MetricsRegistry();
  if (size < 1) return 0;
  const uint8_t config = data[0];
  fuzz::FuzzedConnection fuzzed(config);
  ProtocolOptions& options = fuzzed.options;
  if (fuzzed.small_limits) {
    options.mysql.max_statement_bytes = 16;
    options.mysql.max_statements = 2;
    options.mysql.max_operations = 3;
  }
  fuzzed.conn.tls = (config & 0x20) != 0;
  Checker out(ProtocolId::kMySql, fuzzed);
  out.limits = options.mysql;
  std::unique_ptr<Protocol> protocol = mysql::CreateProtocol(options, metrics);
  std::unique_ptr<ConnectionParser> parser = protocol->NewConnection(fuzzed.conn, {}, Direction::kEgress);
  const size_t used = fuzz::DriveConnection(*parser, fuzzed.role, data + 1, size - 1, out);
  if ((config & 0x40) && used < size - 1) {
    fuzzed.conn.tls = true;
    std::unique_ptr<ConnectionParser> plaintext = protocol->NewConnection(fuzzed.conn, {}, Direction::kEgress);
    fuzz::DriveConnection(*plaintext, fuzzed.role, data + 1 + used, size - 1 - used, out);
  }
  return 0;
}
