// The span model: what the spans stage builds and every output (console, OTLP JSON lines, OTLP
// gRPC/HTTP) consumes. Plain values shaped after the OTLP trace data model (opentelemetry/proto/
// trace/v1/trace.proto) so conversion to the wire is a field-by-field copy; numbering of enums
// follows OTLP.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <utility>
#include <vector>

namespace threadline {

// 16 bytes; all-zero is invalid (W3C trace-context).
struct TraceId {
  std::array<uint8_t, 16> bytes{};
  // Inline, two word loads: a span's ids are tested several times after it is built (trace
  // store, root pick, sampled filter, encoder), and the out-of-line byte loop was ~26
  // instructions a call.
  bool valid() const {
    uint64_t a, b;
    std::memcpy(&a, bytes.data(), 8);
    std::memcpy(&b, bytes.data() + 8, 8);
    return (a | b) != 0;
  }
  std::string Hex() const;  // 32 lowercase hex digits
  static TraceId Random();  // never all-zero
  bool operator==(const TraceId&) const = default;
};

// 8 bytes; all-zero is invalid (and means "no parent" in parent_span_id).
struct SpanId {
  std::array<uint8_t, 8> bytes{};
  bool valid() const {  // inline, one word load (see TraceId::valid)
    uint64_t a;
    std::memcpy(&a, bytes.data(), 8);
    return a != 0;
  }
  std::string Hex() const;  // 16 lowercase hex digits
  static SpanId Random();   // never all-zero
  bool operator==(const SpanId&) const = default;
};

// OTLP Span.SpanKind numbering.
enum class SpanKind : uint8_t { kUnspecified = 0, kInternal = 1, kServer = 2, kClient = 3, kProducer = 4, kConsumer = 5 };
// OTLP Status.StatusCode numbering.
enum class StatusCode : uint8_t { kUnset = 0, kOk = 1, kError = 2 };

std::string_view ToString(SpanKind k);    // "SERVER", "CLIENT", ...
std::string_view ToString(StatusCode c);  // "UNSET", "OK", "ERROR"

// An attribute's name. Nearly every name is a semantic-convention constant spelled as a string
// literal where the attribute is made: such a key is a view of the literal (no copy, so making
// and moving a span's attributes never allocates for their names). Names that come from data
// (resource attributes from a process's environment, Kubernetes labels, names read from OTLP
// files) are owned copies, made explicitly.
class AttributeKey {
 public:
  // Implicit, so `{"http.request.method", ...}` reads as before. Only for string literals (any
  // array of static storage): the key keeps a pointer to it.
  template <size_t N>
  constexpr AttributeKey(const char (&literal)[N]) : data_(literal), size_(N - 1) {}
  // A name computed at run time: the key owns a copy.
  explicit AttributeKey(std::string_view name) { Own(name); }
  explicit AttributeKey(const std::string& name) { Own(name); }

  AttributeKey(const AttributeKey& o) {
    if (o.owned_) {
      Own(o.view());
    } else {
      data_ = o.data_;
      size_ = o.size_;
    }
  }
  AttributeKey(AttributeKey&& o) noexcept : data_(o.data_), size_(o.size_), owned_(std::move(o.owned_)) {
    o.data_ = "";
    o.size_ = 0;
  }
  AttributeKey& operator=(const AttributeKey& o) {
    if (this != &o) *this = AttributeKey(o);
    return *this;
  }
  AttributeKey& operator=(AttributeKey&& o) noexcept {
    data_ = o.data_;
    size_ = o.size_;
    owned_ = std::move(o.owned_);
    o.data_ = "";
    o.size_ = 0;
    return *this;
  }

  std::string_view view() const { return std::string_view(data_, size_); }
  friend bool operator==(const AttributeKey& a, const AttributeKey& b) { return a.view() == b.view(); }

 private:
  void Own(std::string_view name) {
    owned_ = std::make_unique_for_overwrite<char[]>(name.size() + 1);
    if (!name.empty()) std::memcpy(owned_.get(), name.data(), name.size());
    data_ = owned_.get();
    size_ = name.size();
  }

