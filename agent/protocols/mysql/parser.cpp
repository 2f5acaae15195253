#include "agent/protocols/mysql/parser.h"

#include <algorithm>
#include <string>

namespace threadline::mysql {

namespace {

uint32_t Le(std::span<const uint8_t> b, size_t o, size_t n) {
  uint32_t v = 0;
  for (size_t i = 0; i < n && o + i < b.size(); ++i) v |= static_cast<uint32_t>(b[o + i]) << (8 * i);
  return v;
}

uint32_t PacketLength(std::span<const uint8_t> b, size_t o) { return Le(b, o, 3); }

bool Printable(uint8_t c) { return (c >= 0x20 && c < 0x7f) || c == '\t' || c == '\n' || c == '\r'; }

bool KnownCommand(uint8_t c) {
  switch (c) {
    case kComQuit: case kComInitDb: case kComQuery: case kComFieldList: case kComRefresh:
    case kComStatistics: case kComProcessInfo: case kComProcessKill: case kComDebug: case kComPing:
    case kComChangeUser: case kComStmtPrepare: case kComStmtExecute: case kComStmtSendLongData:
    case kComStmtClose: case kComStmtReset: case kComSetOption: case kComStmtFetch:
    case kComResetConnection:
      return true;
    default:
      return false;
  }
}

// Server packets that follow one another in a response (sequence ids counting up) and reach the
// end of `b` or past it: two whole ones, or one that is a response's last (OK, ERR, EOF).
bool ServerChainAt(std::span<const uint8_t> b) {
  size_t p = 0;
  size_t whole = 0;
  int prev = -1;
  bool terminal = false;
  while (p + 4 <= b.size()) {
    const uint32_t len = PacketLength(b, p);
    const int seq = b[p + 3];
    if (len == 0 || (prev >= 0 && seq != ((prev + 1) & 0xff))) return false;
    if (p + 4 + len > b.size()) break;
    const uint8_t first = b[p + 4];
    terminal = (first == 0xfe && len < 9) || first == 0x00 || first == 0xff;
    ++whole;
    prev = seq;
    p += 4 + len;
  }
  return whole >= 2 || (whole == 1 && p == b.size() && terminal);
}

}  // namespace

bool PacketRules::ParseHeader(std::span<const uint8_t> h, db::Frame& f) const {
  f.type = 0;
  f.seq = h[3];
  f.length = PacketLength(h, 0);
  return true;  // every length is a valid packet's
}

size_t PacketRules::KeepBytes(const db::Frame&) const {
  // Client: a command and its statement (query attributes may come first). Server: the first
  // bytes say what a packet is (OK, ERR, EOF, a count, the greeting).
  return client_ ? limits_.max_statement_bytes + 32 : 128;
}

size_t PacketRules::FindFrameStart(std::span<const uint8_t> b) const {
  if (client_) {
    // A client writes a command whole, from a chunk's first byte: sequence id 0, a command byte.
    if (b.size() >= 5 && b[3] == 0 && KnownCommand(b[4]) && PacketLength(b, 0) > 0) return 0;
    return std::string::npos;
  }
  for (size_t o = 0; o + 4 <= b.size(); ++o)
    if (ServerChainAt(b.subspan(o))) return o;
  return std::string::npos;
}

FirstBytes Classify(std::span<const uint8_t> b) {
  if (b.size() < 5) return FirstBytes::kUnknown;
  const uint32_t len = PacketLength(b, 0);
  if (b[3] == 2 && len > 32 && len <= 4096 && len + 4 == b.size()) {
    // Capabilities with PROTOCOL_41 and SSL, max packet (4), charset (1), a filler of 23 zero
    // bytes (MariaDB puts its extended capabilities in the last 4), the user NUL-terminated.
    const uint32_t caps = Le(b, 4, 4);
    const bool filler = std::all_of(b.begin() + 13, b.begin() + 32, [](uint8_t x) { return x == 0; });
    const bool user = std::find(b.begin() + 36, b.end(), 0) != b.end();
    if ((caps & kClientProtocol41) && (caps & kClientSsl) && filler && user) return FirstBytes::kTlsHandshakeResponse;
    return FirstBytes::kUnknown;
  }
  if (b[3] != 0) return FirstBytes::kUnknown;
  if (b[4] == 10 && len >= 30 && len <= 1024) {
    // Protocol 10, then the server's version: printable, starting with a digit, NUL-terminated.
    size_t i = 5;
    while (i < b.size() && i < 4 + len && b[i] != 0 && b[i] >= 0x20 && b[i] < 0x7f) ++i;
    if (i < b.size() && b[i] == 0 && i - 5 >= 3 && b[5] >= '0' && b[5] <= '9') return FirstBytes::kGreeting;
    return FirstBytes::kUnknown;
  }
  if (len + 4 != b.size()) return FirstBytes::kUnknown;  // a command arrives whole
  if (b[4] == kComPing && len == 1) return FirstBytes::kCommand;
  if (b[4] == kComQuery && len >= 2) {
    const uint8_t c = b[5];
    const bool starts = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '(' || c == '/' || c == ' ' || c == '\n';
    if (starts && std::all_of(b.begin() + 5, b.end(), [](uint8_t x) { return Printable(x) || x >= 0x80; }))
      return FirstBytes::kCommand;
  }
  return FirstBytes::kUnknown;
}

std::optional<uint64_t> ReadLenenc(std::span<const uint8_t> p, size_t& o) {
  if (o >= p.size()) return std::nullopt;
  const uint8_t first = p[o];
  size_t n = 0;
  if (first < 0xfb) {
    ++o;
    return first;
  }
  if (first == 0xfc) n = 2;
  else if (first == 0xfd) n = 3;
  else if (first == 0xfe) n = 8;
  else return std::nullopt;  // 0xfb NULL, 0xff not an integer
  if (o + 1 + n > p.size()) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[o + 1 + i]) << (8 * i);
  o += 1 + n;
  return v;
}

