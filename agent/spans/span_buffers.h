// Heap buffers of spans that have been exported, kept for the next spans built on the same
// thread. After the pipeline's other allocations were pooled, a keep-alive HTTP span still
// made three (its attribute vector, its name and its url.path value) that died a batch later
// when the exporter was done with it. The batch exporter encodes each span on the consumer
// thread that built it and gives it back there at once (BatchSpanExporter::OnSpan); its
// buffers go into this thread's pool instead of back to malloc, and the span builder and
// AddString take them from it.
//
// One pool per thread (thread_local), so no locks: spans are built and given back on the
// consumer thread; a buffer given on another thread serves the spans built there, or none.
// Bounded: at most kMaxVectors attribute vectors and kMaxStrings strings, and only buffers of
// a usual size (a vector of up to kMaxAttributes attributes, a string of up to kMaxString
// bytes), so a burst of large spans is not kept: at most ~1.5 MiB per thread, about one batch
// of spans' worth, which the queued spans held anyway under load.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "agent/spans/span.h"

namespace threadline {

class SpanBuffers {
 public:
  static constexpr size_t kMaxVectors = 512;
  static constexpr size_t kMaxStrings = 1024;
  static constexpr size_t kMaxAttributes = 64;
  static constexpr size_t kMaxString = 512;

  // The calling thread's pool.
  static SpanBuffers& Local();

  // Takes `span`'s attribute vector, its name and its attributes' string values that live on
  // the heap (what fits a std::string's own storage costs no allocation), when there is room.
  // `span` is left valid with those members empty.
  void Give(Span& span);

  // An empty attribute vector: a spent span's, with its capacity, when there is one.
  Attributes TakeAttributes() {
    if (vectors_.empty()) return {};
    Attributes a = std::move(vectors_.back());
    vectors_.pop_back();
    return a;
  }
  // An empty string: a spent one, with its capacity, when there is one.
  std::string TakeString() {
    if (strings_.empty()) return {};
    std::string s = std::move(strings_.back());
    strings_.pop_back();
    return s;
  }

  size_t vectors() const { return vectors_.size(); }
  size_t strings() const { return strings_.size(); }

 private:
  void GiveString(std::string& s);

  std::vector<Attributes> vectors_;
  std::vector<std::string> strings_;
};

// A string holding `value`: in a spent span's buffer when it would not fit a std::string's own
// storage (the attribute helpers' string values, e.g. url.path).
inline std::string PooledString(std::string_view value) {
  if (value.size() <= std::string().capacity()) return std::string(value);  // fits: no heap
  std::string s = SpanBuffers::Local().TakeString();
  s.assign(value);
  return s;
}

}  // namespace threadline
