#include "exporter/json_lines.h"

#include <charconv>
#include <cmath>
#include <type_traits>

#include "exporter/otlp_protobuf.h"
#include "exporter/resource_groups.h"
#include "exporter/utf8.h"

namespace threadline {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

void AppendU64String(uint64_t v, std::string& out) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out += '"';
  out.append(buf, r.ptr);
  out += '"';
}

void AppendI64String(int64_t v, std::string& out) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out += '"';
  out.append(buf, r.ptr);
  out += '"';
}

void AppendU32(uint32_t v, std::string& out) {
  char buf[16];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, r.ptr);
}

void AppendDouble(double v, std::string& out) {
  if (std::isnan(v)) {
    out += "\"NaN\"";
  } else if (std::isinf(v)) {
    out += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  } else {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round-trip form
    out.append(buf, r.ptr);
  }
}

template <size_t N>
void AppendHexId(const std::array<uint8_t, N>& bytes, std::string& out) {
  out += '"';
  for (uint8_t x : bytes) {
    out += kHexDigits[x >> 4];
    out += kHexDigits[x & 0xf];
  }
  out += '"';
}

// Writes `"name":` preceded by a comma unless it is the first field of the object.
class ObjectWriter {
 public:
  explicit ObjectWriter(std::string& out) : out_(out) { out_ += '{'; }
  ~ObjectWriter() { out_ += '}'; }
  ObjectWriter(const ObjectWriter&) = delete;
  ObjectWriter& operator=(const ObjectWriter&) = delete;

  std::string& Field(std::string_view name) {
    if (!first_) out_ += ',';
    first_ = false;
    out_ += '"';
    out_ += name;  // our field names never need escaping
    out_ += "\":";
    return out_;
  }

 private:
  std::string& out_;
  bool first_ = true;
};

void AppendAnyValue(const AttributeValue& v, std::string& out) {
  ObjectWriter o(out);
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          AppendJsonString(x, o.Field("stringValue"));
        } else if constexpr (std::is_same_v<T, int64_t>) {
          AppendI64String(x, o.Field("intValue"));
        } else if constexpr (std::is_same_v<T, double>) {
          AppendDouble(x, o.Field("doubleValue"));
        } else {
          static_assert(std::is_same_v<T, bool>);
          o.Field("boolValue") += x ? "true" : "false";
        }
      },
      v);
}

// `"attributes":[...]`, omitted when empty.
void AppendAttributesField(ObjectWriter& o, const Attributes& attrs) {
  if (attrs.empty()) return;
  std::string& out = o.Field("attributes");
  out += '[';
  for (size_t i = 0; i < attrs.size(); ++i) {
    if (i) out += ',';
    ObjectWriter kv(out);
    AppendJsonString(attrs[i].key, kv.Field("key"));
    AppendAnyValue(attrs[i].value, kv.Field("value"));
  }
  out += ']';
}

void AppendEvent(const SpanEvent& e, std::string& out) {
  ObjectWriter o(out);
  if (e.time_unix_ns) AppendU64String(e.time_unix_ns, o.Field("timeUnixNano"));
  if (!e.name.empty()) AppendJsonString(e.name, o.Field("name"));
  AppendAttributesField(o, e.attributes);
}

void AppendLink(const SpanLink& l, std::string& out) {
  ObjectWriter o(out);
  if (l.trace_id.valid()) AppendHexId(l.trace_id.bytes, o.Field("traceId"));
  if (l.span_id.valid()) AppendHexId(l.span_id.bytes, o.Field("spanId"));
  if (!l.trace_state.empty()) AppendJsonString(l.trace_state, o.Field("traceState"));
  AppendAttributesField(o, l.attributes);
  if (l.flags) AppendU32(l.flags, o.Field("flags"));
}

