#include "agent/protocols/http1/message.h"

#include <algorithm>

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
  Header& h = fields_.emplace_back();
  h.name.assign(Cap(name, kMaxNameBytes, values_truncated_));
  h.value.assign(Cap(value, kMaxValueBytes, values_truncated_));
}

void HeaderList::AppendToLast(std::string_view continuation) {
  if (fields_.empty() || last_dropped_) return;
  std::string& v = fields_.back().value;
  if (v.size() >= kMaxValueBytes) {
    values_truncated_ = true;
    return;
  }
  size_t room = kMaxValueBytes - v.size();
  if (!v.empty() && !continuation.empty()) {
    v.push_back(' ');
    --room;
  }
  v.append(Cap(continuation, room, values_truncated_));
}

const Header* HeaderList::Find(std::string_view name) const {
  auto it = std::find_if(fields_.begin(), fields_.end(),
                         [&](const Header& h) { return EqualsIgnoreCase(h.name, name); });
  return it == fields_.end() ? nullptr : &*it;
}

std::optional<std::string_view> HeaderList::Get(std::string_view name) const {
  const Header* h = Find(name);
  if (h == nullptr) return std::nullopt;
  return std::string_view(h->value);
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
