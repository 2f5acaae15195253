// --output=jsonl: the OTLP JSON encoding, one ExportTraceServiceRequest per line, as the
// OpenTelemetry Collector's file exporter writes it, so its readers (the collector's otlpjson
// receiver, jq scripts, test harnesses) take our files unchanged.
//
// Written by hand from the Span model, not via protobuf's util::MessageToJsonString:
//   - The OTLP JSON rules differ from protobuf's canonical JSON mapping: trace/span ids are
//     lowercase hex, not base64. MessageToJsonString would need a second pass that finds and
//     rewrites every id (a parse or a fragile text patch).
//   - It would build a protobuf message and walk it by reflection per span; writing straight
//     from our structs allocates only the output string (reused between lines).
//   - Field order and omission then follow the Collector exactly, which a byte-exact test pins.
//
// The encoding (OTLP spec, "JSON Protobuf Encoding", and the Collector's output):
//   - lowerCamelCase field names in .proto declaration order; enums as integers;
//   - 64-bit integers (timeUnixNano, startTimeUnixNano, intValue) as decimal strings;
//     doubles as JSON numbers (NaN/Infinity/-Infinity as strings, the proto3 JSON spelling);
//   - fields with default values omitted (empty strings/lists, zero numbers, all-zero ids),
//     except oneof members (an AnyValue of "" or 0 is still written), and the message fields
//     the Collector always writes: resourceSpans[].resource, scopeSpans[].scope, spans[].status;
//   - strings escaped per RFC 8259 (", \, control characters; U+2028/U+2029 as \u escapes);
//     bytes that are not valid UTF-8 become U+FFFD, one per byte (as Go's encoder does).
#pragma once

#include <cstddef>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/spans/span.h"
#include "exporter/byte_writer.h"

namespace threadline {

// Appends `s` as a JSON string literal (with the quotes) to `out`.
void AppendJsonString(std::string_view s, std::string& out);

// Appends one ExportTraceServiceRequest holding `spans` (grouped by resource, like
// the protobuf encoder) as compact JSON, without a newline.
void AppendOtlpJson(std::span<const Span> spans, ByteBuffer& out);
std::string ToOtlpJson(std::span<const Span> spans);

// A SpanSink that writes JSON lines to a FILE* it does not own. Spans are held until Flush()
// or until `max_batch_spans` are held; each write is one line (one request) and is flushed to
// the file. Write failures are counted (threadline_output_write_errors_total{output="jsonl"}),
// the spans of a failed line are dropped.
class JsonLinesSink : public SpanSink {
 public:
  static constexpr size_t kDefaultMaxBatchSpans = 512;

  explicit JsonLinesSink(std::FILE* out, size_t max_batch_spans = kDefaultMaxBatchSpans,
                         MetricsRegistry& metrics = MetricsRegistry::Global());

  void OnSpan(Span&& span) override;
  void Flush() override;

  size_t held() const { return batch_.size(); }

 private:
  void WriteBatch();

  std::FILE* out_;
  size_t max_batch_spans_;
  std::vector<Span> batch_;
  ByteBuffer line_;  // reused between lines
  Counter& lines_written_;
  Counter& spans_written_;
  Counter& write_errors_;
};

}  // namespace threadline
