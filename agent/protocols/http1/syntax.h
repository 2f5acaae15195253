// HTTP/1.x line grammar (RFC 9112 §3, §4, §5, §7.1): pure functions over one line, shared by
// the incremental parser, its resynchronisation and protocol detection.
//
// A "line" here is the bytes before LF with one trailing CR removed (bare LF is tolerated).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "agent/common/raw_bytes.h"
#include "agent/protocols/http1/message.h"

namespace threadline::http1::syntax {

inline constexpr size_t kMaxMethodBytes = 32;
inline constexpr size_t kMaxReasonBytes = 256;

// Character classes by table: these run for every byte of every header line.
inline constexpr uint8_t kCharTchar = 1;    // RFC 9110 tchar: may appear in a token
inline constexpr uint8_t kCharBadField = 2;  // CR, LF, NUL: never inside a field line
inline constexpr std::array<uint8_t, 256> kCharClass = [] {
  std::array<uint8_t, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] |= kCharTchar;
  for (int c = 'a'; c <= 'z'; ++c) t[c] |= kCharTchar;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] |= kCharTchar;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<uint8_t>(c)] |= kCharTchar;
  t['\r'] |= kCharBadField;
  t['\n'] |= kCharBadField;
  t[0] |= kCharBadField;
  return t;
}();

inline bool IsTchar(uint8_t c) { return kCharClass[c] & kCharTchar; }
bool IsKnownMethod(std::string_view method);
std::string_view StripCr(std::string_view line_with_optional_cr);
// Inline, with the usual case (nothing to trim: "Name: value") decided by two tests: every
// header value passes here.
inline std::string_view TrimOws(std::string_view s) {
  auto ows = [](char c) { return c == ' ' || c == '\t'; };
  while (!s.empty() && ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && ows(s.back())) s.remove_suffix(1);
  return s;
}

// "GET /x HTTP/1.1" → method, target, version_minor. Only HTTP/1.x is accepted.
bool ParseRequestLine(std::string_view line, Message& out);
// Whether ParseRequestLine would accept `line`, without a Message to fill (protocol detection,
// once per connection).
bool IsRequestLine(std::string_view line);
// "HTTP/1.1 200 OK" (reason may be empty or missing) → status_code, reason, version_minor.
bool ParseStatusLine(std::string_view line, Message& out);

// A field line read straight from the bytes of a chunk (ScanFieldLine).
enum class Scan : uint8_t {
  kField,       // "name: value" with its line end, valid: name, value (OWS trimmed) and wire set
  kEnd,         // the empty line that ends a header block (CRLF or bare LF): wire set
  kIncomplete,  // no line end in the bytes given (nothing in them is invalid so far)
  kOther,       // anything else: an obs-fold, a bad name, CR/NUL in the value, ... (the line is
                // parsed the general way: ParseHeaderLine, which also tells what is wrong)
};
struct ScannedLine {
  std::string_view name;
  std::string_view value;
  size_t wire = 0;  // bytes of the line with its line end
};

namespace detail {
// One bit (0x80) in each byte of `w` that is CR, LF or NUL; exact at the lowest such byte, which
// is all FirstFieldBreak reads ((v - 0x01..) & ~v & 0x80.. can only misreport bytes above a
// byte that is really zero: the borrow runs upwards).
inline uint64_t FieldBreaks(uint64_t w) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  auto zero = [](uint64_t v) { return (v - kOnes) & ~v & kHigh; };
  return zero(w) | zero(w ^ (kOnes * '\r')) | zero(w ^ (kOnes * '\n'));
}
}  // namespace detail

// The first CR, LF or NUL in [p, end), or end: sixteen bytes at a time (SSE2, x86-64's
// baseline) while sixteen are left, then eight, then one.
inline const char* FirstFieldBreak(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i nul = _mm_setzero_si128();
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i hits = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
                                      _mm_cmpeq_epi8(v, nul));
    if (const auto breaks = static_cast<unsigned>(_mm_movemask_epi8(hits)))
      return p + std::countr_zero(breaks);
    p += 16;
  }
#endif
  while (end - p >= 8) {
    if (const uint64_t breaks = detail::FieldBreaks(raw::GetLittle<uint64_t>(p)))
      return p + (std::countr_zero(breaks) >> 3);
    p += 8;
  }
  while (p < end && !(kCharClass[static_cast<uint8_t>(*p)] & kCharBadField)) ++p;
  return p;
}

