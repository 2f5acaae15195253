// libFuzzer target: drives a PostgreSQL connection parser (framing, stitching, statement tables)
// with bytes, gaps and a close (db_fuzz_driver.h); describes every operation (the SQL sanitiser
// and summariser read fuzzed statements) and checks the bounds promised.
//
// Input: byte 0 picks the role (client, server with server spans, unknown) and small limits;
// the rest is db_fuzz_driver.h's records.
#include <cstddef>
#include <cstdint>

#include "agent/common/metrics.h"
#include "agent/protocols/postgres/describe.h"
#include "agent/protocols/postgres/protocol.h"
#include "tests/fuzz/db_fuzz_driver.h"

using namespace threadline;
using fuzz::Check;

namespace {

struct Checker final : fuzz::CheckedOutput<postgres::Operation> {
  using CheckedOutput::CheckedOutput;
  void CheckOperation(const postgres::Operation& op, const Record& r, const ExchangeView& view) override {
    Check(op.text.size() <= limits.max_statement_bytes);
    Check(r.request.evidence.target.data() == op.text.data());
    fuzz::CheckSanitizedText(view);
  }
  postgres::Limits limits;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static MetricsRegistry& metrics = *new MetricsRegistry();
  if (size < 1) return 0;
  fuzz::FuzzedConnection fuzzed(data[0]);
  ProtocolOptions& options = fuzzed.options;
  if (fuzzed.small_limits) {
    options.postgres.max_statement_bytes = 16;
    options.postgres.max_statements = 2;
    options.postgres.max_portals = 2;
    options.postgres.max_pending = 8;
    options.postgres.max_operations = 3;
  }
  Checker out(ProtocolId::kPostgres, fuzzed);
  out.limits = options.postgres;
  std::unique_ptr<Protocol> protocol = postgres::CreateProtocol(options, metrics);
  std::unique_ptr<ConnectionParser> parser = protocol->NewConnection(fuzzed.conn, {}, Direction::kEgress);
  fuzz::DriveConnection(*parser, fuzzed.role, data + 1, size - 1, out);
  return 0;
}
