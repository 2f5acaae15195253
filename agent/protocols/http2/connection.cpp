#include "agent/protocols/http2/connection.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "agent/protocols/http1/message.h"

namespace threadline::http2 {

namespace {

constexpr size_t kMaxKeptValue = 8 * 1024;      // a stored field value (path, authority, ...)
constexpr size_t kMaxCarrierFields = 8;          // traceparent + tracestate lines kept
constexpr size_t kMaxControlPayload = 1024;      // SETTINGS, RST_STREAM, GOAWAY (debug data cut)

constexpr std::array<Outcome, kOutcomeCount> kAllOutcomes = {
    Outcome::kComplete, Outcome::kClosedBeforeResponse, Outcome::kResponseWithoutRequest,
    Outcome::kResponseLost, Outcome::kUpgraded, Outcome::kTunnel, Outcome::kReset,
    Outcome::kRefused};

uint32_t Be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | p[3];
}

void Keep(std::string& dst, std::string_view v) { dst.assign(v.substr(0, kMaxKeptValue)); }

std::string AsciiLower(std::string_view v) {
  std::string out(v);
  for (char& c : out) if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

ChunkMeta At(const ChunkMeta& meta, std::span<const uint8_t> chunk, const uint8_t* p) {
  ChunkMeta m = meta;
  m.pos = meta.pos + static_cast<uint64_t>(p - chunk.data());
  return m;
}

}  // namespace

std::string_view ToString(Failure f) {
  switch (f) {
    case Failure::kBadPreface: return "bad_preface";
    case Failure::kBadFrame: return "bad_frame";
    case Failure::kFramingLost: return "framing_lost";
    case Failure::kHeaderBlockTooLarge: return "header_block_too_large";
    case Failure::kHeaderBlockLost: return "header_block_lost";
    case Failure::kContinuationExpected: return "continuation_expected";
    case Failure::kTooManyStreams: return "too_many_streams";
    case Failure::kHpackTruncated: return "hpack_truncated";
    case Failure::kHpackBadInteger: return "hpack_bad_integer";
    case Failure::kHpackBadIndex: return "hpack_bad_index";
    case Failure::kHpackBadHuffman: return "hpack_bad_huffman";
    case Failure::kHpackStringTooLong: return "hpack_string_too_long";
  }
  return "unknown";
}

Http2Metrics::Http2Metrics(MetricsRegistry& metrics) {
  for (size_t i = 0; i < kFailureCount; ++i) {
    failures[i] = &metrics.GetCounter(
        "threadline_parse_failures_total",
        {{"protocol", "http2"}, {"reason", std::string(ToString(static_cast<Failure>(i)))}},
        "Bytes or messages a protocol parser could not parse, by reason");
  }
  for (Outcome o : kAllOutcomes) {
    streams[static_cast<size_t>(o)] = &metrics.GetCounter(
        "threadline_http2_streams_total", {{"outcome", std::string(ToString(o))}},
        "HTTP/2 streams reported, by outcome");
  }
  unknown_fields = &metrics.GetCounter(
      "threadline_http2_unknown_header_fields_total", {},
      "HTTP/2 header fields that referred to HPACK table entries never seen (joined mid-way, lost bytes)");
  joined = &metrics.GetCounter("threadline_http2_connections_joined_total", {},
                               "HTTP/2 connections joined mid-way (no preface seen)");
  abandoned = &metrics.GetCounter("threadline_http2_streams_abandoned_total", {},
                                  "Open HTTP/2 streams of connections the agent evicted");
}

// Collects the fields of one header block into a stream (or nowhere, to keep HPACK in step).
class Http2Connection::FieldCollector final : public HpackDecoder::FieldSink {
 public:
  enum class Kind : uint8_t { kDiscard, kRequest, kResponse, kTrailers };
  FieldCollector(Kind kind, Stream* stream, Http2Metrics& metrics)
      : kind_(kind), s_(stream), metrics_(metrics) {}

