// libFuzzer target: drives Http1Connection with bytes, gaps and a close, split the way the
// fuzzer's input says, and checks the bounds the parser promises.
//
// Input: byte 0 picks the role and the limits; then records of
//   op (1 byte), len (2 bytes, little endian), then for data ops `len` payload bytes.
//   op & 3: 0 = data ingress, 1 = data egress, 2 = gap (direction op>>2 & 1, reason op>>3 % 3,
//   len << 12 when op & 0x80), 3 = close (then the input ends).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "agent/common/metrics.h"
#include "agent/protocols/http1/detect.h"
#include "agent/protocols/http1/stitcher.h"

using namespace threadline;
using namespace threadline::http1;

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckMessage(const Message& m) {
  Check(m.headers.size() <= HeaderList::kMaxHeaders);
  Check(m.trailers.size() <= HeaderList::kMaxHeaders);
  for (Header h : m.headers.fields()) Check(h.value.size() <= HeaderList::kMaxValueBytes);
  Check(m.body_bytes_not_captured <= m.body_wire_bytes);
  Check(m.body_bytes <= m.body_wire_bytes);
  Check(m.header_bytes > 0);
  Check(m.last_chunk.ts_ns >= m.first_chunk.ts_ns);
  Check(m.is_request() ? !m.method.empty() : m.status_code >= 100);
}

// One MessageParser's output as text: every message's fields and sizes and every failure.
// Two parsers fed the same bytes in different pieces write the same when either of them met no
// failure: a header line whole in a chunk is read in one pass (syntax::ScanFieldLine), a line
// fed in pieces the general way, and both accept and refuse the same lines. (After a failure
// the pieces may legitimately matter: a start line is refused early by its first bytes when it
// comes in pieces, and resynchronisation keeps a long line's tail by the piece.)
struct Transcript : MessageParser::Listener {
  void OnMessage(std::unique_ptr<Message> m) override {
    text += m->is_request() ? m->method + " " + m->target : std::to_string(m->status_code);
    text += " " + std::to_string(m->header_bytes) + " " + std::to_string(m->body_bytes) + " " +
            std::to_string(m->body_wire_bytes) + " " + std::to_string(m->connection_close) +
            std::to_string(m->expect_continue) + std::to_string(m->upgrade_requested) +
            std::to_string(static_cast<int>(m->framing));
    for (Header h : m->headers.fields()) text += "[" + std::string(h.name) + ":" + std::string(h.value) + "]";
    text += "\n";
  }
  void OnFailure(FailureReason r, bool lost) override {
    text += "failure " + std::string(ToString(r)) + (lost ? " lost\n" : "\n");
    ++failures;
  }
  std::string text;
  size_t failures = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static MetricsRegistry& metrics = *new MetricsRegistry();
  if (size < 1) return 0;
  (void)LooksLikeHttp1Request({data, size});
  (void)LooksLikeHttp1Response({data, size});

  uint8_t config = data[0];
  Role role = config % 3 == 0 ? Role::kServer : config % 3 == 1 ? Role::kClient : Role::kUnknown;
  Http1Limits limits;
  if (config & 0x10) {  // small limits reach the overflow paths with small inputs
    limits.parser.max_header_bytes = 200;
    limits.parser.max_start_line = 64;
    limits.parser.max_chunk_line = 16;
    limits.parser.max_resync_line = 32;
    limits.parser.resync_failure_bytes = 512;
    limits.max_pending_requests = 3;
    limits.max_consecutive_failures = 3;
  }
  static Http1Metrics& http1_metrics = *new Http1Metrics(metrics);
  // Every request is announced once, before the exchange that carries it.
  struct Checker : Http1Connection::Output {
    void OnRequest(const Message& m) override {
      CheckMessage(m);
      ++announced;
    }
    void OnExchange(Exchange&& e) override {
      if (e.request) CheckMessage(*e.request);
      if (e.response) CheckMessage(*e.response);
      Check(e.request != nullptr || e.response != nullptr);
      if (e.request) Check(++with_request <= announced);
    }
    size_t announced = 0;
    size_t with_request = 0;
  } out;
  static constexpr std::string_view kSwitchTokens[] = {"h2c"};
  // Shared by every input, as the agent's is by every connection: reused messages must carry
  // nothing of the ones before.
  static MessagePool& pool = *new MessagePool();
  Http1Connection conn(role, limits, http1_metrics, kSwitchTokens, &pool);

