#include "exporter/json_lines.h"

#include "agent/spans/span_buffers.h"

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "exporter/otlp_protobuf.h"
#include "exporter/resource_groups.h"
#include "exporter/utf8.h"

namespace threadline {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

// Bytes copied into a JSON string as they are: printable ASCII except '"' and '\'.
constexpr std::array<bool, 256> kPlainJsonByte = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[static_cast<size_t>(c)] = c != '"' && c != '\\';
  return t;
}();

// Worst case per input byte: \u00XX (6 bytes); U+FFFD for one stray byte takes 3.
constexpr size_t JsonStringRoom(size_t bytes) { return 2 + 6 * bytes; }

// Writes the escape for the byte(s) at the start of `s` (not a plain byte) at `p`; returns the
// end of what it wrote and advances `s` past what it consumed.
char* WriteEscape(std::string_view& s, char* p) {
  const auto put = [&](std::string_view x) {
    std::memcpy(p, x.data(), x.size());
    p += x.size();
  };
  const auto c = static_cast<uint8_t>(s[0]);
  size_t consumed = 1;
  if (c < 0x80) {
    switch (c) {
      case '"': put("\\\""); break;
      case '\\': put("\\\\"); break;
      case '\b': put("\\b"); break;
      case '\f': put("\\f"); break;
      case '\n': put("\\n"); break;
      case '\r': put("\\r"); break;
      case '\t': put("\\t"); break;
      default:
        put("\\u00");
        *p++ = kHexDigits[c >> 4];
        *p++ = kHexDigits[c & 0xf];
    }
  } else if (const size_t n = ValidUtf8Length(s); n == 0) {
    put("\xef\xbf\xbd");  // U+FFFD
  } else if (n == 3 && c == 0xe2 && static_cast<uint8_t>(s[1]) == 0x80 &&
             (static_cast<uint8_t>(s[2]) == 0xa8 || static_cast<uint8_t>(s[2]) == 0xa9)) {
    // U+2028/U+2029 are valid JSON but end a line in JavaScript.
    put(static_cast<uint8_t>(s[2]) == 0xa8 ? "\\u2028" : "\\u2029");
    consumed = 3;
  } else {
    put(s.substr(0, n));
    consumed = n;
  }
  s.remove_prefix(consumed);
  return p;
}

// Writes `s` as a JSON string literal at `p`, which has room for JsonStringRoom(s.size())
// bytes; returns the end of what it wrote.
char* WriteJsonString(std::string_view s, char* p) {
  *p++ = '"';
  while (!s.empty()) {
    size_t plain = 0;
    while (plain < s.size() && kPlainJsonByte[static_cast<uint8_t>(s[plain])]) ++plain;
    std::memcpy(p, s.data(), plain);
    p += plain;
    s.remove_prefix(plain);
    if (!s.empty()) p = WriteEscape(s, p);
  }
  *p++ = '"';
  return p;
}

// The OTLP JSON encoding, written into a ByteBuffer. Objects track whether a field was written
// already (for the comma) in a small stack of flags, one per open object.
class JsonWriter {
 public:
  explicit JsonWriter(ByteBuffer& out) : w_(out) {}

  void String(std::string_view s) {
    w_.Ensure(JsonStringRoom(s.size()));
    w_.set_offset(static_cast<size_t>(WriteJsonString(s, w_.at(w_.offset())) - w_.at(0)));
  }

  void BeginObject() {
    w_.Put('{');
    first_[++depth_] = true;
  }
  void EndObject() {
    w_.Put('}');
    --depth_;
  }
  void BeginArray() { w_.Put('['); }
  void EndArray() { w_.Put(']'); }
  // Between array elements.
  void Comma() { w_.Put(','); }

  // `"name":`, with a comma before unless it is the object's first field. Our field names
  // never need escaping.
  void Field(std::string_view name) {
    w_.Ensure(name.size() + 4);
    if (!first_[depth_]) w_.PutUnchecked(',');
    first_[depth_] = false;
    w_.PutUnchecked('"');
    w_.PutUnchecked(name);
    w_.PutUnchecked("\":");
  }

  void Raw(std::string_view s) { w_.Put(s); }

