// The Prometheus text exposition format (version 0.0.4) of a MetricsRegistry, as /metrics
// serves it:
//   # HELP <name> <help, with \ and newline escaped>      (omitted when there is no help)
//   # TYPE <name> counter|gauge|histogram
//   <name>{<label>="<value, with \ " and newline escaped>",...} <value>
// Families come sorted by name, series by labels. Names are written as registered (counters are
// registered with their _total suffix). A histogram writes <name>_bucket{...,le="<bound>"} for
// each bound and le="+Inf", then <name>_sum and <name>_count. Numbers: integers in decimal,
// floating point in the shortest form that reads back exactly, +Inf/-Inf/NaN spelt so.
//
// A name registered as two different types would make the exposition invalid; the first type
// (counter, then gauge, then histogram) is kept and the others are left out.
#pragma once

#include <string>
#include <string_view>

#include "agent/common/metrics.h"

namespace threadline {

inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string RenderPrometheusText(const MetricsRegistry::FullSnapshot& snapshot);
std::string RenderPrometheusText(const MetricsRegistry& registry);

// A sample value or bucket bound as the format spells it (exposed for tests).
std::string FormatPrometheusNumber(double v);

}  // namespace threadline
