#include "exporter/prometheus_text.h"

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

#include "agent/common/text.h"
#include "agent/spans/span.h"

namespace threadline {

namespace {

enum class Type { kCounter, kGauge, kHistogram };

std::string_view TypeName(Type t) {
  switch (t) {
    case Type::kCounter: return "counter";
    case Type::kGauge: return "gauge";
    case Type::kHistogram: return "histogram";
  }
  return "untyped";
}

struct Family {
  Type type;
  std::string help;
  std::string body;  // the sample lines
};

// Help text escapes \ and newline; label values escape " too.
void AppendEscaped(std::string_view text, bool escape_quote, std::string& out) {
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && escape_quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// {k="v",...,extra_name="extra_value"}; nothing when there are no labels at all.
void AppendLabels(const Labels& labels, std::string_view extra_name, std::string_view extra_value,
                  std::string& out) {
  if (labels.empty() && extra_name.empty()) return;
  char separator = '{';
  auto append = [&](std::string_view name, std::string_view value) {
    out += separator;
    separator = ',';
    out += name;
    out += "=\"";
    AppendEscaped(value, /*escape_quote=*/true, out);
    out += '"';
  };
  for (const auto& [k, v] : labels) append(k, v);
  if (!extra_name.empty()) append(extra_name, extra_value);
  out += '}';
}

// The family for `name`, or nullptr when the name is taken by another type.
Family* FamilyFor(std::map<std::string, Family>& families, const std::string& name, Type type,
                  const std::string& help) {
  auto [it, inserted] = families.try_emplace(name, Family{type, help, {}});
  if (!inserted && it->second.type != type) return nullptr;
  if (it->second.help.empty()) it->second.help = help;
  return &it->second;
}

void AppendHelp(std::string_view name, std::string_view help, std::string& out) {
  if (help.empty()) return;
  out += "# HELP ";
  out += name;
  out += ' ';
  AppendEscaped(help, /*escape_quote=*/false, out);
  out += '\n';
}

constexpr std::string_view kTotalSuffix = "_total";

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// A floating-point value as OpenMetrics wants it: with a point or an exponent ("3.0", not "3").
std::string FormatOpenMetricsFloat(double v) {
  std::string s = FormatPrometheusNumber(v);
  if (s.find_first_not_of("-0123456789") == std::string::npos) s += ".0";
  return s;
}

// ` # {trace_id="...",span_id="..."} <value> <seconds>.<ns>`
void AppendExemplar(const Exemplar& e, std::string& out) {
  out += " # {trace_id=\"";
  out += TraceId{e.trace_id}.Hex();
  out += "\",span_id=\"";
  out += SpanId{e.span_id}.Hex();
  out += "\"} ";
  out += FormatOpenMetricsFloat(e.value);
  char ts[48];
  std::snprintf(ts, sizeof(ts), " %" PRIu64 ".%09" PRIu64, e.time_unix_ns / 1000000000,
                e.time_unix_ns % 1000000000);
  out += ts;
}

std::string Render(const MetricsRegistry::FullSnapshot& snapshot, ExpositionFormat format) {
  const bool om = format == ExpositionFormat::kOpenMetrics;
  std::map<std::string, Family> families;
  // Counters first, then gauges: the order in which a clash of types is settled.
  for (bool counters : {true, false}) {
    for (const MetricsRegistry::Sample& s : snapshot.scalars) {
      if (s.is_counter != counters) continue;
      // OpenMetrics: the counter family is the name without _total, its sample has it.
      std::string family = s.name;
      std::string_view sample_suffix;
      if (om && counters) {
        if (EndsWith(family, kTotalSuffix)) family.resize(family.size() - kTotalSuffix.size());
        sample_suffix = kTotalSuffix;
      }
      Family* f = FamilyFor(families, family, counters ? Type::kCounter : Type::kGauge, s.help);
      if (f == nullptr) continue;
      f->body += family;
      f->body += sample_suffix;
      AppendLabels(s.labels, {}, {}, f->body);
      f->body += ' ';
      // Counters are stored as uint64 and passed through int64 in Sample.
      f->body += counters ? std::to_string(static_cast<uint64_t>(s.value)) : std::to_string(s.value);
      f->body += '\n';
    }
  }
  for (const MetricsRegistry::HistogramSample& h : snapshot.histograms) {
    Family* f = FamilyFor(families, h.name, Type::kHistogram, h.help);
    if (f == nullptr) continue;
    const Histogram::Data& d = h.data;
    for (size_t i = 0; i <= d.upper_bounds.size(); ++i) {
      std::string le = "+Inf";
      if (i < d.upper_bounds.size())
        le = om ? FormatOpenMetricsCanonical(d.upper_bounds[i]) : FormatPrometheusNumber(d.upper_bounds[i]);
      f->body += h.name;
      f->body += "_bucket";
      AppendLabels(h.labels, "le", le, f->body);
      f->body += ' ';
      f->body += std::to_string(d.cumulative[i]);
      if (om && i < d.exemplars.size() && d.exemplars[i].time_unix_ns != 0) AppendExemplar(d.exemplars[i], f->body);
      f->body += '\n';
    }
    f->body += h.name;
    f->body += "_sum";
    AppendLabels(h.labels, {}, {}, f->body);
    f->body += ' ';
    f->body += om ? FormatOpenMetricsFloat(d.sum) : FormatPrometheusNumber(d.sum);
    f->body += '\n';
    f->body += h.name;
    f->body += "_count";
    AppendLabels(h.labels, {}, {}, f->body);
    f->body += ' ';
    f->body += std::to_string(d.count);
    f->body += '\n';
  }

  std::string out;
  for (const auto& [name, f] : families) {
    // The text format's habit: HELP, then TYPE; OpenMetrics: TYPE first.
    if (!om) AppendHelp(name, f.help, out);
    out += "# TYPE ";
    out += name;
    out += ' ';
    out += TypeName(f.type);
    out += '\n';
    if (om) AppendHelp(name, f.help, out);
    out += f.body;
  }
  if (om) out += "# EOF\n";
  return out;
}

// The q value of one media range's parameters ("; q=0.5; version=1.0.0"); 1 when absent.
double QualityOf(std::string_view params) {
  while (!params.empty()) {
    size_t semi = params.find(';');
    std::string_view param = TrimSpace(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
    if (param.size() > 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
      std::string value(TrimSpace(param.substr(2)));
      char* end = nullptr;
      double q = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || !std::isfinite(q)) return 0;
      return std::clamp(q, 0.0, 1.0);
    }
  }
  return 1;
}

}  // namespace

std::string FormatPrometheusNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, ptr);
}