std::optional<Greeting> DecodeGreeting(std::span<const uint8_t> p) {
  if (p.size() < 2 || p[0] != 10) return std::nullopt;
  const auto nul = std::find(p.begin() + 1, p.end(), 0);
  if (nul == p.end()) return std::nullopt;
  Greeting g;
  g.version = std::string_view(reinterpret_cast<const char*>(p.data() + 1), static_cast<size_t>(nul - p.begin() - 1));
  // connection id (4), auth data part 1 (8), filler (1), capabilities low (2), charset (1),
  // status (2), capabilities high (2).
  const size_t o = static_cast<size_t>(nul - p.begin()) + 1;
  g.capabilities = Le(p, o + 13, 2) | (Le(p, o + 18, 2) << 16);
  return g;
}

std::optional<std::string_view> DecodeChangeUserSchema(std::span<const uint8_t> p, uint32_t client_caps) {
  const auto user_end = std::find(p.begin() + std::min<std::ptrdiff_t>(1, std::ssize(p)), p.end(), 0);
  if (user_end == p.end()) return std::nullopt;
  size_t o = static_cast<size_t>(user_end - p.begin()) + 1;
  if (client_caps & kClientSecureConnection) {
    if (o >= p.size()) return std::nullopt;
    o += 1 + p[o];
  } else {
    const auto auth_end = std::find(p.begin() + static_cast<std::ptrdiff_t>(o), p.end(), 0);
    if (auth_end == p.end()) return std::nullopt;
    o = static_cast<size_t>(auth_end - p.begin()) + 1;
  }
  if (o >= p.size()) return std::nullopt;
  const auto schema_end = std::find(p.begin() + static_cast<std::ptrdiff_t>(o), p.end(), 0);
  if (schema_end == p.end()) return std::nullopt;
  return std::string_view(reinterpret_cast<const char*>(p.data() + o), static_cast<size_t>(schema_end - p.begin()) - o);
}

std::optional<HandshakeResponse> DecodeHandshakeResponse(std::span<const uint8_t> p, uint64_t length) {
  if (p.size() < 32) return std::nullopt;
  HandshakeResponse r;
  r.capabilities = Le(p, 0, 4);
  if (!(r.capabilities & kClientProtocol41)) return std::nullopt;  // the 4.0 handshake: not read
  if (length == 32) {
    r.ssl_request = (r.capabilities & kClientSsl) != 0;
    return r;
  }
  size_t o = 32;  // capabilities, max packet (4), charset (1), filler (23)
  const auto user_end = std::find(p.begin() + static_cast<std::ptrdiff_t>(o), p.end(), 0);
  if (user_end == p.end()) return r;
  o = static_cast<size_t>(user_end - p.begin()) + 1;
  uint64_t auth_len = 0;
  if (r.capabilities & kClientPluginAuthLenencData) {
    auto n = ReadLenenc(p, o);
    if (!n) return r;
    auth_len = *n;
  } else if (r.capabilities & kClientSecureConnection) {
    if (o >= p.size()) return r;
    auth_len = p[o++];
  } else {
    const auto end = std::find(p.begin() + static_cast<std::ptrdiff_t>(o), p.end(), 0);
    auth_len = static_cast<uint64_t>(end - p.begin()) - o + 1;
  }
  o += auth_len;
  if ((r.capabilities & kClientConnectWithDb) && o < p.size()) {
    const auto db_end = std::find(p.begin() + static_cast<std::ptrdiff_t>(o), p.end(), 0);
    if (db_end != p.end())
      r.database = std::string_view(reinterpret_cast<const char*>(p.data() + o), static_cast<size_t>(db_end - p.begin()) - o);
  }
  return r;
}

ErrPacket DecodeErr(std::span<const uint8_t> p) {
  ErrPacket e;
  e.code = static_cast<uint16_t>(Le(p, 1, 2));
  if (p.size() >= 9 && p[3] == '#') e.sqlstate = std::string_view(reinterpret_cast<const char*>(p.data() + 4), 5);
  return e;
}

uint16_t StatusFlags(std::span<const uint8_t> p, uint64_t length) {
  if (p.empty()) return 0;
  if (p[0] == 0xfe && length < 9) return static_cast<uint16_t>(Le(p, 3, 2));  // EOF: warnings, status
  size_t o = 1;
  if (!ReadLenenc(p, o) || !ReadLenenc(p, o)) return 0;  // affected rows, last insert id
  return static_cast<uint16_t>(Le(p, o, 2));
}

}  // namespace threadline::mysql