  void OnField(std::string_view name, std::string_view value, bool known) override {
    if (!known) {
      metrics_.unknown_fields->Add();
      unknown_ = true;
      if (name.empty()) return;  // value alone tells nothing
    }
    if (kind_ == Kind::kDiscard) return;
    StreamRecord& r = s_->rec;
    if (!name.empty() && name[0] == ':') {
      saw_pseudo_ = true;
      if (name == ":method") {
        Keep(r.method, value);
        method_ = true;
      } else if (name == ":path") {
        Keep(r.path, value);
      } else if (name == ":authority") {
        Keep(r.authority, value);
      } else if (name == ":scheme") {
        Keep(r.scheme, value);
      } else if (name == ":status") {
        unsigned code = 0;
        auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), code);
        if (ec == std::errc() && p == value.data() + value.size() && code < 1000) {
          status_ = static_cast<uint16_t>(code);
        }
      }
      return;
    }
    if (kind_ == Kind::kRequest) {
      if (name == "content-type") Keep(r.content_type, value);
      else if (name == "user-agent") Keep(r.user_agent, value);
      else if (name == "x-forwarded-for") Keep(r.forwarded_for, value);
      else if (name == "x-request-id") Keep(s_->request_id, value);
      else if ((name == "traceparent" || name == "tracestate") && s_->carrier.size() < kMaxCarrierFields)
        s_->carrier.emplace_back(std::string(name), std::string(value.substr(0, kMaxKeptValue)));
      return;
    }
    // Responses and trailers: gRPC's status (Trailers-Only responses carry it in headers).
    if (name == "grpc-status") {
      int code = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), code);
      if (ec == std::errc() && p == value.data() + value.size()) r.grpc_status = code;
    } else if (name == "grpc-message") {
      Keep(r.grpc_message, value.substr(0, 256));
    }
  }

  bool unknown() const { return unknown_; }
  bool saw_method() const { return method_; }
  std::optional<uint16_t> status() const { return status_; }

 private:
  Kind kind_;
  Stream* s_;
  Http2Metrics& metrics_;
  bool unknown_ = false;
  bool saw_pseudo_ = false;
  bool method_ = false;
  std::optional<uint16_t> status_;
};

// A stream's traceparent/tracestate fields as a trace carrier.
class Http2Connection::Carrier final : public CarrierReader {
 public:
  explicit Carrier(const std::vector<std::pair<std::string, std::string>>& fields) : fields_(fields) {}
  size_t Values(std::string_view key, std::span<std::string_view> out) const override {
    size_t n = 0;
    for (const auto& [name, value] : fields_) {
      if (!http1::EqualsIgnoreCase(name, key)) continue;
      if (n < out.size()) out[n] = value;
      ++n;
    }
    return n;
  }

 private:
  const std::vector<std::pair<std::string, std::string>>& fields_;
};

Http2Connection::Http2Connection(Role role, bool joined_mid_stream, const Http2Limits& limits,
                                 Http2Metrics& metrics)
    : limits_(limits), metrics_(metrics), joined_(joined_mid_stream) {
  if (role == Role::kServer) request_dir_ = Direction::kIngress;
  if (role == Role::kClient) request_dir_ = Direction::kEgress;
  for (Side& s : sides_) s.decoder = HpackDecoder(limits.max_table_bytes);
  if (joined_) {
    metrics_.joined->Add();
    for (Side& s : sides_) {
      s.decoder.StartWithUnknownPast();
      s.read = Side::Read::kLost;  // the first plausible frame header at a chunk start
    }
  } else if (request_dir_) {
    SideOf(*request_dir_).read = Side::Read::kPreface;
  } else {
    // Role unknown: whichever side starts with the preface is the client.
    for (Side& s : sides_) s.read = Side::Read::kPreface;
  }
}

