// One HTTP/2 connection (RFC 9113), both directions: frames, header blocks (HEADERS +
// CONTINUATION, HPACK per direction), streams multiplexed on the connection, each reported as
// its own operation: a RequestView when its request ended (or its response began), a Record
// when its response ended, it was reset (RST_STREAM), refused (GOAWAY) or the connection closed.
//
// Flow control, priorities and pings are read past and never needed. DATA payloads are measured,
// never buffered (gRPC length prefixes are counted as they pass); only frames that carry header
// blocks and small control frames are buffered, up to max_header_block_bytes.
//
// Lost bytes: a gap inside a DATA payload only shortens what is known; a gap inside a header
// block makes that block and the HPACK past unknown (fields decoded later that refer to it come
// out unknown, spans flagged incomplete); a gap over a frame header loses the framing, found
// again at the start of a later chunk that begins with a plausible frame header (writers send
// whole frames per write). A connection joined mid-way starts the same way: from the first
// plausible frame, with an unknown HPACK past.
//
// Bounded: max_streams open streams (more are counted and not reported, their header blocks
// still decoded to keep HPACK in step), header blocks capped, HPACK tables capped.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/protocols/http1/message.h"
#include "agent/protocols/http2/hpack.h"
#include "agent/protocols/http2/limits.h"
#include "agent/protocols/http2/types.h"
#include "agent/protocols/protocol.h"

namespace threadline::http2 {

// Why bytes or a block could not be used (metric label values).
enum class Failure : uint8_t {
  kBadPreface,
  kBadFrame,            // a frame whose fields contradict its type (padding past its end, ...)
  kFramingLost,         // a frame header fell in lost bytes or was implausible: resynchronising
  kHeaderBlockTooLarge,
  kHeaderBlockLost,     // bytes of a header block were not captured
  kContinuationExpected,  // another frame came in the middle of a header block
  kTooManyStreams,
  kHpackTruncated,
  kHpackBadInteger,
  kHpackBadIndex,
  kHpackBadHuffman,
  kHpackStringTooLong,
};
inline constexpr size_t kFailureCount = 12;
std::string_view ToString(Failure f);

// The HTTP/2 counters, looked up once and shared by every connection.
struct Http2Metrics {
  explicit Http2Metrics(MetricsRegistry& metrics);
  std::array<Counter*, kFailureCount> failures{};
  std::array<Counter*, kOutcomeCount> streams{};  // by Outcome
  Counter* unknown_fields = nullptr;  // header fields referring to an unknown HPACK past
  Counter* joined = nullptr;          // connections joined mid-way
  Counter* abandoned = nullptr;       // open streams of connections the agent evicted
};

class Http2Connection final : public ConnectionParser {
 public:
  // `joined_mid_stream`: the connection was opened before the agent saw it (no preface, HPACK
  // past unknown). `metrics` must outlive the connection.
  Http2Connection(Role role, bool joined_mid_stream, const Http2Limits& limits,
                  Http2Metrics& metrics);

  void OnData(Direction dir, std::span<const uint8_t> bytes, const ChunkMeta& meta,
              ParserOutput& out) override;
  void OnGap(Direction dir, uint64_t len, GapReason reason, const ChunkMeta& meta,
             ParserOutput& out) override;
  void OnClose(uint64_t ts_ns, bool evicted, ParserOutput& out) override;
  bool done() const override { return closed_; }
  std::optional<Direction> request_direction() const override { return request_dir_; }

  // h2c by Upgrade (RFC 9113 §3.2): `request`, sent as HTTP/1.1 and answered by 101, is stream
  // 1, half-closed by the client; its response comes on stream 1. It was announced as an HTTP/1
  // request (stream id 0), so its Record keeps that view. Call before any bytes.
  void AdoptUpgradedRequest(const http1::Message& request);

  size_t open_streams() const { return streams_.size(); }
  size_t buffered_bytes() const;