  // The same data bytes (ingress) fed to one parser as the input splits them and to another a
  // byte at a time.
  ParserLimits every_field = limits.parser;
  every_field.stored_fields = StoredFields::kAll;
  const MessageKind kind = (config & 0x20) ? MessageKind::kResponse : MessageKind::kRequest;
  Transcript as_split, bytewise;
  MessageParser split_parser(kind, every_field, as_split);
  MessageParser byte_parser(kind, every_field, bytewise);

  uint64_t ts = 1000;
  uint64_t pos[2] = {0, 0};  // stream positions by direction (egress, ingress)
  size_t i = 1;
  while (i + 3 <= size) {
    uint8_t op = data[i];
    uint64_t len = data[i + 1] | (static_cast<uint64_t>(data[i + 2]) << 8);
    i += 3;
    ts += 10;
    Direction dir = (op & 4) ? Direction::kEgress : Direction::kIngress;
    switch (op & 3) {
      case 0:
      case 1: {
        dir = (op & 3) == 0 ? Direction::kIngress : Direction::kEgress;
        size_t n = std::min<size_t>(len, size - i);
        uint64_t& at = pos[dir == Direction::kEgress ? 0 : 1];
        conn.OnData(dir, {data + i, n}, ChunkMeta{ts, ts - 1, op, 0, at}, out);
        if (dir == Direction::kIngress) {
          split_parser.Feed({data + i, n}, ChunkMeta{ts, ts - 1, op, 0, at});
          for (size_t b = 0; b < n; ++b) byte_parser.Feed({data + i + b, 1}, ChunkMeta{ts, ts - 1, op, 0, at + b});
        }
        at += n;
        i += n;
        break;
      }
      case 2: {
        const uint64_t gap = (op & 0x80) ? (len << 12) + 1 : len + 1;
        uint64_t& at = pos[dir == Direction::kEgress ? 0 : 1];
        conn.OnGap(dir, gap, static_cast<GapReason>((op >> 3) % 3), ChunkMeta{ts, ts - 1, op, 0, at},
                   out);
        at += gap;
        break;
      }
      case 3:
        conn.OnClose(ts, out);
        i = size;
        break;
    }
    Check(conn.buffered_bytes() <= 2 * limits.parser.max_header_bytes +
                                       2 * limits.parser.max_resync_line +
                                       Http1Connection::kMaxHeldBytes);
    if (std::optional<Switch> sw = conn.TakeSwitch()) {
      // A 101 to h2c: the request that asked goes to HTTP/2 (announced here first), with what
      // was held after it, in order and bounded.
      Check(conn.done());
      if (sw->request) {
        CheckMessage(*sw->request);
        Check(out.announced > out.with_request);
      }
      size_t held = 0;
      uint64_t next_pos = 0;
      for (const HeldChunk& h : sw->held) {
        Check(h.gap == 0 || h.bytes.empty());
        Check(next_pos == 0 || h.meta.pos == next_pos);  // contiguous: chunks and gaps in order
        next_pos = h.meta.pos + h.bytes.size() + h.gap;
        held += h.bytes.size();
      }
      Check(held <= Http1Connection::kMaxHeldBytes);
    }
    Check(conn.pending_requests() <= 2 * limits.max_pending_requests + 1);  // + dropped runs
  }
  conn.OnClose(ts, out);
  Check(conn.pending_requests() == 0);
  if (as_split.failures == 0 || bytewise.failures == 0) Check(as_split.text == bytewise.text);
  return 0;
}