void Http2Connection::AdoptUpgradedRequest(const http1::Message& request) {
  Stream& s = streams_[1];
  s.rec.stream_id = 1;
  s.view_stream_id = 0;
  StreamRecord& r = s.rec;
  Keep(r.method, request.method);
  // Origin-form (the usual), or absolute-form "http://host/path" (a proxy's request).
  std::string_view target = request.target;
  std::string_view authority = request.headers.Get("host").value_or("");
  if (const size_t scheme_end = target.find("://"); scheme_end != std::string_view::npos &&
                                                    target.find('/') > scheme_end) {
    const std::string_view rest = target.substr(scheme_end + 3);
    const size_t slash = rest.find('/');
    authority = rest.substr(0, slash);
    target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  }
  Keep(r.path, target);
  Keep(r.authority, authority);
  r.scheme = "http";  // h2c: HTTP/2 over cleartext TCP
  for (const http1::Header& h : request.headers.fields()) {
    using http1::EqualsIgnoreCase;
    if (EqualsIgnoreCase(h.name, "content-type")) Keep(r.content_type, h.value);
    else if (EqualsIgnoreCase(h.name, "user-agent")) Keep(r.user_agent, h.value);
    else if (EqualsIgnoreCase(h.name, "x-forwarded-for")) Keep(r.forwarded_for, h.value);
    else if (EqualsIgnoreCase(h.name, "x-request-id")) Keep(s.request_id, h.value);
    else if ((EqualsIgnoreCase(h.name, "traceparent") || EqualsIgnoreCase(h.name, "tracestate")) &&
             s.carrier.size() < kMaxCarrierFields)
      s.carrier.emplace_back(AsciiLower(h.name), std::string(h.value.substr(0, kMaxKeptValue)));
  }
  r.request.headers_seen = true;
  r.request.body_bytes = request.body_bytes;
  r.request.body_bytes_lost = request.missing_bytes();
  s.request = MessageEdge{true, request.first_chunk, request.last_chunk};
  s.announced = true;  // by HTTP/1, with this very edge
  s.announced_edge = s.request;
  s.request_ended = true;
}

size_t Http2Connection::buffered_bytes() const {
  size_t n = 0;
  for (const Side& s : sides_) n += s.payload.size() + s.block.size();
  return n;
}

void Http2Connection::OnData(Direction dir, std::span<const uint8_t> bytes, const ChunkMeta& meta,
                             ParserOutput& out) {
  if (closed_) return;
  Side& side = SideOf(dir);
  if (side.read == Side::Read::kLost && !TryResync(side, bytes)) return;
  Feed(dir, bytes, meta, out);
}

bool Http2Connection::TryResync(Side& side, std::span<const uint8_t> bytes) {
  if (bytes.size() < kFrameHeaderBytes) return false;
  if (!PlausibleFrameHeader(ParseFrameHeader(bytes.data()), kLargestMaxFrameSize)) return false;
  side.read = Side::Read::kHeader;
  side.header_have = 0;
  // Whatever block was being assembled is gone with the lost bytes.
  if (side.block_open) {
    side.block_open = false;
    side.block.clear();
    side.decoder.LoseBlock();
  }
  return true;
}

