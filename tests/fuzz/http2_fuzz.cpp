// libFuzzer target: HTTP/2 frames and HPACK, straight from the network. Drives Http2Connection
// with bytes, gaps and a close split the way the input says, and the HPACK decoder alone with a
// block, and checks the bounds they promise (buffered bytes, open streams, table size).
//
// Input: byte 0 picks the role, a mid-way join, small limits and an h2c upgrade (stream 1 adopted
// from HTTP/1); then records of
//   op (1 byte), len (2 bytes, little endian), then for data ops `len` payload bytes.
//   op & 3: 0 = data ingress, 1 = data egress, 2 = gap (direction op>>2 & 1, len << 12 when
//   op & 0x80), 3 = one HPACK block decoded by a separate decoder.
// The seeds (corpus/http2) start with the client preface so the fuzzer reaches frames quickly.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "agent/common/metrics.h"
#include "agent/protocols/http2/connection.h"
#include "agent/protocols/http2/hpack.h"
#include "agent/protocols/http2/protocol.h"

using namespace threadline;
using namespace threadline::http2;

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

struct Out : ParserOutput {
  void OnRequest(const RequestView& v) override {
    Check(v.edge.seen);
    std::string_view tp[2];
    if (v.carrier) (void)v.carrier->Values("traceparent", tp);
    ++requests;
  }
  void OnRecord(Record&& r) override {
    const auto& s = std::get<StreamRecord>(r.detail);
    Check(s.stream_id != 0);
    Check(s.request.first_messages.size() <= StreamHalf::kMaxMessageEvents);
    Check(s.response.first_messages.size() <= StreamHalf::kMaxMessageEvents);
    Check(s.path.size() <= 8 * 1024);
    if (r.request.edge.seen) Check(++records <= requests);
  }
  size_t requests = 0;
  size_t records = 0;
};

struct Discard : HpackDecoder::FieldSink {
  void OnField(std::string_view name, std::string_view value, bool known) override {
    if (!known) Check(value.empty() || name.empty() || true);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static MetricsRegistry& metrics = *new MetricsRegistry();
  static Http2Metrics& http2_metrics = *new Http2Metrics(metrics);
  if (size < 1) return 0;
  (void)LooksLikeFrames({data, size});

  const uint8_t config = data[0];
  const Role role = config % 3 == 0 ? Role::kServer : config % 3 == 1 ? Role::kClient : Role::kUnknown;
  Http2Limits limits;
  if (config & 0x10) {  // small limits reach the overflow paths with small inputs
    limits.max_streams = 3;
    limits.max_header_block_bytes = 64;
    limits.max_table_bytes = 256;
  }
  Http2Connection conn(role, (config & 0x20) != 0, limits, http2_metrics);
  HpackDecoder hpack(limits.max_table_bytes);
  Out out;
  if ((config & 0x40) && role != Role::kUnknown) {
    // h2c by Upgrade: stream 1 is an HTTP/1 request, announced by HTTP/1 (not by this parser).
    http1::Message upgraded;
    upgraded.method = "GET";
    upgraded.target = (config & 0x80) ? "http://h:1/abs?q" : "/up";
    upgraded.headers.Add("Host", "h:1");
    upgraded.headers.Add("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    upgraded.header_bytes = 60;
    conn.AdoptUpgradedRequest(upgraded);
    out.requests = 1;
  }

  uint64_t ts = 1000;
  uint64_t pos[2] = {0, 0};
  size_t i = 1;
  while (i + 3 <= size) {
    const uint8_t op = data[i];
    const uint64_t len = data[i + 1] | (static_cast<uint64_t>(data[i + 2]) << 8);
    i += 3;
    ts += 10;
    const Direction dir = (op & 4) ? Direction::kEgress : Direction::kIngress;
    switch (op & 3) {
      case 0:
      case 1: {
        const Direction d = (op & 3) == 0 ? Direction::kIngress : Direction::kEgress;
        const size_t n = std::min<size_t>(len, size - i);
        const size_t k = d == Direction::kEgress ? 0 : 1;
        conn.OnData(d, {data + i, n}, ChunkMeta{ts, ts - 1, op, 0, pos[k]}, out);
        pos[k] += n;
        i += n;
        break;
      }
      case 2: {
        const uint64_t gap = (op & 0x80) ? (len << 12) + 1 : len + 1;
        conn.OnGap(dir, gap, GapReason::kLost, ChunkMeta{ts, ts - 1, op, 0, 0}, out);
        pos[dir == Direction::kEgress ? 0 : 1] += gap;
        break;
      }
      case 3: {
        const size_t n = std::min<size_t>(len, size - i);
        Discard sink;
        (void)hpack.Decode({data + i, n}, sink);
        Check(hpack.table_bytes() <= limits.max_table_bytes);
        i += n;
        break;
      }
    }
    Check(conn.open_streams() <= limits.max_streams);
    Check(conn.buffered_bytes() <= 2 * limits.max_header_block_bytes + 2 * 1024 + 2 * 16384);
  }
  conn.OnClose(ts, false, out);
  Check(conn.open_streams() == 0);
  return 0;
}
