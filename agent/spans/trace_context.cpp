#include "agent/spans/trace_context.h"

#include <algorithm>
#include <array>
#include <vector>

namespace threadline {

namespace {

constexpr size_t kVersion00Length = 55;  // 2 + 1 + 32 + 1 + 16 + 1 + 2

// Lowercase only: the spec forbids uppercase in every traceparent field.
int LowerHexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

template <size_t N>
bool DecodeLowerHex(std::string_view hex, std::array<uint8_t, N>& out) {
  if (hex.size() != 2 * N) return false;
  for (size_t i = 0; i < N; ++i) {
    int hi = LowerHexValue(hex[2 * i]);
    int lo = LowerHexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

std::optional<uint8_t> ParseHexByte(std::string_view two) {
  std::array<uint8_t, 1> b{};
  if (!DecodeLowerHex(two, b)) return std::nullopt;
  return b[0];
}

bool IsOws(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

bool IsLcAlpha(char c) { return c >= 'a' && c <= 'z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsKeyChar(char c) {
  return IsLcAlpha(c) || IsDigit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

// Spec grammar:
//   simple-key       = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
//   multi-tenant-key = tenant-id "@" system-id
//   tenant-id        = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
//   system-id        = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
bool IsValidTraceStateKey(std::string_view key) {
  size_t at = key.find('@');
  auto rest_ok = [](std::string_view s) { return std::all_of(s.begin(), s.end(), IsKeyChar); };
  if (at == std::string_view::npos) {
    return !key.empty() && key.size() <= 256 && IsLcAlpha(key[0]) && rest_ok(key.substr(1));
  }
  std::string_view tenant = key.substr(0, at);
  std::string_view system = key.substr(at + 1);
  return !tenant.empty() && tenant.size() <= 241 && (IsLcAlpha(tenant[0]) || IsDigit(tenant[0])) &&
         rest_ok(tenant.substr(1)) && !system.empty() && system.size() <= 14 &&
         IsLcAlpha(system[0]) && rest_ok(system.substr(1));
}

// value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E
bool IsValidTraceStateValue(std::string_view value) {
  if (value.empty() || value.size() > 256 || value.back() == ' ') return false;
  return std::all_of(value.begin(), value.end(), [](char c) {
    return c >= 0x20 && c <= 0x7e && c != ',' && c != '=';
  });
}

}  // namespace

std::optional<TraceId> TraceIdFromHex(std::string_view hex) {
  TraceId id;
  if (!DecodeLowerHex(hex, id.bytes) || !id.valid()) return std::nullopt;
  return id;
}

std::optional<SpanId> SpanIdFromHex(std::string_view hex) {
  SpanId id;
  if (!DecodeLowerHex(hex, id.bytes) || !id.valid()) return std::nullopt;
  return id;
}

std::optional<TraceParent> ParseTraceParent(std::string_view value) {
  value = TrimOws(value);
  if (value.size() < kVersion00Length) return std::nullopt;
  auto version = ParseHexByte(value.substr(0, 2));
  if (!version || *version == 0xff) return std::nullopt;
  if (*version == 0x00 && value.size() != kVersion00Length) return std::nullopt;
  // A future version may append fields, but only after a '-'; anything glued to the flags means
  // the layout is not the one we know.
  if (value.size() > kVersion00Length && value[kVersion00Length] != '-') return std::nullopt;
  if (value[2] != '-' || value[35] != '-' || value[52] != '-') return std::nullopt;

  auto trace_id = TraceIdFromHex(value.substr(3, 32));
  auto parent_id = SpanIdFromHex(value.substr(36, 16));
  auto flags = ParseHexByte(value.substr(53, 2));
  if (!trace_id || !parent_id || !flags) return std::nullopt;
  return TraceParent{*trace_id, *parent_id, *flags, *version};
}

std::string FormatTraceParent(const TraceId& trace_id, const SpanId& span_id, uint8_t flags) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(kVersion00Length);
  out += "00-";
  out += trace_id.Hex();
  out += '-';
  out += span_id.Hex();
  out += '-';
  out += kDigits[flags >> 4];
  out += kDigits[flags & 0xf];
  return out;
}

std::string FormatTraceParent(const TraceParent& tp) {
  return FormatTraceParent(tp.trace_id, tp.parent_id, tp.flags);
}

bool IsValidTraceState(std::string_view value) {
  std::vector<std::string_view> keys;
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == std::string_view::npos) comma = value.size();
    std::string_view member = TrimOws(value.substr(start, comma - start));
    start = comma + 1;
    if (member.empty()) continue;  // the grammar allows empty list-members
    size_t eq = member.find('=');
    if (eq == std::string_view::npos) return false;
    std::string_view key = member.substr(0, eq);
    if (!IsValidTraceStateKey(key) || !IsValidTraceStateValue(member.substr(eq + 1))) return false;
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) return false;
    keys.push_back(key);
    if (keys.size() > kMaxTraceStateMembers) return false;
  }
  return true;
}

std::string CombineTraceState(std::span<const std::string_view> lines) {
  std::string out;
  for (std::string_view line : lines) {
    line = TrimOws(line);
    if (line.empty()) continue;
    if (!out.empty()) out += ',';
    out += line;
  }
  return out;
}

std::optional<TraceContext> ExtractTraceContext(std::span<const std::string_view> traceparent_values,
                                                std::span<const std::string_view> tracestate_values) {
  if (traceparent_values.size() != 1) return std::nullopt;
  auto parent = ParseTraceParent(traceparent_values[0]);
  if (!parent) return std::nullopt;
  TraceContext ctx{*parent, CombineTraceState(tracestate_values)};
  if (!IsValidTraceState(ctx.trace_state)) ctx.trace_state.clear();
  return ctx;
}

}  // namespace threadline