void Http2Connection::Feed(Direction dir, std::span<const uint8_t> bytes, const ChunkMeta& meta,
                           ParserOutput& out) {
  Side& side = SideOf(dir);
  const uint8_t* p = bytes.data();
  const uint8_t* end = p + bytes.size();
  while (p < end && !closed_) {
    switch (side.read) {
      case Side::Read::kLost:
        return;
      case Side::Read::kPreface: {
        const size_t n = std::min<size_t>(end - p, kPreface.size() - side.preface_have);
        if (std::memcmp(p, kPreface.data() + side.preface_have, n) != 0) {
          if (!request_dir_ && side.preface_have == 0) {
            // Role unknown and this side does not start with the preface: the server's side.
            side.read = Side::Read::kHeader;
            continue;
          }
          Fail(Failure::kBadPreface);
          side.read = Side::Read::kLost;
          return;
        }
        side.preface_have += n;
        p += n;
        if (side.preface_have == kPreface.size()) {
          if (!request_dir_) {
            request_dir_ = dir;
            // The other side (the server) starts with frames.
            Side& other = sides_[1 - Index(dir)];
            if (other.read == Side::Read::kPreface && other.preface_have == 0)
              other.read = Side::Read::kHeader;
          }
          side.read = Side::Read::kHeader;
        }
        break;
      }
      case Side::Read::kHeader: {
        if (side.header_have == 0) side.frame_first = At(meta, bytes, p);
        const size_t n = std::min<size_t>(end - p, kFrameHeaderBytes - side.header_have);
        std::memcpy(side.header + side.header_have, p, n);
        side.header_have += n;
        p += n;
        if (side.header_have < kFrameHeaderBytes) break;
        side.header_have = 0;
        side.frame = ParseFrameHeader(side.header);
        StartFrame(dir, side);
        if (side.remaining == 0) EndFrame(dir, side, At(meta, bytes, p - 1), out);
        break;
      }
      case Side::Read::kPayload: {
        const size_t n = std::min<size_t>(end - p, side.remaining);
        OnPayloadBytes(dir, side, {p, n}, At(meta, bytes, p));
        side.remaining -= static_cast<uint32_t>(n);
        p += n;
        if (side.remaining == 0) EndFrame(dir, side, At(meta, bytes, p - 1), out);
        break;
      }
    }
  }
}

void Http2Connection::StartFrame(Direction dir, Side& side) {
  const FrameHeader& h = side.frame;
  side.remaining = h.length;
  side.frame_lost = false;
  side.payload.clear();
  side.read = Side::Read::kPayload;
  const auto type = static_cast<FrameType>(h.type);
  if (side.block_open && type != FrameType::kContinuation) {
    // RFC 9113 §6.10: nothing may come between a header block's frames. The block is lost.
    Fail(Failure::kContinuationExpected);
    side.block_open = false;
    side.block.clear();
    side.decoder.LoseBlock();
    if (Stream* s = FindStream(side.block_stream)) (IsRequestDir(dir) ? s->rec.request : s->rec.response).incomplete = true;
  }
  if (type == FrameType::kData) {
    side.buffering = false;
    side.pad_pending = (h.flags & kFlagPadded) != 0;
    side.data_left = side.pad_pending ? 0 : h.length;
    return;
  }
  const bool block = type == FrameType::kHeaders || type == FrameType::kContinuation ||
                     type == FrameType::kPushPromise;
  const size_t cap = block ? limits_.max_header_block_bytes : kMaxControlPayload;
  side.buffering = block || type == FrameType::kRstStream || type == FrameType::kGoAway ||
                   type == FrameType::kSettings;
  if (side.buffering && h.length > cap) {
    if (block) {
      Fail(Failure::kHeaderBlockTooLarge);
      side.frame_lost = true;  // decoded as lost at its end
    }
    side.buffering = block ? false : side.buffering;
  }
}

void Http2Connection::OnPayloadBytes(Direction dir, Side& side, std::span<const uint8_t> bytes,
                                     const ChunkMeta& meta) {
  if (side.frame.type == static_cast<uint8_t>(FrameType::kData)) {
    OnDataBytes(dir, side, bytes, meta);
    return;
  }
  if (!side.buffering) return;
  const size_t cap = side.frame.type == static_cast<uint8_t>(FrameType::kGoAway) ? kMaxControlPayload
                                                                                  : side.frame.length;
  const size_t room = cap > side.payload.size() ? cap - side.payload.size() : 0;
  side.payload.insert(side.payload.end(), bytes.begin(), bytes.begin() + std::min(room, bytes.size()));
}