 private:
  // gRPC's length-prefixed messages in one direction of a stream.
  struct GrpcReader {
    uint8_t prefix[5] = {};
    uint8_t prefix_have = 0;
    uint64_t body_left = 0;
    uint64_t first_ts = 0;
  };
  struct Stream {
    StreamRecord rec;
    MessageEdge request;
    MessageEdge response;
    MessageEdge announced_edge;  // the request edge as announced (the record repeats it)
    uint32_t view_stream_id = 0;  // the stream id of its RequestView (0: upgraded from HTTP/1)
    bool announced = false;
    bool request_ended = false;
    // Bytes of the response direction were lost while this stream was open: its end may have
    // been in them (the syscall that wrote them: the best estimate of when).
    uint64_t maybe_ended_ts = 0;
    std::vector<std::pair<std::string, std::string>> carrier;  // traceparent, tracestate
    std::string request_id;
    std::array<GrpcReader, 2> grpc;  // [0] request, [1] response
  };
  // One direction's reading state.
  struct Side {
    enum class Read : uint8_t { kPreface, kHeader, kPayload, kLost };
    Read read = Read::kHeader;
    size_t preface_have = 0;
    uint8_t header[kFrameHeaderBytes] = {};
    size_t header_have = 0;
    FrameHeader frame;
    ChunkMeta frame_first;   // the syscall that carried the frame's first byte (pos: that byte)
    uint32_t remaining = 0;  // payload bytes of the current frame still to come
    bool buffering = false;  // the payload is kept (control and header-block frames)
    bool frame_lost = false; // bytes of the current frame were not seen
    std::vector<uint8_t> payload;
    // DATA: padding.
    bool pad_pending = false;  // the pad length byte is still to come
    uint32_t data_left = 0;    // data bytes before the padding
    // The header block being assembled (HEADERS or PUSH_PROMISE, then CONTINUATIONs).
    bool block_open = false;
    bool block_lost = false;
    bool block_push = false;
    uint8_t block_flags = 0;
    uint32_t block_stream = 0;
    ChunkMeta block_first;
    std::vector<uint8_t> block;
    HpackDecoder decoder;
  };
  class FieldCollector;
  class Carrier;

  static size_t Index(Direction d) { return d == Direction::kEgress ? 0 : 1; }
  Side& SideOf(Direction d) { return sides_[Index(d)]; }
  bool IsRequestDir(Direction d) const { return request_dir_ && *request_dir_ == d; }

  // Feeding.
  void Feed(Direction dir, std::span<const uint8_t> bytes, const ChunkMeta& meta, ParserOutput& out);
  bool TryResync(Side& side, std::span<const uint8_t> bytes);
  void StartFrame(Direction dir, Side& side);
  void OnPayloadBytes(Direction dir, Side& side, std::span<const uint8_t> bytes, const ChunkMeta& meta);
  void OnDataBytes(Direction dir, Side& side, std::span<const uint8_t> bytes, const ChunkMeta& meta);
  void EndFrame(Direction dir, Side& side, const ChunkMeta& last, ParserOutput& out);

  // Frames.
  // HEADERS or PUSH_PROMISE: a header block starts (and ends, with END_HEADERS).
  void OpenBlock(Direction dir, Side& side, bool push, const ChunkMeta& last, ParserOutput& out);
  void OnContinuationFrame(Direction dir, Side& side, const ChunkMeta& last, ParserOutput& out);
  void OnRstStream(Direction dir, const Side& side, ParserOutput& out);
  void OnGoAway(Direction dir, const Side& side, ParserOutput& out);
  void AppendToBlock(Side& side, std::span<const uint8_t> fragment);
  void FinishBlock(Direction dir, Side& side, const ChunkMeta& last, ParserOutput& out);
  void EndStreamHalf(Direction dir, uint32_t stream_id, const ChunkMeta& last, ParserOutput& out);

  // Streams.
  Stream* FindStream(uint32_t id);
  void Announce(Stream& s, ParserOutput& out);
  void Finish(uint32_t id, Outcome outcome, uint64_t closed_ts, ParserOutput& out);
  void Fail(Failure f) { metrics_.failures[static_cast<size_t>(f)]->Add(); }

  Http2Limits limits_;
  Http2Metrics& metrics_;
  std::optional<Direction> request_dir_;
  bool joined_ = false;
  bool closed_ = false;
  std::array<Side, 2> sides_;
  std::unordered_map<uint32_t, Stream> streams_;
};

}  // namespace threadline::http2
