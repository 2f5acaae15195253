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

#include "agent/common/raw_bytes.h"
#include "exporter/byte_writer.h"

namespace threadline::protobuf {

enum class WireType : uint8_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

using raw::VarintSize;

constexpr uint32_t Tag(uint32_t field, WireType type) {
  return (field << 3) | static_cast<uint32_t>(type);
}

// Raw writes through a local pointer, for runs whose room was ensured at once (Writer::BeginRaw).
using raw::PutBytes;
using raw::PutLittle;
using raw::PutVarint;

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

  // Through a local pointer (raw_bytes.h), not a store of the writer's position per byte.
  void PutVarint(uint64_t v) { w_.set_pos(raw::PutVarint(w_.pos(), v)); }
  template <typename T>
  void PutLittle(T v) {
    w_.set_pos(raw::PutLittle(w_.pos(), v));
  }

  ByteWriter w_;
};

}  // namespace threadline::protobuf
