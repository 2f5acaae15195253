#include "exporter/utf8.h"

#include <cstdint>
#include <cstring>

namespace threadline {

size_t ValidUtf8Length(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t c = b(0);
  if (c < 0x80) return 1;
  size_t len;
  uint8_t lo = 0x80, hi = 0xbf;  // allowed range of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (s.size() < len) return 0;
  if (b(1) < lo || b(1) > hi) return 0;
  for (size_t i = 2; i < len; ++i)
    if (b(i) < 0x80 || b(i) > 0xbf) return 0;
  return len;
}

// Not ASCII only (ValidUtf8 checked): find the first invalid byte, if any.
std::string_view ValidUtf8Slow(std::string_view s, std::string& scratch) {
  size_t i = 0;
  // ASCII eight bytes at a time: nearly every string we send is ASCII only.
  constexpr uint64_t kHighBits = 0x8080808080808080ULL;
  for (uint64_t word; i + 8 <= s.size(); i += 8) {
    std::memcpy(&word, s.data() + i, 8);
    if (word & kHighBits) break;
  }
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = ValidUtf8Length(s.substr(i));
    if (n == 0) break;
    i += n;
  }
  if (i == s.size()) return s;
  scratch.assign(s.data(), i);
  while (i < s.size()) {
    const size_t n = ValidUtf8Length(s.substr(i));
    if (n == 0) {
      scratch += "\xef\xbf\xbd";  // U+FFFD
      ++i;
    } else {
      scratch.append(s.data() + i, n);
      i += n;
    }
  }
  return scratch;
}

}  // namespace threadline
