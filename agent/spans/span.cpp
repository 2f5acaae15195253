#include "agent/spans/span.h"

#include <sys/random.h>

#include <algorithm>
#include <cstring>
#include <random>

namespace threadline {

namespace {
template <size_t N>
std::string ToHex(const std::array<uint8_t, N>& b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(N * 2, '0');
  for (size_t i = 0; i < N; ++i) {
    out[2 * i] = kDigits[b[i] >> 4];
    out[2 * i + 1] = kDigits[b[i] & 0xf];
  }
  return out;
}

template <size_t N>
bool AnyNonZero(const std::array<uint8_t, N>& b) {
  return std::any_of(b.begin(), b.end(), [](uint8_t x) { return x != 0; });
}

// Ids need to be unique, not secret: a per-thread generator seeded from the kernel's entropy.
template <size_t N>
void FillRandom(std::array<uint8_t, N>& b) {
  thread_local std::mt19937_64 gen = [] {
    uint64_t seed[2] = {0, 0};
    if (getrandom(seed, sizeof(seed), 0) != sizeof(seed)) seed[0] = std::random_device{}();
    std::seed_seq seq{seed[0], seed[0] >> 32, seed[1], seed[1] >> 32};
    return std::mt19937_64(seq);
  }();
  do {
    for (size_t i = 0; i < N; i += 8) {
      uint64_t v = gen();
      std::memcpy(b.data() + i, &v, std::min<size_t>(8, N - i));
    }
  } while (!AnyNonZero(b));
}
}  // namespace

std::string TraceId::Hex() const { return ToHex(bytes); }
TraceId TraceId::Random() {
  TraceId id;
  FillRandom(id.bytes);
  return id;
}

std::string SpanId::Hex() const { return ToHex(bytes); }
SpanId SpanId::Random() {
  SpanId id;
  FillRandom(id.bytes);
  return id;
}

std::string_view ToString(SpanKind k) {
  switch (k) {
    case SpanKind::kUnspecified: return "UNSPECIFIED";
    case SpanKind::kInternal: return "INTERNAL";
    case SpanKind::kServer: return "SERVER";
    case SpanKind::kClient: return "CLIENT";
    case SpanKind::kProducer: return "PRODUCER";
    case SpanKind::kConsumer: return "CONSUMER";
  }
  return "UNSPECIFIED";
}

std::string_view ToString(StatusCode c) {
  switch (c) {
    case StatusCode::kUnset: return "UNSET";
    case StatusCode::kOk: return "OK";
    case StatusCode::kError: return "ERROR";
  }
  return "UNSET";
}

const AttributeValue* FindAttribute(const Attributes& attrs, std::string_view key) {
  for (const auto& a : attrs)
    if (a.key.view() == key) return &a.value;
  return nullptr;
}

}  // namespace threadline
