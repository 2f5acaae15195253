// Writing bytes through a raw pointer into room ensured beforehand: the varints and short copies
// that both of the agent's binary encoders need, the OTLP protobuf writer
// (exporter/protobuf_writer.h) and the trace store's packed attributes
// (agent/traces/stored_span.cpp). Each Put returns the pointer past what it wrote.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace threadline::raw {

// Bytes of `v` as a base-128 varint (protobuf's, LEB128): 1 below 128.
constexpr size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) [[unlikely]] {
    v >>= 7;
    ++n;
  }
  return n;
}

inline char* PutVarint(char* p, uint64_t v) {
  while (v >= 0x80) [[unlikely]] {
    *p++ = static_cast<char>(static_cast<uint8_t>(v) | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

// `v` read little-endian from `p` (any alignment).
template <typename T>
inline T GetLittle(const char* p) {
  static_assert(std::is_unsigned_v<T>);
  T v;
  std::memcpy(&v, p, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) {
    if constexpr (sizeof(T) == 8) v = __builtin_bswap64(v);
    if constexpr (sizeof(T) == 4) v = __builtin_bswap32(v);
    if constexpr (sizeof(T) == 2) v = __builtin_bswap16(v);
  }
  return v;
}

// `n` bytes of `s`, and with kSeen the OR of every byte copied into `seen` (from the words the
// copy loads anyway: `seen & 0x8080808080808080` is zero iff the bytes are ASCII, which the OTLP
// encoder must know of every string). Keys and values are mostly under 32 bytes, where a call to
// memcpy (and its size dispatch) costs more than the copy: those are two overlapping loads and
// stores of the widest word that fits, touching no byte outside either range.
template <bool kSeen>
[[gnu::always_inline]] inline char* PutBytesSeen(char* p, const char* s, size_t n, uint64_t& seen) {
  if (n >= 8) {
    if (n > 16) {
      if (n > 32) {
        std::memcpy(p, s, n);
        if constexpr (kSeen) {
          for (size_t i = 0; i + 8 <= n; i += 8) seen |= GetLittle<uint64_t>(s + i);
          seen |= GetLittle<uint64_t>(s + n - 8);
        }
        return p + n;
      }
      uint64_t a[2], b[2];
      std::memcpy(a, s, 16);
      std::memcpy(b, s + n - 16, 16);
      std::memcpy(p, a, 16);
      std::memcpy(p + n - 16, b, 16);
      if constexpr (kSeen) seen |= a[0] | a[1] | b[0] | b[1];
      return p + n;
    }
    uint64_t a, b;
    std::memcpy(&a, s, 8);
    std::memcpy(&b, s + n - 8, 8);
    std::memcpy(p, &a, 8);
    std::memcpy(p + n - 8, &b, 8);
    if constexpr (kSeen) seen |= a | b;
  } else if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, s, 4);
    std::memcpy(&b, s + n - 4, 4);
    std::memcpy(p, &a, 4);
    std::memcpy(p + n - 4, &b, 4);
    if constexpr (kSeen) seen |= a | b;
  } else if (n > 0) {
    // first, middle and last are every byte of a string of 1 to 3.
    const auto first = static_cast<uint8_t>(s[0]), middle = static_cast<uint8_t>(s[n / 2]),
               last = static_cast<uint8_t>(s[n - 1]);
    p[0] = static_cast<char>(first);
    p[n / 2] = static_cast<char>(middle);
    p[n - 1] = static_cast<char>(last);
    if constexpr (kSeen) seen |= first | middle | last;
  }
  return p + n;
}

inline char* PutBytes(char* p, const char* s, size_t n) {
  uint64_t unused = 0;
  return PutBytesSeen<false>(p, s, n, unused);
}

// `v` little-endian, as protobuf's fixed64/fixed32 and the packed attributes store numbers.
template <typename T>
inline char* PutLittle(char* p, T v) {
  static_assert(std::is_integral_v<T>);
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(p, &v, sizeof(T));
  } else {
    for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<char>(static_cast<uint8_t>(v >> (8 * i)));
  }
  return p + sizeof(T);
}

}  // namespace threadline::raw
