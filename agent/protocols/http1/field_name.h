// The HTTP/1 header fields the agent knows by name, and how a field line's name is matched to
// one: once per field line, by its length and third byte (a table lookup) and then one masked
// compare of at most three words, instead of comparing the name with each known name in turn
// (the parser used to compare every name with five framing fields and then the stored ones).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "agent/common/raw_bytes.h"

namespace threadline::http1 {

// The framing fields the parser interprets (Content-Length, Transfer-Encoding, Connection,
// Upgrade, Expect) and the fields a Message stores for the agent's readers (IsReadField).
enum class FieldName : uint8_t {
  kOther,
  kContentLength,
  kTransferEncoding,
  kConnection,
  kUpgrade,
  kExpect,
  kHost,
  kUserAgent,
  kTraceparent,
  kTracestate,
  kContentType,
  kXForwardedFor,
  kXRequestId,
  kXCorrelationId,
  kRequestId,
  kXAmznTraceId,
  kXB3TraceId,
};

constexpr uint32_t Bit(FieldName f) { return uint32_t{1} << static_cast<unsigned>(f); }

namespace field_name_detail {

struct Known {
  std::string_view lower;
  FieldName field;
};
inline constexpr std::array<Known, 16> kKnown = {{
    {"content-length", FieldName::kContentLength},
    {"transfer-encoding", FieldName::kTransferEncoding},
    {"connection", FieldName::kConnection},
    {"upgrade", FieldName::kUpgrade},
    {"expect", FieldName::kExpect},
    {"host", FieldName::kHost},
    {"user-agent", FieldName::kUserAgent},
    {"traceparent", FieldName::kTraceparent},
    {"tracestate", FieldName::kTracestate},
    {"content-type", FieldName::kContentType},
    {"x-forwarded-for", FieldName::kXForwardedFor},
    {"x-request-id", FieldName::kXRequestId},
    {"x-correlation-id", FieldName::kXCorrelationId},
    {"request-id", FieldName::kRequestId},
    {"x-amzn-trace-id", FieldName::kXAmznTraceId},
    {"x-b3-traceid", FieldName::kXB3TraceId},
}};
inline constexpr size_t kMinSize = 4;
inline constexpr size_t kMaxSize = 17;

// A name is compared as words of `width` bytes (8, or 4 under 8 bytes): the first, the last and
// (for 8 and more) the one at min(8, size - 8), overlapping where the size is not a multiple of
// the width; they cover every size up to 24.
constexpr size_t Width(size_t size) { return size >= 8 ? 8 : 4; }
constexpr size_t MiddleOffset(size_t size) { return size >= 16 ? 8 : size - Width(size); }

// Each word of a known name, little-endian, with a mask that sets bit 5 of its letters: a word
// of the name being matched, OR-ed with the mask, equals the known word exactly when the bytes
// are equal ignoring ASCII case (a letter's two cases differ only in bit 5; the other bytes of
// the known names, '-' and digits, are compared exactly).
struct Pattern {
  uint64_t first = 0, last = 0, middle = 0;
  uint64_t first_mask = 0, last_mask = 0, middle_mask = 0;
};
constexpr void WordOf(std::string_view lower, size_t at, uint64_t& word, uint64_t& mask) {
  for (size_t i = 0; i < Width(lower.size()); ++i) {
    const auto c = static_cast<uint8_t>(lower[at + i]);
    word |= uint64_t{c} << (8 * i);
    if (c >= 'a' && c <= 'z') mask |= uint64_t{0x20} << (8 * i);
  }
}
constexpr Pattern PatternOf(std::string_view lower) {
  Pattern p;
  WordOf(lower, 0, p.first, p.first_mask);
  WordOf(lower, lower.size() - Width(lower.size()), p.last, p.last_mask);
  WordOf(lower, MiddleOffset(lower.size()), p.middle, p.middle_mask);
  return p;
}
inline constexpr std::array<Pattern, kKnown.size()> kPatterns = [] {
  std::array<Pattern, kKnown.size()> t{};
  for (size_t i = 0; i < kKnown.size(); ++i) t[i] = PatternOf(kKnown[i].lower);
  return t;
}();

// [size][third byte & 0x1f]: 1 + the index in kKnown of the one known name that may match, or 0.
constexpr size_t SlotOf(size_t size, char third) {
  return size * 32 + (static_cast<uint8_t>(third) & 0x1f);
}
inline constexpr std::array<uint8_t, (kMaxSize + 1) * 32> kSlots = [] {
  std::array<uint8_t, (kMaxSize + 1) * 32> t{};
  for (size_t i = 0; i < kKnown.size(); ++i) t[SlotOf(kKnown[i].lower.size(), kKnown[i].lower[2])] =
      static_cast<uint8_t>(i + 1);
  return t;
}();
// No two known names share a slot (else one would never be found).
constexpr bool SlotsDistinct() {
  for (size_t i = 0; i < kKnown.size(); ++i) {
    if (kKnown[i].lower.size() < kMinSize || kKnown[i].lower.size() > kMaxSize) return false;
    if (kSlots[SlotOf(kKnown[i].lower.size(), kKnown[i].lower[2])] != i + 1) return false;
  }
  return true;
}
static_assert(SlotsDistinct());

// Whether the `n` bytes at `s` equal the lower-case word PatternOf(lower) was made of, ignoring
// ASCII case (exact for any bytes); `n` must be lower's size (4 to 24).
inline bool Matches(const char* s, size_t n, const Pattern& p) {
  uint64_t diff;
  if (n >= 8) {
    diff = ((raw::GetLittle<uint64_t>(s) | p.first_mask) ^ p.first) |
           ((raw::GetLittle<uint64_t>(s + n - 8) | p.last_mask) ^ p.last) |
           ((raw::GetLittle<uint64_t>(s + MiddleOffset(n)) | p.middle_mask) ^ p.middle);
  } else {
    diff = ((raw::GetLittle<uint32_t>(s) | p.first_mask) ^ p.first) | ((raw::GetLittle<uint32_t>(s + n - 4) | p.last_mask) ^ p.last);
  }
  return diff == 0;
}

}  // namespace field_name_detail

// ASCII case-insensitive and exact for any bytes; kOther for every name not known. With a
// literal name, inlined, it folds to a constant.
inline FieldName IdentifyField(std::string_view name) {
  using namespace field_name_detail;
  const size_t n = name.size();
  if (n - kMinSize > kMaxSize - kMinSize) return FieldName::kOther;  // (unsigned: n < kMinSize too)
  const uint8_t slot = kSlots[SlotOf(n, name[2])];
  if (slot == 0) return FieldName::kOther;
  return Matches(name.data(), n, kPatterns[slot - 1]) ? kKnown[slot - 1].field : FieldName::kOther;
}

// Whether the agent reads field `field` of a request (`request`) or a response: see IsReadField
// in message.h.
constexpr uint32_t kReadRequestFields =
    Bit(FieldName::kHost) | Bit(FieldName::kUpgrade) | Bit(FieldName::kUserAgent) |
    Bit(FieldName::kTraceparent) | Bit(FieldName::kTracestate) | Bit(FieldName::kContentType) |
    Bit(FieldName::kXForwardedFor) | Bit(FieldName::kXRequestId) | Bit(FieldName::kXCorrelationId) |
    Bit(FieldName::kRequestId) | Bit(FieldName::kXAmznTraceId) | Bit(FieldName::kXB3TraceId);
constexpr uint32_t kReadResponseFields = Bit(FieldName::kUpgrade);

}  // namespace threadline::http1