  template <typename Int>
  void Integer(Int v, bool quoted) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof(buf), v);
    w_.Ensure(sizeof(buf) + 2);
    if (quoted) w_.PutUnchecked('"');
    w_.PutUnchecked(std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
    if (quoted) w_.PutUnchecked('"');
  }

  void Double(double v) {
    if (std::isnan(v)) {
      Raw("\"NaN\"");
    } else if (std::isinf(v)) {
      Raw(v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    } else {
      char buf[32];
      const auto r = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round-trip form
      Raw(std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
    }
  }

  template <size_t N>
  void HexId(const std::array<uint8_t, N>& bytes) {
    w_.Ensure(2 * N + 2);
    w_.PutUnchecked('"');
    for (uint8_t x : bytes) {
      w_.PutUnchecked(kHexDigits[x >> 4]);
      w_.PutUnchecked(kHexDigits[x & 0xf]);
    }
    w_.PutUnchecked('"');
  }

 private:
  ByteWriter w_;
  // Nesting of our documents is bounded (request > resourceSpans > scopeSpans > spans >
  // events/links > attributes > value): 16 levels is plenty.
  std::array<bool, 16> first_{};
  size_t depth_ = 0;
};

void AnyValue(JsonWriter& j, const AttributeValue& v) {
  j.BeginObject();
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          j.Field("stringValue");
          j.String(x);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          j.Field("intValue");
          j.Integer(x, true);
        } else if constexpr (std::is_same_v<T, double>) {
          j.Field("doubleValue");
          j.Double(x);
        } else {
          static_assert(std::is_same_v<T, bool>);
          j.Field("boolValue");
          j.Raw(x ? "true" : "false");
        }
      },
      v);
  j.EndObject();
}

// `"attributes":[...]`, omitted when empty.
void AttributesField(JsonWriter& j, const Attributes& attrs) {
  if (attrs.empty()) return;
  j.Field("attributes");
  j.BeginArray();
  for (size_t i = 0; i < attrs.size(); ++i) {
    if (i) j.Comma();
    j.BeginObject();
    j.Field("key");
    j.String(attrs[i].key.view());
    j.Field("value");
    AnyValue(j, attrs[i].value);
    j.EndObject();
  }
  j.EndArray();
}

void Event(JsonWriter& j, const SpanEvent& e) {
  j.BeginObject();
  if (e.time_unix_ns) {
    j.Field("timeUnixNano");
    j.Integer(e.time_unix_ns, true);
  }
  if (!e.name.empty()) {
    j.Field("name");
    j.String(e.name);
  }
  AttributesField(j, e.attributes);
  j.EndObject();
}

void Link(JsonWriter& j, const SpanLink& l) {
  j.BeginObject();
  if (l.trace_id.valid()) {
    j.Field("traceId");
    j.HexId(l.trace_id.bytes);
  }
  if (l.span_id.valid()) {
    j.Field("spanId");
    j.HexId(l.span_id.bytes);
  }
  if (!l.trace_state.empty()) {
    j.Field("traceState");
    j.String(l.trace_state);
  }
  AttributesField(j, l.attributes);
  if (l.flags) {
    j.Field("flags");
    j.Integer(l.flags, false);
  }
  j.EndObject();
}

void SpanObject(JsonWriter& j, const Span& s) {
  j.BeginObject();
  if (s.trace_id.valid()) {
    j.Field("traceId");
    j.HexId(s.trace_id.bytes);
  }
  if (s.span_id.valid()) {
    j.Field("spanId");
    j.HexId(s.span_id.bytes);
  }
  if (!s.trace_state.empty()) {
    j.Field("traceState");
    j.String(s.trace_state);
  }
  if (s.parent_span_id.valid()) {
    j.Field("parentSpanId");
    j.HexId(s.parent_span_id.bytes);
  }
  if (const uint32_t flags = OtlpSpanFlags(s)) {
    j.Field("flags");
    j.Integer(flags, false);
  }
  if (!s.name.empty()) {
    j.Field("name");
    j.String(s.name);
  }
  if (s.kind != SpanKind::kUnspecified) {
    j.Field("kind");
    j.Integer(static_cast<uint32_t>(s.kind), false);
  }
  if (s.start_unix_ns) {
    j.Field("startTimeUnixNano");
    j.Integer(s.start_unix_ns, true);
  }
  if (s.end_unix_ns) {
    j.Field("endTimeUnixNano");
    j.Integer(s.end_unix_ns, true);
  }
  AttributesField(j, s.attributes);
  if (!s.events.empty()) {
    j.Field("events");
    j.BeginArray();
    for (size_t i = 0; i < s.events.size(); ++i) {
      if (i) j.Comma();
      Event(j, s.events[i]);
    }
    j.EndArray();
  }
  if (!s.links.empty()) {
    j.Field("links");
    j.BeginArray();
    for (size_t i = 0; i < s.links.size(); ++i) {
      if (i) j.Comma();
      Link(j, s.links[i]);
    }
    j.EndArray();
  }
  j.Field("status");
  j.BeginObject();
  if (!s.status_message.empty()) {
    j.Field("message");
    j.String(s.status_message);
  }
  if (s.status != StatusCode::kUnset) {
    j.Field("code");
    j.Integer(static_cast<uint32_t>(s.status), false);
  }
  j.EndObject();
  j.EndObject();
}

}  // namespace