void AppendSpan(const Span& s, std::string& out) {
  ObjectWriter o(out);
  if (s.trace_id.valid()) AppendHexId(s.trace_id.bytes, o.Field("traceId"));
  if (s.span_id.valid()) AppendHexId(s.span_id.bytes, o.Field("spanId"));
  if (!s.trace_state.empty()) AppendJsonString(s.trace_state, o.Field("traceState"));
  if (s.parent_span_id.valid()) AppendHexId(s.parent_span_id.bytes, o.Field("parentSpanId"));
  if (uint32_t flags = OtlpSpanFlags(s)) AppendU32(flags, o.Field("flags"));
  if (!s.name.empty()) AppendJsonString(s.name, o.Field("name"));
  if (s.kind != SpanKind::kUnspecified) AppendU32(static_cast<uint32_t>(s.kind), o.Field("kind"));
  if (s.start_unix_ns) AppendU64String(s.start_unix_ns, o.Field("startTimeUnixNano"));
  if (s.end_unix_ns) AppendU64String(s.end_unix_ns, o.Field("endTimeUnixNano"));
  AppendAttributesField(o, s.attributes);
  if (!s.events.empty()) {
    std::string& e = o.Field("events");
    e += '[';
    for (size_t i = 0; i < s.events.size(); ++i) {
      if (i) e += ',';
      AppendEvent(s.events[i], e);
    }
    e += ']';
  }
  if (!s.links.empty()) {
    std::string& l = o.Field("links");
    l += '[';
    for (size_t i = 0; i < s.links.size(); ++i) {
      if (i) l += ',';
      AppendLink(s.links[i], l);
    }
    l += ']';
  }
  ObjectWriter status(o.Field("status"));
  if (!s.status_message.empty()) AppendJsonString(s.status_message, status.Field("message"));
  if (s.status != StatusCode::kUnset)
    AppendU32(static_cast<uint32_t>(s.status), status.Field("code"));
}

}  // namespace

void AppendJsonString(std::string_view s, std::string& out) {
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      // Copy the run of plain ASCII in one go.
      size_t j = i + 1;
      while (j < s.size()) {
        const auto d = static_cast<uint8_t>(s[j]);
        if (d < 0x20 || d >= 0x80 || d == '"' || d == '\\') break;
        ++j;
      }
      out.append(s.data() + i, j - i);
      i = j;
      continue;
    }
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          out += "\\u00";
          out += kHexDigits[c >> 4];
          out += kHexDigits[c & 0xf];
      }
      ++i;
      continue;
    }
    const size_t n = ValidUtf8Length(s.substr(i));
    if (n == 0) {
      out += "\xef\xbf\xbd";  // U+FFFD
      ++i;
    } else if (n == 3 && c == 0xe2 && static_cast<uint8_t>(s[i + 1]) == 0x80 &&
               (static_cast<uint8_t>(s[i + 2]) == 0xa8 || static_cast<uint8_t>(s[i + 2]) == 0xa9)) {
      // U+2028/U+2029 are valid JSON but end a line in JavaScript.
      out += static_cast<uint8_t>(s[i + 2]) == 0xa8 ? "\\u2028" : "\\u2029";
      i += 3;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  out += '"';
}

void AppendOtlpJson(std::span<const Span> spans, std::string& out) {
  ObjectWriter req(out);
  const std::vector<ResourceGroup> groups = GroupByResource(spans);
  if (groups.empty()) return;
  std::string& rs_list = req.Field("resourceSpans");
  rs_list += '[';
  for (size_t g = 0; g < groups.size(); ++g) {
    if (g) rs_list += ',';
    ObjectWriter rs(rs_list);
    {
      ObjectWriter resource(rs.Field("resource"));
      if (groups[g].resource != nullptr) AppendAttributesField(resource, groups[g].resource->attributes);
    }
    std::string& ss_list = rs.Field("scopeSpans");
    ss_list += '[';
    {
      ObjectWriter ss(ss_list);
      {
        ObjectWriter scope(ss.Field("scope"));
        AppendJsonString(kScopeName, scope.Field("name"));
        AppendJsonString(kScopeVersion, scope.Field("version"));
      }
      std::string& spans_list = ss.Field("spans");
      spans_list += '[';
      for (size_t i = 0; i < groups[g].spans.size(); ++i) {
        if (i) spans_list += ',';
        AppendSpan(*groups[g].spans[i], spans_list);
      }
      spans_list += ']';
    }
    ss_list += ']';
  }
  rs_list += ']';
}

std::string ToOtlpJson(std::span<const Span> spans) {
  std::string out;
  AppendOtlpJson(spans, out);
  return out;
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

void JsonLinesSink::OnSpan(Span span) {
  batch_.push_back(std::move(span));
  if (batch_.size() >= max_batch_spans_) WriteBatch();
}

void JsonLinesSink::Flush() {
  if (!batch_.empty()) WriteBatch();
}

void JsonLinesSink::WriteBatch() {
  line_.clear();
  AppendOtlpJson(batch_, line_);
  line_ += '\n';
  const bool ok = std::fwrite(line_.data(), 1, line_.size(), out_) == line_.size() &&
                  std::fflush(out_) == 0;
  if (ok) {
    lines_written_.Add();
    spans_written_.Add(batch_.size());
  } else {
    write_errors_.Add();
  }
  batch_.clear();
}

}  // namespace threadline