void Http2Connection::OnDataBytes(Direction dir, Side& side, std::span<const uint8_t> bytes,
                                  const ChunkMeta& meta) {
  if (side.pad_pending && !bytes.empty()) {
    const uint32_t pad = bytes[0];
    side.pad_pending = false;
    side.data_left = side.frame.length >= 1 + pad ? side.frame.length - 1 - pad : 0;
    bytes = bytes.subspan(1);
  }
  const size_t n = std::min<size_t>(bytes.size(), side.data_left);
  side.data_left -= static_cast<uint32_t>(n);
  bytes = bytes.first(n);
  Stream* s = FindStream(side.frame.stream_id);
  if (!s || !request_dir_) return;
  const bool req = IsRequestDir(dir);
  StreamHalf& half = req ? s->rec.request : s->rec.response;
  half.body_bytes += bytes.size();
  // gRPC: 1 byte compressed flag, 4 bytes length, then the message.
  GrpcReader& g = s->grpc[req ? 0 : 1];
  while (!bytes.empty() && !half.messages_lost) {
    if (g.body_left > 0) {
      const size_t take = std::min<uint64_t>(g.body_left, bytes.size());
      g.body_left -= take;
      bytes = bytes.subspan(take);
      continue;
    }
    if (g.prefix_have == 0) g.first_ts = meta.ts_ns;
    const size_t take = std::min<size_t>(5 - g.prefix_have, bytes.size());
    std::memcpy(g.prefix + g.prefix_have, bytes.data(), take);
    g.prefix_have = static_cast<uint8_t>(g.prefix_have + take);
    bytes = bytes.subspan(take);
    if (g.prefix_have < 5) break;
    g.prefix_have = 0;
    g.body_left = Be32(g.prefix + 1);
    ++half.messages;
    if (half.first_messages.size() < StreamHalf::kMaxMessageEvents)
      half.first_messages.push_back(GrpcMessage{g.first_ts, static_cast<uint32_t>(g.body_left),
                                                g.prefix[0] != 0});
  }
}

void Http2Connection::EndFrame(Direction dir, Side& side, const ChunkMeta& last, ParserOutput& out) {
  side.read = Side::Read::kHeader;
  const FrameHeader h = side.frame;
  switch (static_cast<FrameType>(h.type)) {
    case FrameType::kData:
      if (Stream* s = FindStream(h.stream_id)) {
        MessageEdge& e = IsRequestDir(dir) ? s->request : s->response;
        if (e.seen) e.last = last;
        if (side.frame_lost) (IsRequestDir(dir) ? s->rec.request : s->rec.response).body_bytes_lost = true;
      }
      if (h.flags & kFlagEndStream) EndStreamHalf(dir, h.stream_id, last, out);
      break;
    case FrameType::kHeaders:
      OpenBlock(dir, side, /*push=*/false, last, out);
      break;
    case FrameType::kContinuation:
      OnContinuationFrame(dir, side, last, out);
      break;
    case FrameType::kPushPromise:
      // Pushed streams are not reported; their request block is decoded to keep HPACK in step.
      OpenBlock(dir, side, /*push=*/true, last, out);
      break;
    case FrameType::kRstStream:
      OnRstStream(dir, side, out);
      break;
    case FrameType::kGoAway:
      OnGoAway(dir, side, out);
      break;
    default:
      break;  // SETTINGS, PING, PRIORITY, WINDOW_UPDATE, extensions: nothing a span needs
  }
  side.payload.clear();
}

void Http2Connection::OpenBlock(Direction dir, Side& side, bool push, const ChunkMeta& last,
                                ParserOutput& out) {
  const FrameHeader& h = side.frame;
  side.block_open = true;
  side.block_push = push;
  side.block_stream = h.stream_id;
  side.block_flags = h.flags;
  side.block_first = side.frame_first;
  side.block.clear();
  side.block_lost = side.frame_lost;
  if (!side.block_lost) {
    // Before the fragment: the pad length (PADDED), then the stream dependency (HEADERS with
    // PRIORITY) or the promised stream id (PUSH_PROMISE).
    std::span<const uint8_t> p = side.payload;
    const size_t pad = (h.flags & kFlagPadded) && !p.empty() ? p[0] : 0;
    const size_t skip = ((h.flags & kFlagPadded) ? 1 : 0) +
                        (push ? 4 : ((h.flags & kFlagPriority) ? 5 : 0));
    if (p.size() < skip + pad) {
      Fail(Failure::kBadFrame);
      side.block_lost = true;
    } else {
      AppendToBlock(side, p.subspan(skip, p.size() - skip - pad));
    }
  }
  if (h.flags & kFlagEndHeaders) FinishBlock(dir, side, last, out);
}

