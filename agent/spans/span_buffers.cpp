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
  GiveString(span.name);
  Attributes& attrs = span.attributes;
  for (Attribute& a : attrs) {
    if (auto* s = std::get_if<std::string>(&a.value)) GiveString(*s);
  }
  if (attrs.capacity() == 0 || attrs.capacity() > kMaxAttributes || vectors_.size() >= kMaxVectors) return;
  attrs.clear();
  vectors_.push_back(std::move(attrs));
}

}  // namespace threadline
