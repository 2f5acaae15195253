#include "agent/traces/stored_span.h"

#include <cstring>
#include <type_traits>
#include <variant>

namespace threadline {

namespace {

// Layout of one entry: tag byte, key length (LEB128), key, then the value: a length (LEB128)
// and bytes for strings, 8 little-endian bytes for ints and doubles, one byte for bools.
void AppendLength(size_t n, std::string& out) {
  while (n >= 0x80) {
    out += static_cast<char>((n & 0x7f) | 0x80);
    n >>= 7;
  }
  out += static_cast<char>(n);
}

void AppendEntry(std::string_view key, const AttributeValue& value, std::string& out) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          out += static_cast<char>(packed_detail::kString);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          out += static_cast<char>(packed_detail::kInt);
        } else if constexpr (std::is_same_v<T, double>) {
          out += static_cast<char>(packed_detail::kDouble);
        } else {
          out += static_cast<char>(packed_detail::kBool);
        }
        AppendLength(key.size(), out);
        out += key;
        if constexpr (std::is_same_v<T, std::string>) {
          AppendLength(v.size(), out);
          out += v;
        } else if constexpr (std::is_same_v<T, bool>) {
          out += static_cast<char>(v ? 1 : 0);
        } else {
          char raw[8];
          std::memcpy(raw, &v, 8);
          out.append(raw, 8);
        }
      },
      value);
}

size_t EntrySize(std::string_view key, const AttributeValue& value) {
  size_t n = 1 + 2 + key.size();
  if (const auto* s = std::get_if<std::string>(&value)) return n + 3 + s->size();
  return n + 8;
}

}  // namespace

namespace packed_detail {

bool ReadLength(std::string_view& in, size_t& len) {
  len = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    if (in.empty()) return false;
    const auto b = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    len |= static_cast<size_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

bool Next(std::string_view& in, std::string_view& key, AttributeValue& value) {
  const auto tag = static_cast<uint8_t>(in.front());
  in.remove_prefix(1);
  size_t len;
  if (!ReadLength(in, len) || len > in.size()) return false;
  key = in.substr(0, len);
  in.remove_prefix(len);
  switch (tag) {
    case kString:
      if (!ReadLength(in, len) || len > in.size()) return false;
      value = std::string(in.substr(0, len));
      in.remove_prefix(len);
      return true;
    case kInt:
    case kDouble: {
      if (in.size() < 8) return false;
      if (tag == kInt) {
        int64_t v;
        std::memcpy(&v, in.data(), 8);
        value = v;
      } else {
        double v;
        std::memcpy(&v, in.data(), 8);
        value = v;
      }
      in.remove_prefix(8);
      return true;
    }
    case kBool:
      if (in.empty()) return false;
      value = in.front() != 0;
      in.remove_prefix(1);
      return true;
    default:
      return false;
  }
}

}  // namespace packed_detail

void PackAttributes(const Attributes& attrs, const std::vector<SpanEvent>& events, std::string& out) {
  size_t need = 0;
  for (const auto& a : attrs) need += EntrySize(a.key, a.value);
  for (const auto& e : events)
    for (const auto& a : e.attributes) need += EntrySize(a.key, a.value) + 7 + e.name.size();
  out.reserve(out.size() + need);
  for (const auto& a : attrs) AppendEntry(a.key, a.value, out);
  std::string key;
  for (const auto& e : events) {
    for (const auto& a : e.attributes) {
      key.assign("event.").append(e.name).append(".").append(a.key);
      AppendEntry(key, a.value, out);
    }
  }
}

StoredSpan StoredSpan::From(const Span& span) {
  StoredSpan s;
  s.span_id = span.span_id;
  s.parent_span_id = span.parent_span_id;
  s.start_unix_ns = span.start_unix_ns;
  s.end_unix_ns = span.end_unix_ns;
  s.kind = span.kind;
  s.status = span.status;
  s.sampled = span.sampled();
  s.pid = span.pid;
  s.resource = span.resource;
  s.name = span.name;
  s.status_message = span.status_message;
  PackAttributes(span.attributes, span.events, s.packed_attributes);
  return s;
}

std::string_view StoredSpan::service() const {
  if (resource != nullptr)
    if (const AttributeValue* v = FindAttribute(resource->attributes, "service.name"))
      if (const auto* s = std::get_if<std::string>(v); s != nullptr && !s->empty()) return *s;
  return "unknown_service";
}

std::string_view StoredSpan::StringAttribute(std::string_view key) const {
  // Walks the packed bytes without materialising values other than the one asked for.
  std::string_view in = packed_attributes;
  while (!in.empty()) {
    const auto tag = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    size_t len;
    if (!packed_detail::ReadLength(in, len) || len > in.size()) return {};
    const std::string_view k = in.substr(0, len);
    in.remove_prefix(len);
    if (tag == packed_detail::kString) {
      if (!packed_detail::ReadLength(in, len) || len > in.size()) return {};
      if (k == key) return in.substr(0, len);
      in.remove_prefix(len);
    } else if (tag == packed_detail::kBool) {
      if (in.empty()) return {};
      in.remove_prefix(1);
    } else if (tag == packed_detail::kInt || tag == packed_detail::kDouble) {
      if (in.size() < 8) return {};
      in.remove_prefix(8);
    } else {
      return {};
    }
  }
  return {};
}

size_t StoredSpan::MemoryBytes() const {
  // A std::string's heap block exists only past the small-string buffer (15 chars in libstdc++).
  auto heap = [](const std::string& s) { return s.capacity() > 15 ? s.capacity() + 1 : 0; };
  return sizeof(StoredSpan) + heap(name) + heap(status_message) + heap(packed_attributes);
}

}  // namespace threadline
