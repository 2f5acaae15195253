// PostgreSQL wire protocol v3 framing and message decoding, for both directions: the frontend's
// messages (client to server; untyped while the connection starts: StartupMessage, SSLRequest,
// GSSENCRequest, CancelRequest) and the backend's (server to client; the one-byte answer to
// SSLRequest). https://www.postgresql.org/docs/current/protocol-message-formats.html
//
// Rules for db::FrameReader (framing, what to keep, where to resynchronise) and decoders over a
// frame's kept body. Pure: no state beyond the phase flags the connection sets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "agent/protocols/db/frame_reader.h"

namespace threadline::postgres {

inline constexpr uint32_t kProtocolV3 = 196608;  // 3.0
inline constexpr uint32_t kCancelRequestCode = 80877102;
inline constexpr uint32_t kSslRequestCode = 80877103;
inline constexpr uint32_t kGssEncRequestCode = 80877104;
// Frame::type of the untyped startup-phase messages (no real message type is 0).
inline constexpr uint8_t kStartupPacket = 0;

struct Limits {
  size_t max_statement_bytes = 4096;  // of a Query or Parse kept (the rest only counted)
  size_t max_statements = 128;        // named prepared statements remembered per connection
  size_t max_portals = 32;            // named portals remembered per connection
  size_t max_pending = 16384;         // messages waiting for their answer per connection
  size_t max_operations = 1024;       // operations waiting for their answer per connection
};

// What a stream's first bytes are, for detection and for a connection whose role is unknown.
enum class FirstBytes : uint8_t {
  kUnknown,
  kStartup,   // an untyped startup-phase packet: the frontend, at the connection's start
  kFrontend,  // whole typed frontend messages (a connection joined mid-stream)
  kBackend,   // whole typed backend messages
};
FirstBytes Classify(std::span<const uint8_t> first_bytes);

// The frontend's framing: 5-byte headers (type, int32 length), 4-byte untyped ones while
// `startup` (the StartupMessage or one of the requests that may precede it).
class FrontendRules final : public db::FrameRules {
 public:
  explicit FrontendRules(const Limits& limits) : limits_(limits) {}
  bool startup = true;

  size_t HeaderSize() const override { return startup ? 4 : 5; }
  bool ParseHeader(std::span<const uint8_t> header, db::Frame& frame) const override;
  size_t KeepBytes(const db::Frame& frame) const override;
  size_t FindFrameStart(std::span<const uint8_t> bytes) const override;

 private:
  const Limits& limits_;
};

// The backend's framing: 5-byte headers; one byte while `ssl_reply` (the answer to an SSLRequest
// or GSSENCRequest: 'S' or 'G' to go on encrypted, 'N' to go on in the clear).
class BackendRules final : public db::FrameRules {
 public:
  bool ssl_reply = false;

  size_t HeaderSize() const override { return ssl_reply ? 1 : 5; }
  bool ParseHeader(std::span<const uint8_t> header, db::Frame& frame) const override;
  size_t KeepBytes(const db::Frame& frame) const override;
  size_t FindFrameStart(std::span<const uint8_t> bytes) const override;
};

// A NUL-terminated string at `offset` of `body`; moves `offset` past its NUL. `ok` is false when
// there is no NUL before the end (the view then holds what there is).
std::string_view ReadCString(std::span<const uint8_t> body, size_t& offset, bool& ok);
uint32_t ReadInt32(std::span<const uint8_t> bytes, size_t offset);  // big endian; 0 past the end

// The startup packet's request code (kProtocolV3, kSslRequestCode, ...) and, for a StartupMessage,
// the parameters the conventions use.
struct Startup {
  uint32_t code = 0;
  std::string_view user;
  std::string_view database;  // as sent; PostgreSQL uses the user name when absent
};
Startup DecodeStartup(std::span<const uint8_t> body);

// An ErrorResponse's SQLSTATE ('C' field); empty when not among the kept bytes.
std::string_view ErrorCode(std::span<const uint8_t> body);

}  // namespace threadline::postgres
