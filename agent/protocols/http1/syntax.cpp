#include "agent/protocols/http1/syntax.h"

#include <array>
#include <cstring>

namespace threadline::http1::syntax {

namespace {

constexpr std::string_view kVersionPrefix = "HTTP/1.";

bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }
bool IsCtl(uint8_t c) { return c < 0x20 || c == 0x7f; }
bool IsOws(char c) { return c == ' ' || c == '\t'; }

int HexValue(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Methods of RFC 9110 plus the registered extension methods seen in practice (WebDAV,
// CalDAV, UPnP, cache purges). Any other token is still accepted at the start of a line.
constexpr std::array<std::string_view, 36> kKnownMethods = {
    "GET",      "HEAD",      "POST",        "PUT",        "DELETE",    "CONNECT",
    "OPTIONS",  "TRACE",     "PATCH",       "PROPFIND",   "PROPPATCH", "MKCOL",
    "COPY",     "MOVE",      "LOCK",        "UNLOCK",     "SEARCH",    "REPORT",
    "MKACTIVITY", "CHECKOUT", "MERGE",      "M-SEARCH",   "NOTIFY",    "SUBSCRIBE",
    "UNSUBSCRIBE", "PURGE",  "LINK",        "UNLINK",     "ACL",       "BIND",
    "REBIND",   "UNBIND",    "MKCALENDAR",  "QUERY",      "SOURCE",    "VERSION-CONTROL"};

// "HTTP/1.D" exactly.
bool IsHttp1Version(std::string_view v, uint8_t* minor) {
  if (v.size() != 8 || v.substr(0, 7) != kVersionPrefix || !IsDigit(v[7])) return false;
  if (minor != nullptr) *minor = static_cast<uint8_t>(v[7] - '0');
  return true;
}

bool IsValidTarget(std::string_view t) {
  if (t.empty()) return false;
#if defined(__SSE2__)
  // Sixteen bytes at a time (the last sixteen overlapping): a byte loop over every request's
  // target was ~150 instructions per request. A byte is bad when it is <= SP (CTLs and SP:
  // unsigned min) or DEL.
  if (t.size() >= 16) {
    const __m128i space = _mm_set1_epi8(' ');
    const __m128i del = _mm_set1_epi8(0x7f);
    auto bad = [&](const char* at) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at));
      return _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, space), v),
                                            _mm_cmpeq_epi8(v, del))) != 0;
    };
    const char* p = t.data();
    const char* const end = p + t.size();
    for (; end - p >= 16; p += 16)
      if (bad(p)) return false;
    return p == end || !bad(end - 16);
  }
#endif
  for (char c : t)
    if (c == ' ' || IsCtl(static_cast<uint8_t>(c))) return false;
  return true;
}

bool IsToken(std::string_view t, size_t max) {
  if (t.empty() || t.size() > max) return false;
  for (char c : t)
    if (!IsTchar(static_cast<uint8_t>(c))) return false;
  return true;
}

}  // namespace

bool IsKnownMethod(std::string_view method) {
  for (std::string_view m : kKnownMethods)
    if (m == method) return true;
  return false;
}

std::string_view StripCr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

namespace {
struct RequestLineParts {
  std::string_view method, target;
  uint8_t version_minor = 0;
};
bool SplitRequestLine(std::string_view line, RequestLineParts& out) {
  size_t sp1 = line.find(' ');
  size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) return false;
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  return IsToken(out.method, kMaxMethodBytes) && IsValidTarget(out.target) &&
         IsHttp1Version(line.substr(sp2 + 1), &out.version_minor);
}
}  // namespace

bool ParseRequestLine(std::string_view line, Message& out) {
  RequestLineParts parts;
  if (!SplitRequestLine(line, parts)) return false;
  out.kind = MessageKind::kRequest;
  out.method.assign(parts.method);
  out.target.assign(parts.target);
  out.version_minor = parts.version_minor;
  return true;
}

bool IsRequestLine(std::string_view line) {
  RequestLineParts parts;
  return SplitRequestLine(line, parts);
}

