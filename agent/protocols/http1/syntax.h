// HTTP/1.x line grammar (RFC 9112 §3, §4, §5, §7.1): pure functions over one line, shared by
// the incremental parser, its resynchronisation and protocol detection.
//
// A "line" here is the bytes before LF with one trailing CR removed (bare LF is tolerated).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

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
