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

struct Checker final : ParserOutput {
  void OnRequest(const RequestView& v) override {
    Check(v.protocol == ProtocolId::kMySql);
    ++announced;
  }
  void OnRecord(Record&& r) override {
    const auto* op = std::get_if<mysql::Operation>(&r.detail);
    Check(op != nullptr);
    Check(++records <= announced);
    Check(op->text.size() <= limits.max_statement_bytes);
    ExchangeView view;
    mysql::Describe(*op, role, conn, options, view);
    Check(!view.name.empty());
  }
  mysql::Limits limits;
  Role role = Role::kClient;
  ConnectionInfo conn;
  DescribeOptions options;
  size_t announced = 0;
  size_t records = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static MetricsRegistry& metrics = *new MetricsRegistry();
  if (size < 1) return 0;
  const uint8_t config = data[0];
  ProtocolOptions options;
  Checker out;
  out.role = config % 3 == 0 ? Role::kClient : config % 3 == 1 ? Role::kServer : Role::kUnknown;
  options.db_server_spans = true;
  if (config & 0x10) {
    options.mysql.max_statement_bytes = 16;
    options.mysql.max_statements = 2;
    options.mysql.max_operations = 3;
  }
  out.limits = options.mysql;
  out.conn.id = ConnId{1, 3, 1};
  out.conn.role = out.role;
  out.conn.tls = (config & 0x20) != 0;
  std::unique_ptr<Protocol> protocol = mysql::CreateProtocol(options, metrics);
  std::unique_ptr<ConnectionParser> parser = protocol->NewConnection(out.conn, {}, Direction::kEgress);
  const size_t used = fuzz::DriveConnection(*parser, out.role, data + 1, size - 1, out);
  if ((config & 0x40) && used < size - 1) {
    out.conn.tls = true;
    std::unique_ptr<ConnectionParser> plaintext = protocol->NewConnection(out.conn, {}, Direction::kEgress);
    fuzz::DriveConnection(*plaintext, out.role, data + 1 + used, size - 1 - used, out);
  }
  return 0;
}
