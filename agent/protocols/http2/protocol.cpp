#include "agent/protocols/http2/protocol.h"

#include <algorithm>
#include <cstring>

#include "agent/protocols/http2/connection.h"

namespace threadline::http2 {

namespace {

// Largest frame accepted as evidence when guessing: peers raise SETTINGS_MAX_FRAME_SIZE, rarely
// past this.
constexpr uint32_t kPlausibleFrameSize = 1u << 20;

bool StartsWithPreface(std::span<const uint8_t> bytes) {
  // At least "PRI " (a preface split over writes still starts with it); HTTP/1 never does.
  const size_t n = std::min(bytes.size(), kPreface.size());
  return n >= 4 && std::memcmp(bytes.data(), kPreface.data(), n) == 0;
}

class Http2Protocol final : public Protocol {
 public:
  Http2Protocol(const Http2Limits& limits, MetricsRegistry& metrics)
      : limits_(limits), metrics_(metrics) {}

  ProtocolId id() const override { return ProtocolId::kHttp2; }

  bool Detect(std::span<const uint8_t> bytes, Direction /*dir*/,
              const ConnectionInfo& conn) const override {
    if (StartsWithPreface(bytes)) return true;
    if (!LooksLikeFrames(bytes)) return false;
    // The server's preface is a SETTINGS frame; a connection joined mid-way shows any frames.
    const FrameHeader first = ParseFrameHeader(bytes.data());
    return first.type == static_cast<uint8_t>(FrameType::kSettings) ||
           conn.source == ConnSource::kFirstIo;
  }

  std::unique_ptr<ConnectionParser> NewConnection(const ConnectionInfo& conn,
                                                  std::span<const uint8_t> first_bytes,
                                                  Direction /*dir*/) override {
    const bool joined = conn.source == ConnSource::kFirstIo && !StartsWithPreface(first_bytes);
    return std::make_unique<Http2Connection>(conn.role, joined, limits_, metrics_);
  }

  // h2c by Upgrade: HTTP/1 saw the 101; the client's preface and the server's SETTINGS follow.
  std::unique_ptr<ConnectionParser> TakeOver(const ConnectionInfo& conn, Handover& h) override {
    const Role role = conn.role != Role::kUnknown ? conn.role
                      : h.request_dir == Direction::kIngress ? Role::kServer
                                                             : Role::kClient;
    auto parser = std::make_unique<Http2Connection>(role, /*joined_mid_stream=*/false, limits_,
                                                    metrics_);
    if (h.request) parser->AdoptUpgradedRequest(*h.request);
    return parser;
  }

 private:
  Http2Limits limits_;
  Http2Metrics metrics_;
};

}  // namespace

bool LooksLikeFrames(std::span<const uint8_t> bytes) {
  size_t at = 0;
  size_t whole = 0;
  while (at + kFrameHeaderBytes <= bytes.size()) {
    const FrameHeader h = ParseFrameHeader(bytes.data() + at);
    if ((bytes[at + 5] & 0x80) != 0 || !PlausibleFrameHeader(h, kPlausibleFrameSize)) return false;
    const size_t end = at + kFrameHeaderBytes + h.length;
    if (end > bytes.size()) {
      // Cut short by the capture, after whole frames: a payload that is naturally large.
      return whole > 0 && (h.type == static_cast<uint8_t>(FrameType::kData) ||
                           h.type == static_cast<uint8_t>(FrameType::kHeaders));
    }
    ++whole;
    at = end;
  }
  return whole > 0 && at == bytes.size();
}

std::unique_ptr<Protocol> CreateProtocol(const ProtocolOptions& options, MetricsRegistry& metrics) {
  return std::make_unique<Http2Protocol>(options.http2, metrics);
}

}  // namespace threadline::http2
