// Helpers for the HTTP/2 tests: frames and header blocks built byte by byte (HPACK literals
// without indexing, static-table references, and literals with incremental indexing for tests
// of the dynamic table), and a ParserOutput that records what a connection reports.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/protocols/http2/types.h"
#include "agent/protocols/protocol.h"

namespace threadline::http2::test {

using Bytes = std::vector<uint8_t>;

inline void Append(Bytes& out, std::string_view s) { out.insert(out.end(), s.begin(), s.end()); }

inline Bytes Frame(FrameType type, uint8_t flags, uint32_t stream, const Bytes& payload) {
  Bytes f;
  const uint32_t n = static_cast<uint32_t>(payload.size());
  f.push_back(static_cast<uint8_t>(n >> 16));
  f.push_back(static_cast<uint8_t>(n >> 8));
  f.push_back(static_cast<uint8_t>(n));
  f.push_back(static_cast<uint8_t>(type));
  f.push_back(flags);
  f.push_back(static_cast<uint8_t>(stream >> 24));
  f.push_back(static_cast<uint8_t>(stream >> 16));
  f.push_back(static_cast<uint8_t>(stream >> 8));
  f.push_back(static_cast<uint8_t>(stream));
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

// HPACK string (no Huffman); lengths under 127.
inline void HpackString(Bytes& out, std::string_view s) {
  out.push_back(static_cast<uint8_t>(s.size()));
  Append(out, s);
}

// A header block of literals without indexing (new names).
inline Bytes Block(const std::vector<std::pair<std::string, std::string>>& fields,
                   bool incremental = false) {
  Bytes b;
  for (const auto& [name, value] : fields) {
    b.push_back(incremental ? 0x40 : 0x00);
    HpackString(b, name);
    HpackString(b, value);
  }
  return b;
}

inline Bytes Concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

inline Bytes Preface() {
  Bytes b;
  Append(b, kPreface);
  return b;
}

inline Bytes Settings() { return Frame(FrameType::kSettings, 0, 0, {0x00, 0x03, 0x00, 0x00, 0x00, 0x64}); }

// A gRPC message: compressed flag, 4-byte length, payload.
inline Bytes GrpcMessageBytes(std::string_view payload) {
  Bytes b{0, 0, 0, 0, static_cast<uint8_t>(payload.size())};
  Append(b, payload);
  return b;
}

struct Recorder : ParserOutput {
  void OnRequest(const RequestView& v) override {
    requests.push_back(v.stream_id);
    std::string_view tp[2];
    traceparents.push_back(v.carrier && v.carrier->Values("traceparent", tp) == 1 ? std::string(tp[0]) : "");
    first_pos.push_back(v.edge.first.pos);
  }
  void OnRecord(Record&& r) override {
    outcomes.push_back(r.outcome);
    announced.push_back(r.request.edge.seen);
    records.push_back(std::get<StreamRecord>(r.detail));
  }
  std::vector<uint32_t> requests;
  std::vector<std::string> traceparents;
  std::vector<uint64_t> first_pos;
  std::vector<StreamRecord> records;
  std::vector<Outcome> outcomes;
  std::vector<bool> announced;
};

}  // namespace threadline::http2::test
