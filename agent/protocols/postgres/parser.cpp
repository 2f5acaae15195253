#include "agent/protocols/postgres/parser.h"

#include <algorithm>
#include <string>

namespace threadline::postgres {

namespace {

// PostgreSQL's own limit for a message (MaxAllocSize is 1 GiB).
constexpr uint32_t kMaxMessageLength = 0x40000000;
constexpr uint32_t kMaxStartupLength = 10000;  // the server's own limit for the startup packet

bool FrontendType(uint8_t t) {
  switch (t) {
    case 'Q': case 'P': case 'B': case 'E': case 'D': case 'C': case 'S': case 'H': case 'X':
    case 'F': case 'd': case 'c': case 'f': case 'p':
      return true;
    default:
      return false;
  }
}

bool BackendType(uint8_t t) {
  switch (t) {
    case 'R': case 'K': case 'S': case 'Z': case 'T': case 'D': case 'C': case 'I': case 'E':
    case 'N': case '1': case '2': case '3': case 'n': case 't': case 's': case 'G': case 'H':
    case 'W': case 'd': case 'c': case 'A': case 'V': case 'v':
      return true;
    default:
      return false;
  }
}

bool EndsWithNul(std::span<const uint8_t> b) { return !b.empty() && b.back() == 0; }

size_t CountNuls(std::span<const uint8_t> b) { return static_cast<size_t>(std::count(b.begin(), b.end(), 0)); }

bool Printable(std::span<const uint8_t> b) {
  return std::all_of(b.begin(), b.end(), [](uint8_t c) { return c >= 0x20 && c < 0x7f; });
}

bool ErrorFieldType(uint8_t f) {
  switch (f) {
    case 'S': case 'V': case 'C': case 'M': case 'D': case 'H': case 'P': case 'p': case 'q':
    case 'W': case 's': case 't': case 'c': case 'd': case 'n': case 'F': case 'L': case 'R':
      return true;
    default:
      return false;
  }
}

// What can be checked of one whole message.
bool PlausibleBody(uint8_t t, std::span<const uint8_t> body, bool backend) {
  if (backend) {
    switch (t) {
      case 'Z': return body.size() == 1 && (body[0] == 'I' || body[0] == 'T' || body[0] == 'E');
      case 'C': return body.size() <= 64 && EndsWithNul(body) && Printable(body.first(body.size() - 1));
      case '1': case '2': case '3': case 'n': case 'I': case 's': case 'c': return body.empty();
      case 'K': return body.size() == 8;
      case 'E': case 'N': return EndsWithNul(body) && ErrorFieldType(body[0]);
      case 'S': return CountNuls(body) == 2 && EndsWithNul(body);
      case 'T': case 'D': return body.size() >= 2;
      case 'R': return body.size() >= 4;
      default: return true;
    }
  }
  switch (t) {
    case 'Q': return EndsWithNul(body);
    case 'P': return CountNuls(body) >= 2;
    case 'S': case 'H': case 'c': case 'X': return body.empty();
    case 'E': {
      const auto nul = std::find(body.begin(), body.end(), 0);
      return nul != body.end() && static_cast<size_t>(body.end() - nul) == 5;
    }
    case 'B': return CountNuls(body) >= 2;
    case 'D': case 'C': return body.size() >= 2 && (body[0] == 'S' || body[0] == 'P') && EndsWithNul(body);
    default: return true;
  }
}

// Messages that alone are evidence enough of a message boundary.
bool Distinctive(uint8_t t, bool backend) {
  if (backend) return t == 'Z' || t == 'C' || t == 'E' || t == '1' || t == '2' || t == 'T';
  return t == 'Q' || t == 'P' || t == 'S' || t == 'E' || t == 'B';
}

// Whether typed messages of one direction start at b[0] and follow one another: every whole one
// plausible, and either two of them or one distinctive. `exact`: the last one must end exactly
// at the end of `b` (detection), else it may run past it (resynchronisation).
bool ChainAt(std::span<const uint8_t> b, bool backend, bool exact) {
  size_t p = 0;
  size_t whole = 0;
  bool distinctive = false;
  while (p < b.size()) {
    const uint8_t t = b[p];
    if (!(backend ? BackendType(t) : FrontendType(t))) return false;
    if (p + 5 > b.size()) break;
    const uint32_t len = ReadInt32(b, p + 1);
    if (len < 4 || len > kMaxMessageLength) return false;
    if (p + 1 + len > b.size()) break;
    if (!PlausibleBody(t, b.subspan(p + 5, len - 4), backend)) return false;
    distinctive = distinctive || Distinctive(t, backend);
    ++whole;
    p += 1 + len;
  }
  if (exact && p != b.size()) return false;
  return whole >= 2 || (whole == 1 && distinctive);
}

size_t FindChain(std::span<const uint8_t> bytes, bool backend) {
  for (size_t o = 0; o < bytes.size(); ++o) {
    if (!(backend ? BackendType(bytes[o]) : FrontendType(bytes[o]))) continue;
    if (ChainAt(bytes.subspan(o), backend, false)) return o;
  }
  return std::string::npos;
}

bool ParseTyped(std::span<const uint8_t> h, db::Frame& f, bool backend) {
  f.type = h[0];
  if (!(backend ? BackendType(f.type) : FrontendType(f.type))) return false;
  const uint32_t len = ReadInt32(h, 1);
  if (len < 4 || len > kMaxMessageLength) return false;
  f.length = len - 4;
  return true;
}

bool IsStartupPacket(uint32_t len, uint32_t code) {
  if (code == kProtocolV3) return len > 8 && len <= kMaxStartupLength;
  if (code == kSslRequestCode || code == kGssEncRequestCode) return len == 8;
  return code == kCancelRequestCode && len == 16;
}

}  // namespace

uint32_t ReadInt32(std::span<const uint8_t> b, size_t o) {
  if (o + 4 > b.size()) return 0;
  return (static_cast<uint32_t>(b[o]) << 24) | (static_cast<uint32_t>(b[o + 1]) << 16) |
         (static_cast<uint32_t>(b[o + 2]) << 8) | b[o + 3];
}

std::string_view ReadCString(std::span<const uint8_t> body, size_t& offset, bool& ok) {
  ok = false;
  if (offset >= body.size()) return {};
  const auto begin = body.begin() + static_cast<std::ptrdiff_t>(offset);
  const auto nul = std::find(begin, body.end(), 0);
  std::string_view s(reinterpret_cast<const char*>(&*begin), static_cast<size_t>(nul - begin));
  ok = nul != body.end();
  offset += s.size() + (ok ? 1 : 0);
  return s;
}

FirstBytes Classify(std::span<const uint8_t> b) {
  if (b.size() >= 8 && IsStartupPacket(ReadInt32(b, 0), ReadInt32(b, 4))) return FirstBytes::kStartup;
  if (!b.empty() && FrontendType(b[0]) && ChainAt(b, false, true)) return FirstBytes::kFrontend;
  if (!b.empty() && BackendType(b[0]) && ChainAt(b, true, true)) return FirstBytes::kBackend;
  return FirstBytes::kUnknown;
}

bool FrontendRules::ParseHeader(std::span<const uint8_t> h, db::Frame& f) const {
  if (!startup) return ParseTyped(h, f, false);
  const uint32_t len = ReadInt32(h, 0);
  if (len < 8 || len > kMaxStartupLength) return false;
  f.type = kStartupPacket;
  f.length = len - 4;
  return true;
}

size_t FrontendRules::KeepBytes(const db::Frame& f) const {
  switch (f.type) {
    case kStartupPacket: return 1024;  // code and parameters (user, database, ...)
    case 'Q': case 'P': return limits_.max_statement_bytes + 256;  // + Parse's name
    case 'B': return 256;  // portal and statement names (NAMEDATALEN is 64); never the values
    case 'E': case 'D': case 'C': return 128;
    default: return 0;  // passwords ('p'), COPY data, function arguments: never kept
  }
}

size_t FrontendRules::FindFrameStart(std::span<const uint8_t> bytes) const { return FindChain(bytes, false); }

bool BackendRules::ParseHeader(std::span<const uint8_t> h, db::Frame& f) const {
  if (ssl_reply) {
    f.type = h[0];
    f.length = 0;
    return true;
  }
  return ParseTyped(h, f, true);
}

size_t BackendRules::KeepBytes(const db::Frame& f) const {
  switch (f.type) {
    case 'E': return 256;  // severity and SQLSTATE come first; the message text is not used
    case 'C': return 64;   // the command tag
    case 'Z': return 1;
    case 'R': return 4;
    default: return 0;  // rows, COPY data, notices: counted, never kept
  }
}

size_t BackendRules::FindFrameStart(std::span<const uint8_t> bytes) const { return FindChain(bytes, true); }

Startup DecodeStartup(std::span<const uint8_t> body) {
  Startup s;
  s.code = ReadInt32(body, 0);
  if (s.code != kProtocolV3) return s;
  size_t o = 4;
  bool ok = true;
  while (o < body.size() && body[o] != 0) {
    const std::string_view key = ReadCString(body, o, ok);
    if (!ok) break;
    const std::string_view value = ReadCString(body, o, ok);
    if (!ok) break;
    if (key == "user") s.user = value;
    else if (key == "database") s.database = value;
  }
  return s;
}

std::string_view ErrorCode(std::span<const uint8_t> body) {
  size_t o = 0;
  while (o < body.size() && body[o] != 0) {
    const uint8_t field = body[o++];
    bool ok = false;
    const std::string_view value = ReadCString(body, o, ok);
    if (!ok) break;
    if (field == 'C') return value;
  }
  return {};
}

}  // namespace threadline::postgres
