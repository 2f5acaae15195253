// The exposition formats of a MetricsRegistry, as /metrics serves them.
//
// Prometheus text (version 0.0.4), the default:
//   # HELP <name> <help, with \ and newline escaped>      (omitted when there is no help)
//   # TYPE <name> counter|gauge|histogram
//   <name>{<label>="<value, with \ " and newline escaped>",...} <value>
// Families come sorted by name, series by labels. Names are written as registered (counters are
// registered with their _total suffix). A histogram writes <name>_bucket{...,le="<bound>"} for
// each bound and le="+Inf", then <name>_sum and <name>_count. Numbers: integers in decimal,
// floating point in the shortest form that reads back exactly, +Inf/-Inf/NaN spelt so.
//
// OpenMetrics text (1.0.0), for scrapers that ask for it (Accept: application/openmetrics-text;
// Prometheus does by default): the same series, with what the OpenMetrics specification adds:
//   - `# TYPE` before `# HELP`; a counter family is named without `_total` and its sample keeps
//     it (`# TYPE threadline_spans_exported counter` / `threadline_spans_exported_total 42`);
//   - `le` values in the canonical form (Go's %g with ".0" when there is no point or exponent:
//     "0.005", "1.0", "30.0"), floating-point values with a point or an exponent;
//   - histogram buckets carry their exemplar, if any:
//     `..._bucket{...,le="0.25"} 7 # {trace_id="<32 hex>",span_id="<16 hex>"} 0.1234 1700000000.123456789`;
//   - the exposition ends with `# EOF`.
// Prometheus stores the OpenMetrics `le` of whole-number bounds as "1.0" where the plain text
// gave "1" (Prometheus 3 normalises both); docs/metrics.md says so.
//
// A name registered as two different types would make the exposition invalid; the first type
// (counter, then gauge, then histogram) is kept and the others are left out.
#pragma once

#include <string>
#include <string_view>

#include "agent/common/metrics.h"

namespace threadline {

enum class ExpositionFormat { kPrometheusText, kOpenMetrics };

inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";
inline constexpr std::string_view kOpenMetricsContentType =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

std::string RenderPrometheusText(const MetricsRegistry::FullSnapshot& snapshot);
std::string RenderPrometheusText(const MetricsRegistry& registry);
std::string RenderOpenMetricsText(const MetricsRegistry::FullSnapshot& snapshot);
std::string RenderOpenMetricsText(const MetricsRegistry& registry);

// The format an HTTP Accept header asks for: OpenMetrics when application/openmetrics-text is
// acceptable (q > 0) and preferred at least as much as the plain text (text/plain, text/*,
// */*); the plain text otherwise, and for a missing or empty header.
ExpositionFormat NegotiateExposition(std::string_view accept);

// A sample value or bucket bound as the Prometheus text format spells it (exposed for tests).
std::string FormatPrometheusNumber(double v);
// A histogram bound in OpenMetrics' canonical form ("0.001", "1.0", "1e+06", "+Inf").
std::string FormatOpenMetricsCanonical(double v);

}  // namespace threadline