std::string FormatOpenMetricsCanonical(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return "0.0";
  // The shortest digits that read back exactly, as d.ddde±x; then the notation Go's %g picks
  // for its shortest form: exponent when x < -4 or x >= 6 (at least two exponent digits),
  // fixed otherwise.
  char buf[64];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  if (ec != std::errc()) return "NaN";
  const std::string_view sci(buf, static_cast<size_t>(ptr - buf));
  const size_t e = sci.find('e');
  std::string_view mantissa = sci.substr(0, e);
  const int exponent = std::atoi(std::string(sci.substr(e + 1)).c_str());
  std::string sign;
  if (!mantissa.empty() && mantissa[0] == '-') {
    sign = "-";
    mantissa.remove_prefix(1);
  }
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits += c;
  std::string out = sign;
  if (exponent < -4 || exponent >= 6) {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out += digits.substr(1);
    }
    char exp[16];
    std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + exp;
  }
  const int point = exponent + 1;  // digits before the decimal point
  if (point <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-point), '0');
    out += digits;
    return out;
  }
  if (static_cast<size_t>(point) >= digits.size()) {
    out += digits;
    out.append(static_cast<size_t>(point) - digits.size(), '0');
    return out + ".0";
  }
  out += digits.substr(0, static_cast<size_t>(point));
  out += '.';
  out += digits.substr(static_cast<size_t>(point));
  return out;
}

std::string RenderPrometheusText(const MetricsRegistry::FullSnapshot& snapshot) {
  return Render(snapshot, ExpositionFormat::kPrometheusText);
}

std::string RenderPrometheusText(const MetricsRegistry& registry) {
  return RenderPrometheusText(registry.SnapshotAll());
}

std::string RenderOpenMetricsText(const MetricsRegistry::FullSnapshot& snapshot) {
  return Render(snapshot, ExpositionFormat::kOpenMetrics);
}

std::string RenderOpenMetricsText(const MetricsRegistry& registry) {
  return RenderOpenMetricsText(registry.SnapshotAll());
}

ExpositionFormat NegotiateExposition(std::string_view accept) {
  double openmetrics = 0;
  double text = 0;
  for (std::string_view range : ListMembers(accept)) {
    const size_t semi = range.find(';');
    const std::string type = AsciiLower(TrimSpace(range.substr(0, semi)));
    const double q = QualityOf(semi == std::string_view::npos ? std::string_view() : range.substr(semi + 1));
    if (type == "application/openmetrics-text") {
      openmetrics = std::max(openmetrics, q);
    } else if (type == "text/plain" || type == "text/*" || type == "*/*") {
      text = std::max(text, q);
    }
  }
  return openmetrics > 0 && openmetrics >= text ? ExpositionFormat::kOpenMetrics
                                                : ExpositionFormat::kPrometheusText;
}

}  // namespace threadline