void Http2Connection::OnContinuationFrame(Direction dir, Side& side, const ChunkMeta& last,
                                          ParserOutput& out) {
  const FrameHeader& h = side.frame;
  if (!side.block_open || h.stream_id != side.block_stream) {
    Fail(Failure::kContinuationExpected);
    return;
  }
  if (side.frame_lost) side.block_lost = true;
  else AppendToBlock(side, side.payload);
  if (h.flags & kFlagEndHeaders) FinishBlock(dir, side, last, out);
}

void Http2Connection::AppendToBlock(Side& side, std::span<const uint8_t> fragment) {
  if (side.block_lost) return;
  if (side.block.size() + fragment.size() > limits_.max_header_block_bytes) {
    // Endless CONTINUATION, or simply too large to keep: lost, and the HPACK past with it.
    Fail(Failure::kHeaderBlockTooLarge);
    side.block_lost = true;
    side.block.clear();
    side.block.shrink_to_fit();
    return;
  }
  side.block.insert(side.block.end(), fragment.begin(), fragment.end());
}

void Http2Connection::FinishBlock(Direction dir, Side& side, const ChunkMeta& last,
                                  ParserOutput& out) {
  side.block_open = false;
  const uint32_t id = side.block_stream;
  Stream* s = side.block_push ? nullptr : FindStream(id);

  // Which part of which stream this block is.
  using Kind = FieldCollector::Kind;
  Kind kind = Kind::kDiscard;
  if (!side.block_push) {
    if (!request_dir_) {
      kind = Kind::kRequest;  // decided below from the fields (mid-way join, role unknown)
    } else if (IsRequestDir(dir)) {
      if (!s && (id & 1) == 1) {
        if (streams_.size() < limits_.max_streams) {
          s = &streams_[id];
          s->rec.stream_id = id;
          s->view_stream_id = id;
          s->rec.joined_mid_connection = side.decoder.unknown_past();
        } else {
          Fail(Failure::kTooManyStreams);
        }
      }
      kind = s && !s->request.seen ? Kind::kRequest : Kind::kDiscard;  // request trailers: ignored
    } else if (s) {
      kind = s->rec.response.headers_seen ? Kind::kTrailers : Kind::kResponse;
    }
  }

  Stream probe;  // fields of a block whose direction is still unknown
  Stream* target = kind == Kind::kDiscard ? nullptr : (s ? s : &probe);
  FieldCollector fields(kind, target, metrics_);
  bool decoded = false;
  if (side.block_lost) {
    Fail(Failure::kHeaderBlockLost);
    side.decoder.LoseBlock();
  } else {
    const HpackError e = side.decoder.Decode(side.block, fields);
    decoded = e == HpackError::kNone;
    if (!decoded) Fail(static_cast<Failure>(static_cast<size_t>(Failure::kHpackTruncated) +
                                            static_cast<size_t>(e) - 1));
  }
  side.block.clear();
  if (side.block.capacity() > 16 * 1024) side.block.shrink_to_fit();
  const bool incomplete = !decoded || fields.unknown();

  if (!request_dir_ && !side.block_push && decoded) {
    // Joined mid-way with the role unknown: a block with :method travels the request way.
    if (fields.saw_method()) request_dir_ = dir;
    else if (fields.status()) request_dir_ = dir == Direction::kEgress ? Direction::kIngress : Direction::kEgress;
    if (request_dir_ && IsRequestDir(dir) && (id & 1) == 1 && streams_.size() < limits_.max_streams) {
      s = &streams_[id];
      s->rec = std::move(probe.rec);
      s->rec.stream_id = id;
      s->view_stream_id = id;
      s->rec.joined_mid_connection = true;
      s->carrier = std::move(probe.carrier);
      s->request_id = std::move(probe.request_id);
      kind = Kind::kRequest;
    } else {
      kind = Kind::kDiscard;
    }
  }
  if (!s || kind == Kind::kDiscard) {
    if (s && (side.block_flags & kFlagEndStream)) EndStreamHalf(dir, id, last, out);
    return;
  }

  if (kind == Kind::kRequest) {
    s->request = MessageEdge{true, side.block_first, last};
    s->rec.request.headers_seen = true;
    s->rec.request.incomplete = s->rec.request.incomplete || incomplete;
  } else if (kind == Kind::kResponse) {
    // 1xx (100 Continue, 103 Early Hints): interim, the final response is still to come.
    if (fields.status() && *fields.status() < 200 && !(side.block_flags & kFlagEndStream)) return;
    if (fields.status()) s->rec.status = *fields.status();
    s->response = MessageEdge{true, side.block_first, last};
    s->rec.response.headers_seen = true;
    s->rec.response.incomplete = s->rec.response.incomplete || incomplete;
    Announce(*s, out);  // the response began: the request is as whole as it will be for now
  } else {  // trailers
    s->response.last = last;
    s->rec.response.incomplete = s->rec.response.incomplete || incomplete;
  }
  if (side.block_flags & kFlagEndStream) EndStreamHalf(dir, id, last, out);
}

