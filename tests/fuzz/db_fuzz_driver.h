// What the database protocols' libFuzzer targets share: one connection's parser driven with
// bytes, gaps and a close, split the way the fuzzer's input says.
//
// Byte 0 configures the connection (FuzzedConnection); the rest, the input: records of op (1 byte), len (2 bytes, little
// endian), then for data ops `len` bytes. op & 3: 0 = data from the client, 1 = data from the
// server, 2 = gap (side op>>2 & 1, len << 12 when op & 0x80), 3 = close (then the input ends).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <variant>

#include "agent/protocols/db/sql.h"
#include "agent/protocols/describe.h"
#include "agent/protocols/protocol.h"

namespace threadline::fuzz {

inline void Check(bool ok) {
  if (!ok) std::abort();
}

// The client's requests go out; a server receives them (unknown: as a client, the parser must
// find out). Returns how many bytes of `data` it read (up to and with a close record).
inline size_t DriveConnection(ConnectionParser& parser, Role role, const uint8_t* data, size_t size,
                              ParserOutput& out) {
  const Direction client_dir = role == Role::kServer ? Direction::kIngress : Direction::kEgress;
  const Direction server_dir = client_dir == Direction::kEgress ? Direction::kIngress : Direction::kEgress;
  uint64_t ts = 1000;
  uint64_t pos[2] = {0, 0};
  size_t i = 0;
  while (i + 3 <= size) {
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
        parser.OnData(dir, {data + i, n}, meta, out);
        pos[static_cast<int>(dir)] += n;
        i += n;
        break;
      }
      case 2: {
        const Direction dir = (op & 4) ? server_dir : client_dir;
        const uint64_t gap = (op & 0x80) ? (len << 12) + 1 : len + 1;
        ChunkMeta meta{ts, ts - 1, 7, 0, pos[static_cast<int>(dir)]};
        parser.OnGap(dir, gap, GapReason::kNotCaptured, meta, out);
        pos[static_cast<int>(dir)] += gap;
        break;
      }
      case 3:
        parser.OnClose(ts, false, out);
        return i;
    }
  }
  parser.OnClose(ts, false, out);
  return size;
}

// What the config byte says of the connection: the role (config % 3: client, server with server
// spans, unknown) and whether the target should set its small limits (0x10).
struct FuzzedConnection {
  explicit FuzzedConnection(uint8_t config)
      : role(config % 3 == 0 ? Role::kClient : config % 3 == 1 ? Role::kServer : Role::kUnknown),
        small_limits((config & 0x10) != 0) {
    options.db_server_spans = true;
    conn.id = ConnId{1, 3, 1};
    conn.role = role;
  }
  Role role;
  bool small_limits;
  ProtocolOptions options;
  ConnectionInfo conn;
};

// Checks what every database protocol promises of its output: records of its Operation, each
// announced by OnRequest first, each named by its Describe (found by the Operation's namespace);
// CheckOperation adds the protocol's own bounds.
template <class Operation>
class CheckedOutput : public ParserOutput {
 public:
  CheckedOutput(ProtocolId protocol, const FuzzedConnection& fuzzed) : protocol_(protocol), fuzzed_(fuzzed) {}

  void OnRequest(const RequestView& v) final {
    Check(v.protocol == protocol_);
    ++announced_;
  }
  void OnRecord(Record&& r) final {
    const auto* op = std::get_if<Operation>(&r.detail);
    Check(op != nullptr);
    Check(++records_ <= announced_);
    ExchangeView view;
    Describe(*op, fuzzed_.role, fuzzed_.conn, DescribeOptions{}, view);
    Check(!view.name.empty());
    CheckOperation(*op, r, view);
  }

 protected:
  virtual void CheckOperation(const Operation& op, const Record& r, const ExchangeView& view) = 0;

 private:
  ProtocolId protocol_;
  const FuzzedConnection& fuzzed_;
  size_t announced_ = 0;
  size_t records_ = 0;
};

// The SQL sanitiser's output stays within its bound.
inline void CheckSanitizedText(const ExchangeView& view) {
  for (const Attribute& a : view.attributes)
    if (a.key == "db.query.text") Check(std::get<std::string>(a.value).size() <= db::kMaxSanitizedBytes);
}

}  // namespace threadline::fuzz
