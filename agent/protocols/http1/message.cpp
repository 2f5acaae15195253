#include "agent/protocols/http1/message.h"


namespace threadline::http1 {

namespace {

std::string_view Cap(std::string_view s, size_t cap, bool& truncated) {
  if (s.size() <= cap) return s;
  truncated = true;
  return s.substr(0, cap);
}

}  // namespace

void HeaderList::Add(std::string_view name, std::string_view value) {
  if (fields_.size() >= kMaxHeaders) {
    ++dropped_fields_;
    last_dropped_ = true;
    return;
  }
  last_dropped_ = false;
  if (fields_.empty()) {
    fields_.reserve(kInitialFields);
    text_.reserve(kInitialTextBytes);
  }
  name = Cap(name, kMaxNameBytes, values_truncated_);
  value = Cap(value, kMaxValueBytes, values_truncated_);
  fields_.push_back(Field{static_cast<uint32_t>(text_.size()), static_cast<uint16_t>(name.size()),
                          static_cast<uint32_t>(value.size())});
  text_.append(name);
  text_.append(value);
}

void HeaderList::AppendToLast(std::string_view continuation) {
  if (fields_.empty() || last_dropped_) return;
  // The last field's value ends text_, so the continuation is appended in place.
  Field& last = fields_.back();
  if (last.value_len >= kMaxValueBytes) {
    values_truncated_ = true;
    return;
  }
  size_t room = kMaxValueBytes - last.value_len;
  if (last.value_len > 0 && !continuation.empty()) {
    text_.push_back(' ');
    ++last.value_len;
    --room;
  }
  continuation = Cap(continuation, room, values_truncated_);
  text_.append(continuation);
  last.value_len += static_cast<uint32_t>(continuation.size());
}

std::optional<Header> HeaderList::Find(std::string_view name) const {
  for (size_t i = 0; i < fields_.size(); ++i) {
    const Field& f = fields_[i];
    if (f.name_len == name.size() &&
        EqualsIgnoreCase(std::string_view(text_).substr(f.name_at, f.name_len), name))
      return (*this)[i];
  }
  return std::nullopt;
}

std::optional<std::string_view> HeaderList::Get(std::string_view name) const {
  std::optional<Header> h = Find(name);
  if (!h) return std::nullopt;
  return h->value;
}

std::string_view ToString(Framing f) {
  switch (f) {
    case Framing::kNone: return "none";
    case Framing::kContentLength: return "content_length";
    case Framing::kChunked: return "chunked";
    case Framing::kUntilClose: return "until_close";
  }
  return "unknown";
}

}  // namespace threadline::http1
