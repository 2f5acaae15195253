// Protocol-buffers wire format written straight into a ByteBuffer, for encoders that map our
// own structs to a message without building protobuf message objects (otlp_protobuf.h).
//
// The output is canonical, i.e. what protobuf's SerializeToString would write for the same
// field values when the caller writes fields in field-number order and skips proto3 default
// values itself: minimal varints, and nested messages' lengths as minimal varints too. A nested
// message's length is only known after its contents: BeginMessage() reserves room for the
// length the caller expects (`length_bytes`), EndMessage() writes it and moves the contents if
// the guess was wrong (once per message; a good guess makes it a no-op).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "exporter/byte_writer.h"

namespace threadline::protobuf {

enum class WireType : uint8_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

constexpr size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

constexpr uint32_t Tag(uint32_t field, WireType type) {
  return (field << 3) | static_cast<uint32_t>(type);
}

// Raw writes through a local pointer, for runs whose room was ensured at once (Writer::BeginRaw).
// Each returns the pointer past what it wrote.
inline char* PutVarint(char* p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<char>(static_cast<uint8_t>(v) | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

// `n` bytes of `s`. Keys and values are mostly under 32 bytes, where a call to memcpy (and its
// size dispatch) costs more than the copy: those are two overlapping loads and stores of the
// widest word that fits, touching no byte outside either range.
inline char* PutBytes(char* p, const char* s, size_t n) {
  if (n >= 8) {
    if (n > 16) {
      if (n > 32) {
        std::memcpy(p, s, n);
        return p + n;
      }
      char a[16], b[16];
      std::memcpy(a, s, 16);
      std::memcpy(b, s + n - 16, 16);
      std::memcpy(p, a, 16);
      std::memcpy(p + n - 16, b, 16);
      return p + n;
    }
    uint64_t a, b;
    std::memcpy(&a, s, 8);
    std::memcpy(&b, s + n - 8, 8);
    std::memcpy(p, &a, 8);
    std::memcpy(p + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, s, 4);
    std::memcpy(&b, s + n - 4, 4);
    std::memcpy(p, &a, 4);
    std::memcpy(p + n - 4, &b, 4);
  } else if (n > 0) {
    const char first = s[0], middle = s[n / 2], last = s[n - 1];
    p[0] = first;
    p[n / 2] = middle;
    p[n - 1] = last;
  }
  return p + n;
}

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

class Writer {
 public:
  explicit Writer(ByteBuffer& out) : w_(out) {}

  void VarintField(uint32_t field, uint64_t v) {
    w_.Ensure(kMaxVarint * 2);
    PutVarint(Tag(field, WireType::kVarint));
    PutVarint(v);
  }
  // int64 fields: negative values are ten-byte two's complement varints, as protobuf writes them.
  void Int64Field(uint32_t field, int64_t v) { VarintField(field, static_cast<uint64_t>(v)); }
  void BoolField(uint32_t field, bool v) { VarintField(field, v ? 1 : 0); }

  void Fixed64Field(uint32_t field, uint64_t v) {
    w_.Ensure(kMaxVarint + 8);
    PutVarint(Tag(field, WireType::kFixed64));
    PutLittle(v);
  }
  void Fixed32Field(uint32_t field, uint32_t v) {
    w_.Ensure(kMaxVarint + 4);
    PutVarint(Tag(field, WireType::kFixed32));
    PutLittle(v);
  }
  void DoubleField(uint32_t field, double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    Fixed64Field(field, bits);
  }

  // A bytes field, or a string field whose value is known to be valid UTF-8.
  void BytesField(uint32_t field, std::string_view v) {
    w_.Ensure(kMaxVarint * 2 + v.size());
    PutVarint(Tag(field, WireType::kLengthDelimited));
    PutVarint(v.size());
    w_.PutUnchecked(v);
  }

  // The tag of a length-delimited field and its length, known in advance; the caller writes
  // exactly `length` bytes of contents next.
  void LengthPrefix(uint32_t field, size_t length) {
    w_.Ensure(kMaxVarint * 2);
    PutVarint(Tag(field, WireType::kLengthDelimited));
    PutVarint(length);
  }

  // Starts a nested message; `length_bytes` (1 to 3) is the varint size its length is expected
  // to take (1: below 128 bytes, 2: below 16 KiB, 3: below 2 MiB). Returns a mark for
  // EndMessage().
  size_t BeginMessage(uint32_t field, size_t length_bytes) {
    w_.Ensure(kMaxVarint + length_bytes);
    PutVarint(Tag(field, WireType::kLengthDelimited));
    const size_t at = w_.offset();
    w_.set_offset(at + length_bytes);
    return at | (length_bytes << kReservedShift);
  }
  void EndMessage(size_t mark);

  // Room for `n` bytes, and a pointer to write them through with the raw Put* functions above;
  // EndRaw() with the pointer past the last byte written (at most `n` after the start).
  char* BeginRaw(size_t n) {
    w_.Ensure(n);
    return w_.pos();
  }
  void EndRaw(char* p) { w_.set_pos(p); }

 private:
  static constexpr size_t kMaxVarint = 10;
  // The reserved length size travels in the mark's top bits (offsets stay far below 2^56).
  static constexpr unsigned kReservedShift = 56;

  void PutVarint(uint64_t v) {
    while (v >= 0x80) {
      w_.PutUnchecked(static_cast<char>(static_cast<uint8_t>(v) | 0x80));
      v >>= 7;
    }
    w_.PutUnchecked(static_cast<char>(v));
  }
  template <typename T>
  void PutLittle(T v) {
    w_.set_pos(protobuf::PutLittle(w_.pos(), v));
  }

  ByteWriter w_;
};

}  // namespace threadline::protobuf
