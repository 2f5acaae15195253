#include "agent/traces/stored_span.h"

#include <cstring>
#include <type_traits>
#include <variant>

#include "agent/common/raw_bytes.h"

namespace threadline {

namespace {

// Layout of one entry: tag byte, key length (LEB128), key, then the value: a length (LEB128)
// and bytes for strings, 8 little-endian bytes for ints and doubles, one byte for bools.
// Packing runs for every span the agent builds (the store is a tee of the span pipeline), so
// it sizes the buffer once and writes through a pointer.
// Lengths are varints and strings short copies (agent/common/raw_bytes.h, shared with the
// OTLP encoder): most keys and values are 4-32 bytes, copied with overlapping word moves
// instead of a call to memcpy each (three per attribute, ~60 per HTTP span).
using raw::PutBytes;
using raw::PutVarint;
using raw::VarintSize;

char* Put(std::string_view v, char* p) { return PutBytes(p, v.data(), v.size()); }

[[gnu::always_inline]] inline size_t EntrySize(size_t key_size, const AttributeValue& value) {
  const size_t head = 1 + VarintSize(key_size) + key_size;
  switch (value.index()) {
    case 0: {
      const size_t n = std::get<0>(value).size();
      return head + VarintSize(n) + n;
    }
    case 3: return head + 1;  // bool
    default: return head + 8;  // int64_t, double
  }
}

// One entry; the key is key_head followed by key_tail (an event attribute's prefix and name).
// Inlined into the two loops of PackAttributes: as a call (GCC made it one) its prologue and the
// key_tail test cost ~15 of its ~45 instructions per attribute.
[[gnu::always_inline]] inline char* PutEntry(std::string_view key_head, std::string_view key_tail,
                                             const AttributeValue& value, char* p) {
  static_assert(std::is_same_v<std::variant_alternative_t<0, AttributeValue>, std::string> &&
                std::is_same_v<std::variant_alternative_t<1, AttributeValue>, int64_t> &&
                std::is_same_v<std::variant_alternative_t<2, AttributeValue>, double> &&
                std::is_same_v<std::variant_alternative_t<3, AttributeValue>, bool>);
  static constexpr char kTags[] = {packed_detail::kString, packed_detail::kInt, packed_detail::kDouble,
                                   packed_detail::kBool};
  const size_t index = value.index();
  *p++ = kTags[index];
  p = PutVarint(p, key_head.size() + key_tail.size());
  p = Put(key_head, p);
  if (!key_tail.empty()) p = Put(key_tail, p);
  switch (index) {
    case 0: {
      const std::string& str = std::get<0>(value);
      p = PutVarint(p, str.size());
      return Put(str, p);
    }
    case 1: std::memcpy(p, &std::get<1>(value), 8); return p + 8;
    case 2: std::memcpy(p, &std::get<2>(value), 8); return p + 8;
    default: *p++ = std::get<3>(value) ? 1 : 0; return p;
  }
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
  // Event attributes are keyed "event.<event name>.<key>".
  auto event_prefix = [](const SpanEvent& e) { return 7 + e.name.size(); };
  size_t need = 0;
  for (const auto& a : attrs) need += EntrySize(a.key.view().size(), a.value);
  for (const auto& e : events)
    for (const auto& a : e.attributes) need += EntrySize(event_prefix(e) + a.key.view().size(), a.value);
  const size_t at = out.size();
  out.resize(at + need);
  char* p = out.data() + at;
  for (const auto& a : attrs) p = PutEntry(a.key.view(), {}, a.value, p);
  std::string prefix;
  for (const auto& e : events) {
    prefix.assign("event.").append(e.name).append(".");
    for (const auto& a : e.attributes) p = PutEntry(prefix, a.key.view(), a.value, p);
  }
}

StoredSpan StoredSpan::From(const Span& span) {
  StoredSpan s;
  s.Assign(span);
  return s;
}

void StoredSpan::Assign(const Span& span) {
  span_id = span.span_id;
  parent_span_id = span.parent_span_id;
  start_unix_ns = span.start_unix_ns;
  end_unix_ns = span.end_unix_ns;
  kind = span.kind;
  status = span.status;
  sampled = span.sampled();
  pid = span.pid;
  resource = span.resource;
  name.assign(span.name);
  status_message.assign(span.status_message);
  packed_attributes.clear();
  PackAttributes(span.attributes, span.events, packed_attributes);
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