void AppendJsonString(std::string_view s, std::string& out) {
  const size_t at = out.size();
  out.resize(at + JsonStringRoom(s.size()));
  out.resize(static_cast<size_t>(WriteJsonString(s, out.data() + at) - out.data()));
}

void AppendOtlpJson(std::span<const Span> spans, ByteBuffer& out) {
  JsonWriter j(out);
  j.BeginObject();
  const std::vector<ResourceGroup> groups = GroupByResource(spans);
  if (!groups.empty()) {
    j.Field("resourceSpans");
    j.BeginArray();
    for (size_t g = 0; g < groups.size(); ++g) {
      if (g) j.Comma();
      j.BeginObject();
      j.Field("resource");
      j.BeginObject();
      if (groups[g].resource != nullptr) AttributesField(j, groups[g].resource->attributes);
      j.EndObject();
      j.Field("scopeSpans");
      j.BeginArray();
      j.BeginObject();
      j.Field("scope");
      j.BeginObject();
      j.Field("name");
      j.String(kScopeName);
      j.Field("version");
      j.String(kScopeVersion);
      j.EndObject();
      j.Field("spans");
      j.BeginArray();
      for (size_t i = 0; i < groups[g].spans.size(); ++i) {
        if (i) j.Comma();
        SpanObject(j, *groups[g].spans[i]);
      }
      j.EndArray();
      j.EndObject();
      j.EndArray();
      j.EndObject();
    }
    j.EndArray();
  }
  j.EndObject();
}

std::string ToOtlpJson(std::span<const Span> spans) {
  ByteBuffer out;
  AppendOtlpJson(spans, out);
  return std::string(out.view());
}

JsonLinesSink::JsonLinesSink(std::FILE* out, size_t max_batch_spans, MetricsRegistry& metrics)
    : out_(out),
      max_batch_spans_(max_batch_spans == 0 ? 1 : max_batch_spans),
      lines_written_(metrics.GetCounter("threadline_output_lines_written_total", {{"output", "jsonl"}},
                                        "Lines (OTLP JSON requests) written")),
      spans_written_(metrics.GetCounter("threadline_output_spans_written_total", {{"output", "jsonl"}},
                                        "Spans written by an output")),
      write_errors_(metrics.GetCounter("threadline_output_write_errors_total", {{"output", "jsonl"}},
                                       "Failed writes of an output; their spans are lost")) {
  batch_.reserve(max_batch_spans_);
}

void JsonLinesSink::OnSpan(Span&& span) {
  batch_.push_back(std::move(span));
  if (batch_.size() >= max_batch_spans_) WriteBatch();
}

void JsonLinesSink::Flush() {
  if (!batch_.empty()) WriteBatch();
}

void JsonLinesSink::WriteBatch() {
  line_.clear();
  AppendOtlpJson(batch_, line_);
  ByteWriter(line_).Put('\n');
  const std::string_view line = line_.view();
  const bool ok = std::fwrite(line.data(), 1, line.size(), out_) == line.size() && std::fflush(out_) == 0;
  if (ok) {
    lines_written_.Add();
    spans_written_.Add(batch_.size());
  } else {
    write_errors_.Add();
  }
  // Their buffers serve the next spans (this is the thread that built them).
  SpanBuffers& buffers = SpanBuffers::Local();
  for (Span& span : batch_) buffers.Give(span);
  batch_.clear();
}

}  // namespace threadline
