// UTF-8 validity, for the encoders whose formats require it: OTLP JSON strings and protobuf
// `string` fields (receivers written in Go reject a whole request with one invalid string).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace threadline {

// Length of the valid UTF-8 sequence at the start of `s`, or 0 if it is not one (overlong
// forms, surrogates, code points above U+10FFFF and truncated sequences are invalid). `s` must
// not be empty.
size_t ValidUtf8Length(std::string_view s);

// Whether every byte of `s` is ASCII. Whole words at a time, the tail as one overlapping word:
// the encoders ask this of every key and string value of every span (about 36 per HTTP span,
// most under 24 bytes), so a byte loop over the tail cost more than the words.
inline bool AsciiOnly(std::string_view s) {
  const char* p = s.data();
  const size_t n = s.size();
  uint64_t bits = 0;
  if (n >= 8) {
    uint64_t w;
    for (size_t i = 0; i + 8 <= n; i += 8) {
      std::memcpy(&w, p + i, 8);
      bits |= w;
    }
    std::memcpy(&w, p + n - 8, 8);
    bits |= w;
  } else if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + n - 4, 4);
    bits = a | b;
  } else {
    for (size_t i = 0; i < n; ++i) bits |= static_cast<uint8_t>(p[i]);
  }
  return (bits & 0x8080808080808080ULL) == 0;
}

// `s` itself when it is valid UTF-8 (the common, ASCII-only case costs one pass); otherwise a
// copy in `scratch` with every byte that starts no valid sequence replaced by U+FFFD (as Go's
// encoders and our JSON writer do), and a view of that.
std::string_view ValidUtf8Slow(std::string_view s, std::string& scratch);
inline std::string_view ValidUtf8(std::string_view s, std::string& scratch) {
  return AsciiOnly(s) ? s : ValidUtf8Slow(s, scratch);
}

}  // namespace threadline
