// libFuzzer target: drives a PostgreSQL connection parser (framing, stitching, statement tables)
// with bytes, gaps and a close, split the way the fuzzer's input says; describes every operation
// (the SQL sanitiser and summariser read fuzzed statements) and checks the bounds promised.
//
// Input: byte 0 picks the role (client, server with server spans, unknown) and small limits;
// then records of op (1 byte), len (2 bytes, little endian), then for data ops `len` bytes.
//   op & 3: 0 = data from the client, 1 = data from the server, 2 = gap (side op>>2 & 1,
//   len << 12 when op & 0x80), 3 = close (then the input ends).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "agent/common/metrics.h"
#include "agent/protocols/db/sql.h"
#include "agent/protocols/postgres/describe.h"
#include "agent/protocols/postgres/protocol.h"

using namespace threadline;

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

struct Checker final : ParserOutput {
  void OnRequest(const RequestView& v) override {
    Check(v.protocol == ProtocolId::kPostgres);
    ++announced;
  }
  void OnRecord(Record&& r) override {
    const auto* op = std::get_if<postgres::Operation>(&r.detail);
    Check(op != nullptr);
    Check(++records <= announced);
    Check(op->text.size() <= limits.max_statement_bytes);
    Check(r.request.evidence.target.data() == op->text.data());
    ExchangeView view;
    postgres::Describe(*op, role, conn, options, view);
    Check(!view.name.empty());
    for (const Attribute& a : view.attributes) {
      if (a.key != "db.query.text") continue;
      const auto& text = std::get<std::string>(a.value);
      Check(text.size() <= db::kMaxSanitizedBytes);
    }
  }
  postgres::Limits limits;
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
    options.postgres.max_statement_bytes = 16;
    options.postgres.max_statements = 2;
    options.postgres.max_portals = 2;
    options.postgres.max_pending = 8;
    options.postgres.max_operations = 3;
  }
  out.limits = options.postgres;
  out.conn.id = ConnId{1, 3, 1};
  out.conn.role = out.role;
  std::unique_ptr<Protocol> protocol = postgres::CreateProtocol(options, metrics);
  std::unique_ptr<ConnectionParser> parser = protocol->NewConnection(out.conn);
  // The client's requests go out; a server receives them.
  const Direction client_dir = out.role == Role::kServer ? Direction::kIngress : Direction::kEgress;
  const Direction server_dir = client_dir == Direction::kEgress ? Direction::kIngress : Direction::kEgress;

  uint64_t ts = 1000;
  uint64_t pos[2] = {0, 0};
  size_t i = 1;
  bool closed = false;
  while (i + 3 <= size && !closed) {
    const uint8_t op = data[i];
    const uint64_t len = data[i + 1] | (static_cast<uint64_t>(data[i + 2]) << 8);
    i += 3;
    ts += 10;
    switch (op & 3) {
      case 0:
      case 1: {
        const Direction dir = (op & 3) == 0 ? client_dir : server_dir;
        const size_t n = std::min<size_t>(len, size - i);
        ChunkMeta meta{ts, ts - 1, 7, 0, pos[static_cast<int>(dir)]};
        parser->OnData(dir, {data + i, n}, meta, out);
        pos[static_cast<int>(dir)] += n;
        i += n;
        break;
      }
      case 2: {
        const Direction dir = (op & 4) ? server_dir : client_dir;
        const uint64_t gap = (op & 0x80) ? (len << 12) + 1 : len + 1;
        ChunkMeta meta{ts, ts - 1, 7, 0, pos[static_cast<int>(dir)]};
        parser->OnGap(dir, gap, GapReason::kNotCaptured, meta, out);
        pos[static_cast<int>(dir)] += gap;
        break;
      }
      case 3:
        parser->OnClose(ts, false, out);
        closed = true;
        break;
    }
  }
  if (!closed) parser->OnClose(ts, false, out);
  return 0;
}
