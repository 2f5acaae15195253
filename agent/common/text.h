// Small text helpers for the settings the agent reads from the environment and its flags
// (OTEL_* variables, HTTP header lines).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/common/result.h"

namespace threadline {

// `s` without leading and trailing whitespace (std::isspace).
std::string_view TrimSpace(std::string_view s);
// `s` with ASCII letters lower-cased.
std::string AsciiLower(std::string_view s);

// A `key=value,key=value` list in the W3C Baggage format, as OTEL_EXPORTER_OTLP_HEADERS and
// OTEL_RESOURCE_ATTRIBUTES use it: members and their keys and values trimmed, empty members
// skipped, ";property" parts ignored, keys and values percent-decoded; in order, duplicates
// kept. Errors (no '=', empty key, bad percent-escape) name `variable`.
// The members of a comma-separated list, trimmed, empty ones ("a,,b", a trailing comma)
// skipped; views into `text`.
std::vector<std::string_view> ListMembers(std::string_view text);

using KeyValueList = std::vector<std::pair<std::string, std::string>>;
Result<KeyValueList> ParseKeyValueList(std::string_view text, std::string_view variable);

}  // namespace threadline