bool ParseStatusLine(std::string_view line, Message& out) {
  uint8_t minor = 0;
  if (line.size() < 12 || !IsHttp1Version(line.substr(0, 8), &minor) || line[8] != ' ') return false;
  uint16_t code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (!IsDigit(static_cast<uint8_t>(line[i]))) return false;
    code = static_cast<uint16_t>(code * 10 + (line[i] - '0'));
  }
  if (code < 100) return false;
  std::string_view reason;
  if (line.size() > 12) {
    if (line[12] != ' ') return false;
    reason = line.substr(13);
    for (char c : reason)
      if (c != '\t' && IsCtl(static_cast<uint8_t>(c))) return false;
  }
  out.kind = MessageKind::kResponse;
  out.version_minor = minor;
  out.status_code = code;
  out.reason.assign(reason.substr(0, kMaxReasonBytes));
  return true;
}

namespace {

// Whether `s` holds a CR, LF or NUL. Eight bytes at a time: every byte of every header value
// passes here (a byte loop was the parser's largest cost per span after the name scan).
// (v - 0x01..) & ~v & 0x80.. is non-zero exactly when some byte of v is zero.
bool HasBadFieldByte(std::string_view s) {
  auto bad = [&](size_t at) { return detail::FieldBreaks(raw::GetLittle<uint64_t>(s.data() + at)); };
  if (s.size() < 8) {
    for (char c : s)
      if (kCharClass[static_cast<uint8_t>(c)] & kCharBadField) return true;
    return false;
  }
  for (size_t i = 0; i + 8 <= s.size(); i += 8)
    if (bad(i)) return true;
  return bad(s.size() - 8) != 0;  // the tail, as one word overlapping the last one checked
}

}  // namespace

bool ParseHeaderLine(std::string_view line, HeaderLine& out) {
  // One pass: the name is the run of tchars, which must end at the colon (no whitespace before
  // it: RFC 9112 §5.1); then nothing after it may be CR, LF or NUL (a bare CR or NUL is an
  // invalid element; tchars are none of them).
  const size_t n = line.size();
  size_t i = 0;
  const bool continuation = n > 0 && IsOws(line[0]);
  if (!continuation) {
    while (i < n && IsTchar(static_cast<uint8_t>(line[i]))) ++i;
    if (i == 0 || i == n || line[i] != ':' || i > (1u << 16)) return false;
  }
  if (HasBadFieldByte(line.substr(i))) return false;
  if (continuation) {
    out = HeaderLine{{}, TrimOws(line), true};
  } else {
    out = HeaderLine{line.substr(0, i), TrimOws(line.substr(i + 1)), false};
  }
  return true;
}

std::optional<uint64_t> ParseChunkSizeLine(std::string_view line) {
  size_t i = 0;
  uint64_t size = 0;
  while (i < line.size()) {
    int h = HexValue(static_cast<uint8_t>(line[i]));
    if (h < 0) break;
    if (size >> 56) return std::nullopt;  // would pass 2^60
    size = size * 16 + static_cast<uint64_t>(h);
    ++i;
  }
  if (i == 0) return std::nullopt;
  while (i < line.size() && IsOws(line[i])) ++i;  // BWS before a chunk-ext
  if (i == line.size()) return size;
  if (line[i] != ';') return std::nullopt;
  for (; i < line.size(); ++i)
    if (line[i] != '\t' && IsCtl(static_cast<uint8_t>(line[i]))) return std::nullopt;
  return size;
}

