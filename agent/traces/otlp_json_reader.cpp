#include "agent/traces/otlp_json_reader.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

namespace threadline {

namespace {

using Json = nlohmann::json;

constexpr size_t kMaxErrors = 5;

// obj[camel], else obj[snake]; nullptr when neither is there.
const Json* Field(const Json& obj, const char* camel, const char* snake = nullptr) {
  if (!obj.is_object()) return nullptr;
  if (auto it = obj.find(camel); it != obj.end()) return &*it;
  if (snake != nullptr)
    if (auto it = obj.find(snake); it != obj.end()) return &*it;
  return nullptr;
}

const Json& ArrayField(const Json& obj, const char* camel, const char* snake) {
  static const Json kEmpty = Json::array();
  const Json* f = Field(obj, camel, snake);
  return f != nullptr && f->is_array() ? *f : kEmpty;
}

std::string StringOf(const Json* v) { return v != nullptr && v->is_string() ? v->get<std::string>() : std::string(); }

// A uint64 written as a string ("1700000000000000000") or a number.
uint64_t U64Of(const Json* v) {
  if (v == nullptr) return 0;
  if (v->is_number_unsigned()) return v->get<uint64_t>();
  if (v->is_number_integer()) return v->get<int64_t>() < 0 ? 0 : static_cast<uint64_t>(v->get<int64_t>());
  if (v->is_number_float()) return v->get<double>() < 0 ? 0 : static_cast<uint64_t>(v->get<double>());
  if (v->is_string()) {
    const std::string s = v->get<std::string>();
    char* end = nullptr;
    errno = 0;
    const unsigned long long x = std::strtoull(s.c_str(), &end, 10);
    if (errno == 0 && end != nullptr && *end == '\0') return x;
  }
  return 0;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int Base64Digit(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

// Hex (2N digits) or base64 (of N bytes) into `out`; false when it is neither.
template <size_t N>
bool DecodeId(const std::string& text, std::array<uint8_t, N>& out) {
  if (text.size() == 2 * N) {
    for (size_t i = 0; i < N; ++i) {
      const int hi = HexDigit(text[2 * i]), lo = HexDigit(text[2 * i + 1]);
      if (hi < 0 || lo < 0) return false;
      out[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    return true;
  }
  std::vector<uint8_t> bytes;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    const int d = Base64Digit(c);
    if (d < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<uint8_t>(acc >> bits));
    }
  }
  if (bytes.size() != N) return false;
  std::memcpy(out.data(), bytes.data(), N);
  return true;
}

SpanKind KindOf(const Json* v) {
  if (v == nullptr) return SpanKind::kUnspecified;
  if (v->is_number_integer()) {
    const int64_t k = v->get<int64_t>();
    return k >= 0 && k <= 5 ? static_cast<SpanKind>(k) : SpanKind::kUnspecified;
  }
  const std::string s = StringOf(v);
  static const char* kNames[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
                                 "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"};
  for (int i = 0; i < 6; ++i)
    if (s == kNames[i]) return static_cast<SpanKind>(i);
  return SpanKind::kUnspecified;
}

StatusCode StatusOf(const Json* status) {
  const Json* code = status != nullptr ? Field(*status, "code") : nullptr;
  if (code == nullptr) return StatusCode::kUnset;
  if (code->is_number_integer()) {
    const int64_t c = code->get<int64_t>();
    return c == 1 ? StatusCode::kOk : c == 2 ? StatusCode::kError : StatusCode::kUnset;
  }
  const std::string s = StringOf(code);
  return s == "STATUS_CODE_OK" ? StatusCode::kOk : s == "STATUS_CODE_ERROR" ? StatusCode::kError : StatusCode::kUnset;
}

// An OTLP AnyValue; arrays, key-value lists and bytes are kept as their JSON text.
AttributeValue ValueOf(const Json& v) {
  if (const Json* s = Field(v, "stringValue", "string_value"); s && s->is_string()) return s->get<std::string>();
  if (const Json* i = Field(v, "intValue", "int_value")) {
    if (i->is_string()) {
      const std::string t = i->get<std::string>();
      char* end = nullptr;
      const long long x = std::strtoll(t.c_str(), &end, 10);
      if (end != nullptr && *end == '\0') return static_cast<int64_t>(x);
      return t;
    }
    if (i->is_number_integer()) return i->get<int64_t>();
  }
  if (const Json* d = Field(v, "doubleValue", "double_value")) {
    if (d->is_number()) return d->get<double>();
    if (d->is_string()) return d->get<std::string>();  // "NaN", "Infinity"
  }
  if (const Json* b = Field(v, "boolValue", "bool_value"); b && b->is_boolean()) return b->get<bool>();
  for (const char* other : {"arrayValue", "kvlistValue", "bytesValue", "array_value", "kvlist_value", "bytes_value"})
    if (const Json* x = Field(v, other)) return x->dump(-1, ' ', false, Json::error_handler_t::replace);
  return std::string();
}

Attributes AttributesOf(const Json& obj) {
  Attributes out;
  for (const Json& kv : ArrayField(obj, "attributes", "attributes")) {
    const std::string key = StringOf(Field(kv, "key"));
    if (key.empty()) continue;
    const Json* value = Field(kv, "value");
    out.push_back({AttributeKey(key), value != nullptr ? ValueOf(*value) : AttributeValue(std::string())});
  }
  return out;
}

void ReadRequest(const Json& request, std::string_view where, const SpanCallback& on_span, OtlpJsonReadStats& stats) {
  ++stats.requests;
  for (const Json& rs : ArrayField(request, "resourceSpans", "resource_spans")) {
    auto resource = std::make_shared<Resource>();
    if (const Json* r = Field(rs, "resource")) resource->attributes = AttributesOf(*r);
    uint32_t pid = 0;
    if (const AttributeValue* p = FindAttribute(resource->attributes, "process.pid"))
      if (const auto* n = std::get_if<int64_t>(p)) pid = static_cast<uint32_t>(*n);
    std::shared_ptr<const Resource> shared = std::move(resource);
    for (const Json& ss : ArrayField(rs, "scopeSpans", "scope_spans")) {
      for (const Json& js : ArrayField(ss, "spans", "spans")) {
        Span s;
        const std::string trace_id = StringOf(Field(js, "traceId", "trace_id"));
        const std::string span_id = StringOf(Field(js, "spanId", "span_id"));
        const std::string parent = StringOf(Field(js, "parentSpanId", "parent_span_id"));
        if (!DecodeId(trace_id, s.trace_id.bytes) || !DecodeId(span_id, s.span_id.bytes) || !s.trace_id.valid() ||
            !s.span_id.valid()) {
          ++stats.bad_spans;
          stats.Note(std::string(where) + ": a span without a valid traceId/spanId (\"" + trace_id.substr(0, 40) +
                     "\", \"" + span_id.substr(0, 20) + "\")");
          continue;
        }
        if (!parent.empty() && !DecodeId(parent, s.parent_span_id.bytes)) s.parent_span_id = SpanId{};
        s.trace_state = StringOf(Field(js, "traceState", "trace_state"));
        if (const Json* f = Field(js, "flags"); f != nullptr && f->is_number_integer())
          s.flags = static_cast<uint32_t>(f->get<int64_t>()) & 0xff;
        s.name = StringOf(Field(js, "name"));
        s.kind = KindOf(Field(js, "kind"));
        s.start_unix_ns = U64Of(Field(js, "startTimeUnixNano", "start_time_unix_nano"));
        s.end_unix_ns = U64Of(Field(js, "endTimeUnixNano", "end_time_unix_nano"));
        s.attributes = AttributesOf(js);
        for (const Json& je : ArrayField(js, "events", "events")) {
          SpanEvent e;
          e.name = StringOf(Field(je, "name"));
          e.time_unix_ns = U64Of(Field(je, "timeUnixNano", "time_unix_nano"));
          e.attributes = AttributesOf(je);
          s.events.push_back(std::move(e));
        }
        const Json* status = Field(js, "status");
        s.status = StatusOf(status);
        if (status != nullptr) s.status_message = StringOf(Field(*status, "message"));
        s.resource = shared;
        s.pid = pid;
        ++stats.spans;
        on_span(std::move(s));
      }
    }
  }
}

bool IsRequest(const Json& v) {
  return v.is_object() && (v.contains("resourceSpans") || v.contains("resource_spans"));
}

void ReadValue(const Json& v, std::string_view where, const SpanCallback& on_span, OtlpJsonReadStats& stats) {
  if (v.is_array()) {
    for (const Json& item : v) ReadValue(item, where, on_span, stats);
    return;
  }
  if (!IsRequest(v)) {
    ++stats.bad_lines;
    stats.Note(std::string(where) + ": not an ExportTraceServiceRequest (no resourceSpans)");
    return;
  }
  ReadRequest(v, where, on_span, stats);
}

}  // namespace

void OtlpJsonReadStats::Note(std::string error) {
  if (errors.size() < kMaxErrors) errors.push_back(std::move(error));
}

void ReadOtlpJson(std::string_view text, std::string_view name, const SpanCallback& on_span, OtlpJsonReadStats& stats) {
  try {
    // One request per line (the usual case). When the first non-empty line is not JSON on its
    // own, the whole text may be one pretty-printed document: try that once.
    size_t line_no = 0, start = 0;
    bool first = true;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string_view::npos) end = text.size();
      std::string_view line = text.substr(start, end - start);
      start = end + 1;
      ++line_no;
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
      while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
      if (line.empty()) continue;
      Json v = Json::parse(line, nullptr, /*allow_exceptions=*/false);
      const std::string where = std::string(name) + ":" + std::to_string(line_no);
      if (v.is_discarded()) {
        if (first) {
          Json whole = Json::parse(text, nullptr, false);
          if (!whole.is_discarded()) {
            ReadValue(whole, name, on_span, stats);
            return;
          }
        }
        ++stats.bad_lines;
        stats.Note(where + ": not JSON");
        first = false;
        continue;
      }
      first = false;
      ReadValue(v, where, on_span, stats);
    }
  } catch (const std::exception& e) {
    ++stats.bad_lines;
    stats.Note(std::string(name) + ": " + e.what());
  }
}

Status ReadOtlpJsonFile(const std::string& path, const SpanCallback& on_span, OtlpJsonReadStats& stats) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::FromErrno("cannot read " + path, errno);
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Error::FromErrno("cannot read " + path, errno);
  const std::string text = buf.str();
  ReadOtlpJson(text, path, on_span, stats);
  return OkStatus();
}

}  // namespace threadline
