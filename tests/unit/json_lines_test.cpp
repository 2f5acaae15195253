// OTLP JSON lines: the exact line for a fixed span, hex ids, 64-bit integers as strings,
// omitted defaults, string escaping, that protobuf's own JSON parser accepts every field name
// and value, and the sink's batching.
#include "exporter/json_lines.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "exporter/otlp_messages.h"
#include "exporter/otlp_protobuf.h"

namespace threadline {
namespace {

template <size_t N>
std::array<uint8_t, N> FromHex(std::string_view hex) {
  std::array<uint8_t, N> b{};
  for (size_t i = 0; i < N; ++i) b[i] = static_cast<uint8_t>(std::stoi(std::string(hex.substr(2 * i, 2)), nullptr, 16));
  return b;
}

std::shared_ptr<const Resource> MakeResource(std::string service) {
  return std::make_shared<const Resource>(Resource{
      .attributes = {{"service.name", std::move(service)}, {"process.pid", int64_t{4242}}}});
}

Span FixedSpan() {
  Span s;
  s.trace_id = TraceId{FromHex<16>("4bf92f3577b34da6a3ce929d0e0e4736")};
  s.span_id = SpanId{FromHex<8>("00f067aa0ba902b7")};
  s.parent_span_id = SpanId{FromHex<8>("53995c3f42cd8ad8")};
  s.trace_state = "congo=t61rcWkgMzE";
  s.parent_is_remote = true;
  s.name = "GET /users";
  s.kind = SpanKind::kServer;
  s.start_unix_ns = 1700000000000000000ULL;
  s.end_unix_ns = 1700000000012345678ULL;
  s.attributes = {{"http.request.method", std::string("GET")},
                  {"http.response.status_code", int64_t{200}},
                  {"sampling.ratio", 0.25},
                  {"tl.retry", true}};
  s.events = {SpanEvent{.name = "exception",
                        .time_unix_ns = 1700000000010000000ULL,
                        .attributes = {{"exception.message", std::string("boom")}}}};
  s.links = {SpanLink{.trace_id = TraceId{FromHex<16>("0af7651916cd43dd8448eb211c80319c")},
                      .span_id = SpanId{FromHex<8>("b7ad6b7169203331")},
                      .trace_state = "",
                      .flags = 0x100,
                      .attributes = {{"link.kind", std::string("follows")}}}};
  s.status = StatusCode::kError;
  s.status_message = "boom";
  s.resource = MakeResource("checkout");
  return s;
}

constexpr std::string_view kFixedSpanJson =
    R"({"resourceSpans":[{"resource":{"attributes":[)"
    R"({"key":"service.name","value":{"stringValue":"checkout"}},)"
    R"({"key":"process.pid","value":{"intValue":"4242"}}]},)"
    R"("scopeSpans":[{"scope":{"name":"threadline","version":"0.1.0"},"spans":[{)"
    R"("traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7",)"
    R"("traceState":"congo=t61rcWkgMzE","parentSpanId":"53995c3f42cd8ad8","flags":769,)"
    R"("name":"GET /users","kind":2,)"
    R"("startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000012345678",)"
    R"("attributes":[{"key":"http.request.method","value":{"stringValue":"GET"}},)"
    R"({"key":"http.response.status_code","value":{"intValue":"200"}},)"
    R"({"key":"sampling.ratio","value":{"doubleValue":0.25}},)"
    R"({"key":"tl.retry","value":{"boolValue":true}}],)"
    R"("events":[{"timeUnixNano":"1700000000010000000","name":"exception",)"
    R"("attributes":[{"key":"exception.message","value":{"stringValue":"boom"}}]}],)"
    R"("links":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331",)"
    R"("attributes":[{"key":"link.kind","value":{"stringValue":"follows"}}],"flags":256}],)"
    R"("status":{"message":"boom","code":2}}]}]}]})";

TEST(JsonLinesTest, ExactJsonForAFixedSpan) {
  const std::vector<Span> spans = {FixedSpan()};
  EXPECT_EQ(ToOtlpJson(spans), kFixedSpanJson);
}

TEST(JsonLinesTest, RootSpanOmitsParentAndDefaults) {
  Span s;
  s.trace_id = TraceId{FromHex<16>("4bf92f3577b34da6a3ce929d0e0e4736")};
  s.span_id = SpanId{FromHex<8>("00f067aa0ba902b7")};
  s.name = "GET";
  s.kind = SpanKind::kClient;
  s.start_unix_ns = 5;
  s.end_unix_ns = 7;
  s.resource = MakeResource("a");
  const std::vector<Span> spans = {s};
  const std::string json = ToOtlpJson(spans);
  EXPECT_NE(json.find(R"("spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","flags":257,"name":"GET","kind":3,"startTimeUnixNano":"5","endTimeUnixNano":"7","status":{}}])"),
            std::string::npos)
      << json;
  EXPECT_EQ(json.find("parentSpanId"), std::string::npos);
  EXPECT_EQ(json.find("traceState"), std::string::npos);
  EXPECT_EQ(json.find("events"), std::string::npos);
}

TEST(JsonLinesTest, NumbersAndOneofDefaults) {
  Span s;
  s.resource = MakeResource("a");
  s.attributes = {{"neg", int64_t{-9223372036854775807LL - 1}}, {"zero", int64_t{0}},
                  {"empty", std::string()},                     {"f", false},
                  {"big", 1e300},                                {"third", 1.0 / 3},
                  {"whole", 3.0},                                {"nan", std::nan("")},
                  {"inf", -INFINITY}};
  const std::vector<Span> spans = {s};
  const std::string json = ToOtlpJson(spans);
  EXPECT_NE(json.find(R"({"key":"neg","value":{"intValue":"-9223372036854775808"}})"), std::string::npos) << json;
  EXPECT_NE(json.find(R"({"key":"zero","value":{"intValue":"0"}})"), std::string::npos);
  EXPECT_NE(json.find(R"({"key":"empty","value":{"stringValue":""}})"), std::string::npos);
  EXPECT_NE(json.find(R"({"key":"f","value":{"boolValue":false}})"), std::string::npos);
  EXPECT_NE(json.find(R"({"key":"big","value":{"doubleValue":1e+300}})"), std::string::npos);
  EXPECT_NE(json.find(R"({"key":"third","value":{"doubleValue":0.3333333333333333}})"), std::string::npos);
  EXPECT_NE(json.find(R"({"key":"whole","value":{"doubleValue":3}})"), std::string::npos);
  EXPECT_NE(json.find(R"({"key":"nan","value":{"doubleValue":"NaN"}})"), std::string::npos);
  EXPECT_NE(json.find(R"({"key":"inf","value":{"doubleValue":"-Infinity"}})"), std::string::npos);
}

std::string Escaped(std::string_view s) {
  std::string out;
  AppendJsonString(s, out);
  return out;
}

TEST(JsonLinesTest, EscapesStrings) {
  EXPECT_EQ(Escaped("plain /path?q=1"), R"("plain /path?q=1")");
  EXPECT_EQ(Escaped("say \"hi\" \\ bye"), R"("say \"hi\" \\ bye")");
  EXPECT_EQ(Escaped("a\nb\rc\td\be\ff"), R"("a\nb\rc\td\be\ff")");
  EXPECT_EQ(Escaped(std::string_view("\x00\x01\x1f\x7f", 4)), "\"\\u0000\\u0001\\u001f\x7f\"");
  // Valid UTF-8 passes through; U+2028/U+2029 are escaped.
  EXPECT_EQ(Escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  EXPECT_EQ(Escaped("a\xe2\x80\xa8" "b\xe2\x80\xa9"), R"("a\u2028b\u2029")");
}

TEST(JsonLinesTest, ReplacesInvalidUtf8ByteByByte) {
  const std::string r = "\xef\xbf\xbd";
  EXPECT_EQ(Escaped("a\xff" "b"), "\"a" + r + "b\"");
  EXPECT_EQ(Escaped("\xe2\x82"), "\"" + r + r + "\"");             // truncated
  EXPECT_EQ(Escaped("\xc0\xaf"), "\"" + r + r + "\"");             // overlong
  EXPECT_EQ(Escaped("\xed\xa0\x80"), "\"" + r + r + r + "\"");     // surrogate
  EXPECT_EQ(Escaped("\xf4\x90\x80\x80"), "\"" + r + r + r + r + "\"");  // > U+10FFFF
  EXPECT_EQ(Escaped("\x80x"), "\"" + r + "x\"");                   // stray continuation
}

TEST(JsonLinesTest, EscapingAppliesToEveryString) {
  Span s = FixedSpan();
  s.name = "GET /\"x\"\n";
  s.attributes = {{"k\x01", std::string("v\xff")}};
  const std::vector<Span> spans = {s};
  const std::string json = ToOtlpJson(spans);
  EXPECT_NE(json.find(R"("name":"GET /\"x\"\n")"), std::string::npos) << json;
  EXPECT_NE(json.find("{\"key\":\"k\\u0001\",\"value\":{\"stringValue\":\"v\xef\xbf\xbd\"}}"), std::string::npos) << json;
}

// protobuf's JSON parser (strict: unknown field names fail) accepts every name and value type
// we write, and the result equals what our protobuf encoder sends, decoded, apart from the ids (OTLP JSON has
// hex ids where protobuf's mapping expects base64).
void ClearIds(otlp_pb::collector::ExportTraceServiceRequest& req) {
  for (auto& rs : *req.mutable_resource_spans())
    for (auto& ss : *rs.mutable_scope_spans())
      for (auto& s : *ss.mutable_spans()) {
        s.clear_trace_id();
        s.clear_span_id();
        s.clear_parent_span_id();
        for (auto& l : *s.mutable_links()) {
          l.clear_trace_id();
          l.clear_span_id();
        }
      }
}

TEST(JsonLinesTest, ProtobufJsonParserAgreesWithTheProtobufEncoder) {
  Span other = FixedSpan();
  other.resource = MakeResource("other");
  const std::vector<Span> spans = {FixedSpan(), other};
  otlp_pb::collector::ExportTraceServiceRequest parsed;
  const auto st = google::protobuf::util::JsonStringToMessage(ToOtlpJson(spans), &parsed);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ByteBuffer wire;
  AppendOtlpProtobuf(spans, wire);
  otlp_pb::collector::ExportTraceServiceRequest expected;
  ASSERT_TRUE(expected.ParseFromString(std::string(wire.view())));
  ClearIds(parsed);
  ClearIds(expected);
  EXPECT_EQ(parsed.DebugString(), expected.DebugString());
  EXPECT_EQ(parsed.resource_spans_size(), 2);
}

class MemFile {
 public:
  MemFile() : f_(open_memstream(&buf_, &size_)) {}
  ~MemFile() {
    std::fclose(f_);
    std::free(buf_);
  }
  std::FILE* get() { return f_; }
  std::string text() {
    std::fflush(f_);
    return std::string(buf_, size_);
  }

 private:
  char* buf_ = nullptr;
  size_t size_ = 0;
  std::FILE* f_;
};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

TEST(JsonLinesSinkTest, WritesALineWhenTheBatchIsFullAndOnFlush) {
  MetricsRegistry metrics;
  MemFile file;
  JsonLinesSink sink(file.get(), 2, metrics);
  sink.OnSpan(FixedSpan());
  EXPECT_EQ(file.text(), "");
  EXPECT_EQ(sink.held(), 1u);
  sink.OnSpan(FixedSpan());
  EXPECT_EQ(sink.held(), 0u);
  sink.OnSpan(FixedSpan());
  ASSERT_EQ(Lines(file.text()).size(), 1u);
  sink.Flush();
  sink.Flush();  // nothing held: no empty line
  const std::string text = file.text();
  ASSERT_EQ(text.back(), '\n');
  const auto lines = Lines(text);
  ASSERT_EQ(lines.size(), 2u);
  const std::vector<Span> two = {FixedSpan(), FixedSpan()};
  const std::vector<Span> one = {FixedSpan()};
  EXPECT_EQ(lines[0], ToOtlpJson(two));
  EXPECT_EQ(lines[1], ToOtlpJson(one));
  EXPECT_EQ(metrics.CounterTotal("threadline_output_lines_written_total"), 2u);
  EXPECT_EQ(metrics.CounterTotal("threadline_output_spans_written_total"), 3u);
  EXPECT_EQ(metrics.CounterTotal("threadline_output_write_errors_total"), 0u);
}

TEST(JsonLinesSinkTest, CountsWriteErrors) {
  MetricsRegistry metrics;
  std::FILE* ro = std::fopen("/dev/null", "r");  // writes fail
  ASSERT_NE(ro, nullptr);
  {
    JsonLinesSink sink(ro, 10, metrics);
    sink.OnSpan(FixedSpan());
    sink.Flush();
    EXPECT_EQ(sink.held(), 0u);
  }
  std::fclose(ro);
  EXPECT_EQ(metrics.CounterTotal("threadline_output_write_errors_total"), 1u);
  EXPECT_EQ(metrics.CounterTotal("threadline_output_spans_written_total"), 0u);
}

}  // namespace
}  // namespace threadline