std::optional<uint64_t> ParseContentLength(std::string_view value) {
  std::optional<uint64_t> result;
  while (true) {
    size_t comma = value.find(',');
    std::string_view item = TrimOws(value.substr(0, comma));
    if (item.empty() || item.size() > 18) return std::nullopt;
    uint64_t n = 0;
    for (char c : item) {
      if (!IsDigit(static_cast<uint8_t>(c))) return std::nullopt;
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (result && *result != n) return std::nullopt;
    result = n;
    if (comma == std::string_view::npos) return result;
    value.remove_prefix(comma + 1);
  }
}

bool ListHasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = TrimOws(list.substr(0, comma));
    size_t semi = item.find(';');  // parameters (e.g. "100-continue;x=1") do not change the token
    if (EqualsIgnoreCase(TrimOws(item.substr(0, semi)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

namespace {
// The option `token` names (ASCII case-insensitive), or 0: compared as masked words, as field
// names are (a byte loop per option was ~110 instructions for every Connection field).
constexpr field_name_detail::Pattern kClose = field_name_detail::PatternOf("close");
constexpr field_name_detail::Pattern kUpgrade = field_name_detail::PatternOf("upgrade");
constexpr field_name_detail::Pattern kKeepAlive = field_name_detail::PatternOf("keep-alive");
uint8_t ConnectionOption(std::string_view token) {
  using field_name_detail::Matches;
  switch (token.size()) {
    case 5: return Matches(token.data(), 5, kClose) ? kConnectionClose : 0;
    case 7: return Matches(token.data(), 7, kUpgrade) ? kConnectionUpgrade : 0;
    case 10: return Matches(token.data(), 10, kKeepAlive) ? kConnectionKeepAlive : 0;
    default: return 0;
  }
}
}  // namespace

uint8_t ConnectionOptions(std::string_view list) {
  // The usual value is one option alone ("keep-alive", "close", "Upgrade").
  if (const uint8_t alone = ConnectionOption(list)) return alone;
  uint8_t options = 0;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view item = TrimOws(list.substr(0, comma));
    options |= ConnectionOption(TrimOws(item.substr(0, item.find(';'))));
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return options;
}

std::string_view LastListElement(std::string_view list) {
  list = TrimOws(list);
  while (!list.empty() && list.back() == ',') list = TrimOws(list.substr(0, list.size() - 1));
  size_t comma = list.rfind(',');
  std::string_view last = comma == std::string_view::npos ? list : list.substr(comma + 1);
  size_t semi = last.find(';');
  return TrimOws(last.substr(0, semi));
}

size_t FindRequestStart(std::string_view line) {
  constexpr size_t npos = std::string_view::npos;
  if (line.size() < 14 || !IsHttp1Version(line.substr(line.size() - 8), nullptr)) return npos;
  size_t sp2 = line.size() - 9;
  if (line[sp2] != ' ') return npos;
  size_t sp1 = line.rfind(' ', sp2 - 1);
  if (sp1 == npos || sp1 == 0 || !IsValidTarget(line.substr(sp1 + 1, sp2 - sp1 - 1))) return npos;
  size_t t0 = sp1;
  while (t0 > 0 && IsTchar(static_cast<uint8_t>(line[t0 - 1]))) --t0;
  if (t0 == sp1) return npos;
  std::string_view token = line.substr(t0, sp1 - t0);
  if (IsKnownMethod(token)) return t0;
  for (size_t i = 1; i < token.size(); ++i)
    if (IsKnownMethod(token.substr(i))) return t0 + i;
  if (t0 == 0 && token.size() <= kMaxMethodBytes) return 0;
  return npos;
}

size_t FindResponseStart(std::string_view line) {
  size_t pos = 0;
  while ((pos = line.find(kVersionPrefix, pos)) != std::string_view::npos) {
    Message scratch;
    std::string_view rest = line.substr(pos);
    // Validate without copying the reason: only the first 12 bytes decide.
    if (rest.size() >= 12 && ParseStatusLine(rest.substr(0, 12), scratch) &&
        (rest.size() == 12 || rest[12] == ' '))
      return pos;
    ++pos;
  }
  return std::string_view::npos;
}

bool PlausibleRequestPrefix(std::string_view p) {
  size_t n = p.size();
  size_t i = 0;
  while (i < n && IsTchar(static_cast<uint8_t>(p[i]))) ++i;
  if (i == n) return i <= kMaxMethodBytes;
  if (i == 0 || i > kMaxMethodBytes || p[i] != ' ') return false;
  size_t target_start = ++i;
  while (i < n && p[i] != ' ') {
    if (p[i] != '\r' && IsCtl(static_cast<uint8_t>(p[i]))) return false;
    ++i;
  }
  if (i == n) return true;
  if (i == target_start) return false;
  std::string_view version = p.substr(i + 1);
  std::string_view want = kVersionPrefix;
  for (size_t k = 0; k < version.size(); ++k) {
    char c = version[k];
    if (k < want.size() ? c != want[k]
                        : (k == 7 ? !IsDigit(static_cast<uint8_t>(c)) : !(k == 8 && c == '\r')))
      return false;
  }
  return true;
}

bool PlausibleResponsePrefix(std::string_view p) {
  constexpr std::string_view kShape = "HTTP/1.D DDD";
  for (size_t k = 0; k < p.size() && k < kShape.size(); ++k) {
    uint8_t c = static_cast<uint8_t>(p[k]);
    if (kShape[k] == 'D' ? !IsDigit(c) : c != static_cast<uint8_t>(kShape[k])) return false;
  }
  if (p.size() > kShape.size()) {
    char c = p[kShape.size()];
    if (c != ' ' && c != '\r' && c != '\n') return false;
  }
  return true;
}

}  // namespace threadline::http1::syntax
