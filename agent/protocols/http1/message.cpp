#include "agent/protocols/http1/message.h"

#include <cstring>

namespace threadline::http1 {

namespace {

std::string_view Cap(std::string_view s, size_t cap, bool& truncated) {
  if (s.size() <= cap) return s;
  truncated = true;
  return s.substr(0, cap);
}

uint16_t ReadU16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

uint32_t ReadU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

Header HeaderList::Iterator::operator*() const {
  const uint16_t name_len = ReadU16(at_);
  const uint32_t value_len = ReadU32(at_ + 2);
  const char* name = at_ + kFieldHead;
  return Header{std::string_view(name, name_len), std::string_view(name + name_len, value_len),
                static_cast<FieldName>(at_[6])};
}

HeaderList::Iterator& HeaderList::Iterator::operator++() {
  at_ += kFieldHead + ReadU16(at_) + ReadU32(at_ + 2);
  return *this;
}

void HeaderList::Add(std::string_view name, std::string_view value) {
  Add(name, value, IdentifyField(name));
}

void HeaderList::Add(std::string_view name, std::string_view value, FieldName field) {
  if (count_ >= kMaxHeaders) {
    ++dropped_fields_;
    last_dropped_ = true;
    return;
  }
  last_dropped_ = false;
  if (count_ == 0) text_.reserve(kInitialBytes);
  name = Cap(name, kMaxNameBytes, values_truncated_);
  value = Cap(value, kMaxValueBytes, values_truncated_);
  const auto name_len = static_cast<uint16_t>(name.size());
  const auto value_len = static_cast<uint32_t>(value.size());
  char head[kFieldHead];
  std::memcpy(head, &name_len, 2);
  std::memcpy(head + 2, &value_len, 4);
  head[6] = static_cast<char>(field);
  last_at_ = text_.size();
  text_.append(head, kFieldHead);
  text_.append(name);
  text_.append(value);
  ++count_;
  known_ |= Bit(field);  // bit 0 (kOther) is never looked at
}

void HeaderList::AppendToLast(std::string_view continuation) {
  if (count_ == 0 || last_dropped_) return;
  // The last field's value ends text_, so the continuation is appended in place.
  uint32_t value_len = ReadU32(text_.data() + last_at_ + 2);
  if (value_len >= kMaxValueBytes) {
    values_truncated_ = true;
    return;
  }
  size_t room = kMaxValueBytes - value_len;
  if (value_len > 0 && !continuation.empty()) {
    text_.push_back(' ');
    ++value_len;
    --room;
  }
  continuation = Cap(continuation, room, values_truncated_);
  text_.append(continuation);
  value_len += static_cast<uint32_t>(continuation.size());
  std::memcpy(text_.data() + last_at_ + 2, &value_len, 4);
}

Header HeaderList::FindKnown(FieldName field) const {
  const char* at = text_.data();
  while (static_cast<FieldName>(at[6]) != field) at += kFieldHead + ReadU16(at) + ReadU32(at + 2);
  return *Iterator(at);
}

std::optional<Header> HeaderList::FindStored(std::string_view name) const {
  for (Header h : fields())
    if (EqualsIgnoreCase(h.name, name)) return h;
  return std::nullopt;
}

bool IsReadField(MessageKind kind, std::string_view name) {
  return IsReadField(kind, IdentifyField(name));
}

// Reset below names every member: a new one must be added there (and to the unit test).
static_assert(sizeof(void*) != 8 || sizeof(Message) == 360, "a Message member was added or changed: reset it in Message::Reset");

void Message::Reset() {
  // Every member of Message: one added there is reset here (the unit test
  // Http1Message.ResetEqualsDefault compares a reset Message with a new one member by member).
  kind = MessageKind::kRequest;
  version_minor = 1;
  method.clear();
  target.clear();
  status_code = 0;
  reason.clear();
  headers.Clear();
  header_bytes = 0;
  framing = Framing::kNone;
  body_bytes = 0;
  body_wire_bytes = 0;
  body_bytes_not_captured = 0;
  truncated = false;
  if (trailers.holds_buffer()) trailers.Free();  // rare: nothing reads trailers
  connection_close = false;
  upgrade_requested = false;
  expect_continue = false;
  te_and_cl = false;
  first_chunk = ChunkMeta{};
  last_chunk = ChunkMeta{};
}

std::unique_ptr<Message> MessagePool::New() {
  if (free_.empty()) return std::make_unique<Message>();
  std::unique_ptr<Message> m = std::move(free_.back());
  free_.pop_back();
  m->Reset();
  return m;
}

void MessagePool::Give(std::unique_ptr<Message> m) {
  if (m == nullptr || free_.size() >= kMaxMessages) return;
  if (m->target.capacity() > kMaxRetainedBytes) std::string().swap(m->target);
  if (m->headers.capacity() > kMaxRetainedBytes) m->headers.Free();
  if (m->trailers.holds_buffer()) m->trailers.Free();
  free_.push_back(std::move(m));
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