void Http2Connection::EndStreamHalf(Direction dir, uint32_t stream_id, const ChunkMeta& last,
                                    ParserOutput& out) {
  Stream* s = FindStream(stream_id);
  if (!s || !request_dir_) return;
  if (IsRequestDir(dir)) {
    s->request_ended = true;
    if (s->request.seen) s->request.last = last;
    Announce(*s, out);
    return;
  }
  if (s->response.seen) s->response.last = last;
  Finish(stream_id, Outcome::kComplete, 0, out);
}

void Http2Connection::OnRstStream(Direction dir, const Side& side, ParserOutput& out) {
  Stream* s = FindStream(side.frame.stream_id);
  if (!s || side.payload.size() < 4) return;
  s->rec.reset_code = Be32(side.payload.data());
  s->rec.reset_by_client = IsRequestDir(dir);
  Finish(side.frame.stream_id, Outcome::kReset, 0, out);
}

void Http2Connection::OnGoAway(Direction dir, const Side& side, ParserOutput& out) {
  if (side.payload.size() < 8 || !request_dir_ || IsRequestDir(dir)) return;
  // The server will not process client streams above last_stream_id: they were refused.
  const uint32_t last_id = Be32(side.payload.data()) & 0x7fffffff;
  const uint32_t code = Be32(side.payload.data() + 4);
  std::vector<uint32_t> refused;
  for (const auto& [id, s] : streams_)
    if (id > last_id && !s.rec.response.headers_seen) refused.push_back(id);
  std::sort(refused.begin(), refused.end());
  for (uint32_t id : refused) {
    streams_[id].rec.reset_code = code;
    Finish(id, Outcome::kRefused, 0, out);
  }
}

Http2Connection::Stream* Http2Connection::FindStream(uint32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : &it->second;
}

void Http2Connection::Announce(Stream& s, ParserOutput& out) {
  if (s.announced || !s.request.seen) return;
  s.announced = true;
  s.announced_edge = s.request;
  const Carrier carrier(s.carrier);
  RequestView v;
  v.protocol = ProtocolId::kHttp2;
  v.stream_id = s.view_stream_id;
  v.edge = s.announced_edge;
  v.carrier = &carrier;
  v.evidence.target = s.rec.path;
  v.evidence.request_id = s.request_id;
  v.evidence.forwarded_for = s.rec.forwarded_for;
  out.OnRequest(v);
}