  // 24 bytes (a view of the literal or of `owned_`), not the 48 of a pointer, a size and a
  // std::string: an Attribute is 64 bytes instead of 88, and making, moving and destroying a
  // literal key is three stores and a null test.
  const char* data_ = "";
  size_t size_ = 0;
  std::unique_ptr<char[]> owned_;
};

using AttributeValue = std::variant<std::string, int64_t, double, bool>;

struct Attribute {
  AttributeKey key;
  AttributeValue value;
  bool operator==(const Attribute&) const = default;
};
using Attributes = std::vector<Attribute>;

// Appends an attribute built in the vector, its string made once inside its value, not built
// as a braced temporary and moved in: an HTTP span adds ~18 attributes, and the temporaries'
// moves and destructors were ~1,000 instructions per span (callgrind, pipeline_bench). That
// needs C++20's parenthesised aggregate initialisation, which clang 14 (it builds the fuzz
// targets) lacks: there, a move. `value` is an AttributeValue, or anything that converts to one
// (the value then made right in the attribute: InPlaceValue, protocols/describe.h).
template <class Value>
inline Attribute& EmplaceAttribute(Attributes& a, AttributeKey&& key, Value&& value) {
#if defined(__cpp_aggregate_paren_init)
  return a.emplace_back(std::move(key), std::forward<Value>(value));
#else
  a.push_back(Attribute{std::move(key), std::forward<Value>(value)});
  return a.back();
#endif
}

// The value of `key` in `attrs`, or nullptr.
const AttributeValue* FindAttribute(const Attributes& attrs, std::string_view key);

struct SpanEvent {
  std::string name;           // e.g. "exception"
  uint64_t time_unix_ns = 0;
  Attributes attributes;
};

struct SpanLink {
  TraceId trace_id;
  SpanId span_id;
  std::string trace_state;
  uint32_t flags = 0;
  Attributes attributes;
};

// One per traced process (service.name, process.pid, host.name, ...). Shared by its spans.
struct Resource {
  Attributes attributes;
};

// W3C trace-flags bit.
inline constexpr uint32_t kTraceFlagSampled = 0x01;

struct Span {
  TraceId trace_id;
  SpanId span_id;
  SpanId parent_span_id;       // invalid (all-zero) for a root span
  std::string trace_state;     // W3C tracestate, passed on unchanged
  uint32_t flags = kTraceFlagSampled;  // W3C trace-flags (low 8 bits), OTLP Span.flags
  bool parent_is_remote = false;       // parent came from another process (a header)

  std::string name;
  SpanKind kind = SpanKind::kUnspecified;
  uint64_t start_unix_ns = 0;
  uint64_t end_unix_ns = 0;

  Attributes attributes;
  std::vector<SpanEvent> events;
  std::vector<SpanLink> links;
  StatusCode status = StatusCode::kUnset;
  std::string status_message;

  std::shared_ptr<const Resource> resource;  // never null once built
  uint32_t pid = 0;                           // process that served or sent the request

  bool sampled() const { return flags & kTraceFlagSampled; }
};

// The route part of a span name: "/items/{id}" of "GET /items/{id}" ("/" when there is none).
// What the RED metrics label http_route and what per-route settings match.
inline std::string_view RouteOfSpanName(std::string_view name) {
  const size_t sp = name.find(' ');
  return sp == std::string_view::npos ? std::string_view("/") : name.substr(sp + 1);
}

// The instrumentation scope every span carries.
inline constexpr std::string_view kScopeName = "threadline";
inline constexpr std::string_view kScopeVersion = "0.1.0";

// Where finished spans go (pipeline, console, JSON, OTLP). Called on the consumer thread.
class SpanSink {
 public:
  virtual ~SpanSink() = default;
  // The span is the sink's to keep (move from it) or to pass on by the same reference; what
  // is left of it is the caller's to destroy. By reference, not by value: a span goes through
  // four sinks (RED, trace store, sampled filter, output), and a by-value hop moved and
  // destroyed a whole Span each time (~230 instructions per hop, callgrind, pipeline_bench).
  virtual void OnSpan(Span&& span) = 0;
  // Called periodically and at shutdown: write out anything held.
  virtual void Flush() {}
};

}  // namespace threadline
