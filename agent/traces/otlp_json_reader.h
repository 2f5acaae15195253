// Reads spans back from OTLP JSON: what `--output json` writes and what the OpenTelemetry
// Collector's file exporter writes, one ExportTraceServiceRequest per line. Also accepted: a
// file holding one request spread over many lines (pretty-printed), or a JSON array of
// requests; ids in hex (the OTLP JSON rule) or base64 (protobuf's canonical JSON, which some
// tools write); 64-bit numbers as strings or numbers; enums as numbers or names
// ("SPAN_KIND_SERVER"); lowerCamelCase or snake_case field names.
//
// Input is untrusted: a line that is not JSON, or not a request, is skipped and counted (with
// its line number in the first errors), a span without valid ids is skipped and counted.
// Nothing throws out of here.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/result.h"
#include "agent/spans/span.h"

namespace threadline {

struct OtlpJsonReadStats {
  size_t requests = 0;
  size_t spans = 0;
  size_t bad_lines = 0;   // not JSON, or not an ExportTraceServiceRequest
  size_t bad_spans = 0;   // no valid trace or span id
  std::vector<std::string> errors;  // the first few problems, "file:line: why"

  void Note(std::string error);
};

using SpanCallback = std::function<void(Span)>;

// Reads `text` (the content of a file called `name`, for messages).
void ReadOtlpJson(std::string_view text, std::string_view name, const SpanCallback& on_span, OtlpJsonReadStats& stats);
// Reads a file; fails only when it cannot be read at all.
Status ReadOtlpJsonFile(const std::string& path, const SpanCallback& on_span, OtlpJsonReadStats& stats);

}  // namespace threadline