void Http2Connection::Finish(uint32_t id, Outcome outcome, uint64_t closed_ts, ParserOutput& out) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  Stream& s = it->second;
  Announce(s, out);
  metrics_.streams[static_cast<size_t>(s.request.seen ? outcome : Outcome::kResponseWithoutRequest)]->Add();
  Record r;
  r.outcome = outcome;
  r.closed_ts_ns = closed_ts;
  r.response = s.response;
  const Carrier carrier(s.carrier);
  if (s.announced) {
    r.request.protocol = s.view_stream_id == s.rec.stream_id ? ProtocolId::kHttp2 : ProtocolId::kHttp1;
    r.request.stream_id = s.view_stream_id;
    r.request.edge = s.announced_edge;
    r.request.carrier = &carrier;
  }
  const StreamRecord& placed = r.detail.emplace<StreamRecord>(std::move(s.rec));
  if (s.announced) {
    r.request.evidence.target = placed.path;
    r.request.evidence.request_id = s.request_id;
    r.request.evidence.forwarded_for = placed.forwarded_for;
  }
  out.OnRecord(std::move(r));
  streams_.erase(it);
}

void Http2Connection::OnGap(Direction dir, uint64_t len, GapReason /*reason*/,
                            const ChunkMeta& meta, ParserOutput& out) {
  if (closed_) return;
  Side& side = SideOf(dir);
  if (request_dir_ && !IsRequestDir(dir)) {
    // Responses written past the capture (many streams answered in one large write) end here
    // unseen: if nothing of them shows up later, they are reported as lost, at this time.
    for (auto& [id, s] : streams_)
      if (s.maybe_ended_ts == 0) s.maybe_ended_ts = meta.ts_ns;
  }
  while (len > 0) {
    switch (side.read) {
      case Side::Read::kLost:
        return;
      case Side::Read::kPreface:
      case Side::Read::kHeader:
        Fail(Failure::kFramingLost);
        side.read = Side::Read::kLost;
        side.header_have = 0;
        return;
      case Side::Read::kPayload: {
        const uint64_t n = std::min<uint64_t>(len, side.remaining);
        side.remaining -= static_cast<uint32_t>(n);
        len -= n;
        side.frame_lost = true;
        if (side.frame.type == static_cast<uint8_t>(FrameType::kData)) {
          // The data (and gRPC message bodies) continue past the gap; a prefix in it is lost.
          if (Stream* s = FindStream(side.frame.stream_id); s && request_dir_) {
            const bool req = IsRequestDir(dir);
            StreamHalf& half = req ? s->rec.request : s->rec.response;
            const uint64_t data = std::min<uint64_t>(n, side.data_left);
            half.body_bytes += data;
            GrpcReader& g = s->grpc[req ? 0 : 1];
            if (g.prefix_have == 0 && g.body_left >= data) g.body_left -= data;
            else if (data > 0) half.messages_lost = true;
          }
          side.data_left -= static_cast<uint32_t>(std::min<uint64_t>(n, side.data_left));
          side.pad_pending = false;
        }
        if (side.remaining == 0) EndFrame(dir, side, meta, out);
        break;
      }
    }
  }
}

void Http2Connection::OnClose(uint64_t ts_ns, bool evicted, ParserOutput& out) {
  if (closed_) return;
  if (evicted) {
    metrics_.abandoned->Add(streams_.size());
    streams_.clear();
    closed_ = true;
    return;
  }
  std::vector<uint32_t> open;
  for (const auto& [id, s] : streams_) open.push_back(id);
  std::sort(open.begin(), open.end());
  for (uint32_t id : open) {
    const uint64_t lost_ts = streams_[id].maybe_ended_ts;
    if (lost_ts) Finish(id, Outcome::kResponseLost, lost_ts, out);
    else Finish(id, Outcome::kClosedBeforeResponse, ts_ns, out);
  }
  closed_ = true;
}

}  // namespace threadline::http2
