// What `threadline view` reads: OTLP JSON read back (our own `--output json` lines, base64 ids,
// enum names, pretty-printed files, garbage lines with their line numbers).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "agent/traces/otlp_json_reader.h"
#include "exporter/json_lines.h"
#include "tests/unit/trace_test_util.h"

namespace threadline {
namespace {

using ::testing::HasSubstr;

using namespace trace_test;

TEST(OtlpJsonReaderTest, ReadsBackWhatTheJsonOutputWrites) {
  const std::vector<Span> spans = ThreeServiceTraces();
  std::string text = ToOtlpJson(std::span<const Span>(spans.data(), 4)) + "\n\n" +
                     ToOtlpJson(std::span<const Span>(spans.data() + 4, spans.size() - 4)) + "\n";
  std::vector<Span> got;
  OtlpJsonReadStats stats;
  ReadOtlpJson(text, "a.json", [&](Span s) { got.push_back(std::move(s)); }, stats);
  EXPECT_EQ(stats.requests, 2u);
  EXPECT_EQ(stats.bad_lines, 0u);
  ASSERT_EQ(got.size(), spans.size());
  for (size_t i = 0; i < spans.size(); ++i) {
    const Span& a = spans[i];
    const Span* b = nullptr;
    for (const auto& g : got)
      if (g.span_id == a.span_id && g.trace_id == a.trace_id) b = &g;
    ASSERT_NE(b, nullptr) << i;
    EXPECT_EQ(b->parent_span_id, a.parent_span_id);
    EXPECT_EQ(b->name, a.name);
    EXPECT_EQ(b->kind, a.kind);
    EXPECT_EQ(b->start_unix_ns, a.start_unix_ns);
    EXPECT_EQ(b->end_unix_ns, a.end_unix_ns);
    EXPECT_EQ(b->status, a.status);
    EXPECT_EQ(b->attributes, a.attributes);
    EXPECT_EQ(b->pid, 4242u);
    ASSERT_NE(b->resource, nullptr);
    EXPECT_EQ(b->resource->attributes, a.resource->attributes);
  }
}

TEST(OtlpJsonReaderTest, AcceptsBase64IdsEnumNamesAndPrettyPrintedFiles) {
  // protobuf's canonical JSON: base64 ids, enum names, snake_case fields, numbers as numbers.
  const std::string text = R"({
    "resource_spans": [{
      "resource": {"attributes": [{"key": "service.name", "value": {"string_value": "java-app"}}]},
      "scope_spans": [{"spans": [{
        "trace_id": "S/k tiny", "span_id": "AAAAAAAAAAE=", "name": "broken id"}, {
        "trace_id": "S/kvNXezTaajzpKdDg5HNg==", "span_id": "APBnqgupArc=", "name": "GET /a",
        "kind": "SPAN_KIND_SERVER", "start_time_unix_nano": 1700000000000000000,
        "end_time_unix_nano": "1700000000005000000", "status": {"code": "STATUS_CODE_ERROR"},
        "attributes": [{"key": "n", "value": {"int_value": 7}},
                       {"key": "tags", "value": {"array_value": {"values": [{"string_value": "x"}]}}}]}]}]
    }]
  })";
  std::vector<Span> got;
  OtlpJsonReadStats stats;
  ReadOtlpJson(text, "pretty.json", [&](Span s) { got.push_back(std::move(s)); }, stats);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(stats.bad_spans, 1u);
  ASSERT_FALSE(stats.errors.empty());
  EXPECT_THAT(stats.errors[0], HasSubstr("pretty.json"));
  const Span& s = got[0];
  EXPECT_EQ(s.trace_id.Hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(s.span_id.Hex(), "00f067aa0ba902b7");
  EXPECT_EQ(s.kind, SpanKind::kServer);
  EXPECT_EQ(s.status, StatusCode::kError);
  EXPECT_EQ(s.end_unix_ns - s.start_unix_ns, 5'000'000u);
  EXPECT_EQ(std::get<int64_t>(*FindAttribute(s.attributes, "n")), 7);
  EXPECT_THAT(std::get<std::string>(*FindAttribute(s.attributes, "tags")), HasSubstr("\"x\""));
  EXPECT_EQ(std::get<std::string>(*FindAttribute(s.resource->attributes, "service.name")), "java-app");
}

TEST(OtlpJsonReaderTest, GarbageLinesAreCountedWithTheirLineNumbers) {
  const std::vector<Span> spans = ThreeServiceTraces();
  const std::string good = ToOtlpJson(std::span<const Span>(spans.data(), 1));
  const std::string text = "2024-01-01 INFO not json\n" + good + "\n{\"foo\": 1}\n[1, 2\n" + good + "\n";
  size_t n = 0;
  OtlpJsonReadStats stats;
  ReadOtlpJson(text, "mixed.json", [&](Span) { ++n; }, stats);
  EXPECT_EQ(n, 2u);  // the same span twice: deduplicating is the caller's business
  EXPECT_EQ(stats.bad_lines, 3u);
  ASSERT_EQ(stats.errors.size(), 3u);
  EXPECT_EQ(stats.errors[0], "mixed.json:1: not JSON");
  EXPECT_EQ(stats.errors[1], "mixed.json:3: not an ExportTraceServiceRequest (no resourceSpans)");
  EXPECT_EQ(stats.errors[2], "mixed.json:4: not JSON");
  OtlpJsonReadStats missing;
  EXPECT_FALSE(ReadOtlpJsonFile("/nonexistent/x.json", [](Span) {}, missing).ok());
}

}  // namespace
}  // namespace threadline
