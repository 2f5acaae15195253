#include "agent/spans/span_buffers.h"

#include <variant>

namespace threadline {

SpanBuffers& SpanBuffers::Local() {
  thread_local SpanBuffers pool;
  return pool;
}

void SpanBuffers::GiveString(std::string& s) {
  // A string within its own storage has no buffer to give.
  if (s.capacity() <= std::string().capacity() || s.capacity() > kMaxString || strings_.size() >= kMaxStrings) return;
  s.clear();
  strings_.push_back(std::move(s));
}

void SpanBuffers::Give(Span& span) {
  // Most of a span's strings ("GET", "http", "1.1", an address) live in their own storage:
  // tested here, without a call each (~15 string values per HTTP span, ~200 instructions).
  static const size_t kOwnStorage = std::string().capacity();
  if (span.name.capacity() > kOwnStorage) GiveString(span.name);
  Attributes& attrs = span.attributes;
  for (Attribute& a : attrs) {
    if (auto* s = std::get_if<std::string>(&a.value); s != nullptr && s->capacity() > kOwnStorage) GiveString(*s);
  }
  if (attrs.capacity() == 0 || attrs.capacity() > kMaxAttributes || vectors_.size() >= kMaxVectors) return;
  attrs.clear();
  vectors_.push_back(std::move(attrs));
}

}  // namespace threadline
