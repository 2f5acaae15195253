// MySQL / MariaDB client/server protocol framing and packet decoding
// (https://dev.mysql.com/doc/dev/mysql-server/latest/PAGE_PROTOCOL.html, MariaDB's the same for
// what is read here): packets of a 3-byte little-endian length and a sequence id, payloads of
// 16 MiB - 1 continued in the next packet. Rules for db::FrameReader and decoders over a packet's
// kept payload. Pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "agent/protocols/db/frame_reader.h"

namespace threadline::mysql {

// Capability flags this parser reads.
inline constexpr uint32_t kClientConnectWithDb = 1u << 3;
inline constexpr uint32_t kClientCompress = 1u << 5;
inline constexpr uint32_t kClientProtocol41 = 1u << 9;
inline constexpr uint32_t kClientSsl = 1u << 11;
inline constexpr uint32_t kClientSecureConnection = 1u << 15;
inline constexpr uint32_t kClientPluginAuthLenencData = 1u << 21;
inline constexpr uint32_t kClientDeprecateEof = 1u << 24;
inline constexpr uint32_t kClientQueryAttributes = 1u << 27;
inline constexpr uint16_t kServerMoreResultsExist = 0x0008;
inline constexpr uint64_t kMaxPacketPayload = 0xffffff;  // a payload this long goes on in the next packet

// Command bytes.
enum Command : uint8_t {
  kComQuit = 0x01, kComInitDb = 0x02, kComQuery = 0x03, kComFieldList = 0x04, kComRefresh = 0x07,
  kComShutdown = 0x08, kComStatistics = 0x09, kComProcessInfo = 0x0a, kComProcessKill = 0x0c,
  kComDebug = 0x0d, kComPing = 0x0e, kComChangeUser = 0x11, kComBinlogDump = 0x12,
  kComRegisterSlave = 0x15, kComStmtPrepare = 0x16, kComStmtExecute = 0x17,
  kComStmtSendLongData = 0x18, kComStmtClose = 0x19, kComStmtReset = 0x1a, kComSetOption = 0x1b,
  kComStmtFetch = 0x1c, kComBinlogDumpGtid = 0x1e, kComResetConnection = 0x1f,
};

struct Limits {
  size_t max_statement_bytes = 4096;  // of a query or prepared statement kept
  size_t max_statements = 128;        // prepared statements remembered per connection
  size_t max_operations = 1024;       // commands waiting for their answer per connection
};

// Framing of one direction: 4-byte headers; the client's payloads are kept up to a statement's
// length, the server's by their first bytes (OK, ERR, EOF and counts are all there).
class PacketRules final : public db::FrameRules {
 public:
  PacketRules(bool client, const Limits& limits) : client_(client), limits_(limits) {}
  size_t HeaderSize() const override { return 4; }
  bool ParseHeader(std::span<const uint8_t> header, db::Frame& frame) const override;
  size_t KeepBytes(const db::Frame& frame) const override;
  size_t FindFrameStart(std::span<const uint8_t> bytes) const override;

 private:
  bool client_;
  const Limits& limits_;
};

// What a stream's first bytes are, for detection and for a connection whose role is unknown.
enum class FirstBytes : uint8_t {
  kUnknown,
  kGreeting,  // the server's initial handshake (protocol 10): the connection's start
  kCommand,   // a whole COM_QUERY (or COM_PING) packet: a client joined mid-stream
  // A HandshakeResponse with sequence id 2 and CLIENT_SSL: the first plaintext of a TLS
  // connection (it follows the SSLRequest, id 1). Means that only for a TLS connection's plaintext.
  kTlsHandshakeResponse,
};
FirstBytes Classify(std::span<const uint8_t> first_bytes);

// A length-encoded integer at `offset` (moved past it); nullopt when cut short or NULL (0xfb).
std::optional<uint64_t> ReadLenenc(std::span<const uint8_t> payload, size_t& offset);

struct Greeting {
  std::string_view version;  // "5.5.5-10.11.19-MariaDB-0+deb12u1"
  uint32_t capabilities = 0;
};
std::optional<Greeting> DecodeGreeting(std::span<const uint8_t> payload);

struct HandshakeResponse {
  uint32_t capabilities = 0;
  bool ssl_request = false;    // only the capabilities, with CLIENT_SSL: TLS follows
  std::string_view database;  // CLIENT_CONNECT_WITH_DB
};
std::optional<HandshakeResponse> DecodeHandshakeResponse(std::span<const uint8_t> payload, uint64_t length);

// The schema a COM_CHANGE_USER switches to (its payload, the command byte first; "" for none):
// user NUL-terminated, the auth response (length-prefixed with CLIENT_SECURE_CONNECTION, as every
// client since 4.1 sends it; else NUL-terminated), the schema NUL-terminated. nullopt when cut.
std::optional<std::string_view> DecodeChangeUserSchema(std::span<const uint8_t> payload, uint32_t client_caps);

struct ErrPacket {
  uint16_t code = 0;
  std::string_view sqlstate;  // 5 characters, when the server sent one
};
ErrPacket DecodeErr(std::span<const uint8_t> payload);

// The status flags of an OK packet (header 0x00 or 0xfe) or an EOF packet (0xfe, < 9 bytes).
uint16_t StatusFlags(std::span<const uint8_t> payload, uint64_t length);

}  // namespace threadline::mysql