// The first byte in [p, end) that is not an ASCII letter, digit or '-' (the bytes of almost
// every field name, all of them tchars), sixteen bytes at a time (SSE2) while sixteen are left;
// where it stops is where a byte-by-byte tchar scan takes over (so what is a name is still
// decided by kCharClass alone). A byte loop over the name was ~35 instructions per field line.
inline const char* SkipNameLetters(const char* p, const char* end) {
#if defined(__SSE2__)
  // Unsigned range checks with signed compares: x - lo + 0x80 < -128 + (hi - lo + 1).
  const __m128i to_letter = _mm_set1_epi8(static_cast<char>(0x80 - 'a'));
  const __m128i letters = _mm_set1_epi8(static_cast<char>(-128 + 26));
  const __m128i to_digit = _mm_set1_epi8(static_cast<char>(0x80 - '0'));
  const __m128i digits = _mm_set1_epi8(static_cast<char>(-128 + 10));
  const __m128i dash = _mm_set1_epi8('-');
  const __m128i case_bit = _mm_set1_epi8(0x20);
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // A letter of either case is 'a'..'z' with bit 5 set (no other byte is: '@', '[' .. '`'
    // and '{' .. DEL are not in range either way). Digits and '-' are checked as they are
    // (with bit 5 set, 0x10..0x19 and CR would pass).
    const __m128i letter =
        _mm_cmplt_epi8(_mm_add_epi8(_mm_or_si128(v, case_bit), to_letter), letters);
    const __m128i digit = _mm_cmplt_epi8(_mm_add_epi8(v, to_digit), digits);
    const __m128i ok = _mm_or_si128(_mm_or_si128(letter, digit), _mm_cmpeq_epi8(v, dash));
    if (const auto stop = static_cast<unsigned>(_mm_movemask_epi8(ok)) ^ 0xffffu)
      return p + std::countr_zero(stop);
    p += 16;
  }
#endif
  (void)end;
  return p;
}

// Reads the line at the start of `in` in one pass: the name's bytes checked by class while it
// is found, then the value's line end found and its bytes checked together (the first CR, LF or
// NUL must be the line end). Inline: it runs for every field line of every message. Accepts
// exactly what ParseHeaderLine accepts (for the line before the first LF, one CR stripped),
// except obs-folds, which it leaves to the general way (kOther).
inline Scan ScanFieldLine(std::string_view in, ScannedLine& out) {
  const char* const begin = in.data();
  const char* const end = begin + in.size();
  const char* p = SkipNameLetters(begin, end);
  while (p < end && IsTchar(static_cast<uint8_t>(*p))) ++p;
  if (p == end) return Scan::kIncomplete;
  if (*p != ':' || p == begin) {
    if (p != begin) return Scan::kOther;
    if (*p == '\n') {
      out.wire = 1;
      return Scan::kEnd;
    }
    if (*p != '\r') return Scan::kOther;
    if (p + 1 == end) return Scan::kIncomplete;
    if (p[1] != '\n') return Scan::kOther;
    out.wire = 2;
    return Scan::kEnd;
  }
  if (p - begin > (1 << 16)) return Scan::kOther;
  out.name = std::string_view(begin, static_cast<size_t>(p - begin));
  ++p;
  while (p < end && (*p == ' ' || *p == '\t')) ++p;
  const char* const value = p;
  p = FirstFieldBreak(p, end);
  if (p == end) return Scan::kIncomplete;
  const char* value_end = p;
  if (*p == '\r') {
    if (p + 1 == end) return Scan::kIncomplete;
    if (p[1] != '\n') return Scan::kOther;  // a CR inside the value
    ++p;
  } else if (*p != '\n') {
    return Scan::kOther;  // NUL
  }
  out.wire = static_cast<size_t>(p + 1 - begin);
  while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t')) --value_end;
  out.value = std::string_view(value, static_cast<size_t>(value_end - value));
  return Scan::kField;
}

struct HeaderLine {
  std::string_view name;
  std::string_view value;  // OWS trimmed
  bool continuation = false;  // obs-fold: the line starts with SP/HTAB; value is the whole line
};
bool ParseHeaderLine(std::string_view line, HeaderLine& out);

// chunk-size [ chunk-ext ]; nullopt when malformed or over 2^60.
std::optional<uint64_t> ParseChunkSizeLine(std::string_view line);
// Content-Length value; a list of identical values ("5, 5") is accepted as one (RFC 9110 §8.6).
std::optional<uint64_t> ParseContentLength(std::string_view value);

// Whether a comma-separated list (Connection, Transfer-Encoding, Expect) holds `token`.
bool ListHasToken(std::string_view list, std::string_view token);
// The Connection options the parser acts on (RFC 9112 §9.3, §9.6; RFC 9110 §7.8), found in one
// pass over the list (as ListHasToken would for each).
inline constexpr uint8_t kConnectionClose = 1;
inline constexpr uint8_t kConnectionKeepAlive = 2;
inline constexpr uint8_t kConnectionUpgrade = 4;
uint8_t ConnectionOptions(std::string_view list);
// The last element of a comma-separated list, OWS trimmed (for the final transfer coding).
std::string_view LastListElement(std::string_view list);

// Resynchronisation: where in `line` a plausible message start begins, or npos. A request
// line may follow body bytes with no line break ("...}GET / HTTP/1.1"), so the method is
// taken as the longest known-method suffix of the token when the token does not start the line.
size_t FindRequestStart(std::string_view line);
size_t FindResponseStart(std::string_view line);

// Whether `prefix` (the first bytes of a start line, possibly incomplete) can still become a
// valid request/status line; lets the parser reject binary garbage without buffering it.
bool PlausibleRequestPrefix(std::string_view prefix);
bool PlausibleResponsePrefix(std::string_view prefix);

}  // namespace threadline::http1::syntax
