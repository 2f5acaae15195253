#include "exporter/prometheus_text.h"

#include <charconv>
#include <cmath>
#include <map>
#include <vector>

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

}  // namespace

std::string FormatPrometheusNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, ptr);
}

std::string RenderPrometheusText(const MetricsRegistry::FullSnapshot& snapshot) {
  std::map<std::string, Family> families;
  // Counters first, then gauges: the order in which a clash of types is settled.
  for (bool counters : {true, false}) {
    for (const MetricsRegistry::Sample& s : snapshot.scalars) {
      if (s.is_counter != counters) continue;
      Family* f = FamilyFor(families, s.name, counters ? Type::kCounter : Type::kGauge, s.help);
      if (f == nullptr) continue;
      f->body += s.name;
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
      const std::string le = i < d.upper_bounds.size() ? FormatPrometheusNumber(d.upper_bounds[i]) : "+Inf";
      f->body += h.name;
      f->body += "_bucket";
      AppendLabels(h.labels, "le", le, f->body);
      f->body += ' ';
      f->body += std::to_string(d.cumulative[i]);
      f->body += '\n';
    }
    f->body += h.name;
    f->body += "_sum";
    AppendLabels(h.labels, {}, {}, f->body);
    f->body += ' ';
    f->body += FormatPrometheusNumber(d.sum);
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
    if (!f.help.empty()) {
      out += "# HELP ";
      out += name;
      out += ' ';
      AppendEscaped(f.help, /*escape_quote=*/false, out);
      out += '\n';
    }
    out += "# TYPE ";
    out += name;
    out += ' ';
    out += TypeName(f.type);
    out += '\n';
    out += f.body;
  }
  return out;
}

std::string RenderPrometheusText(const MetricsRegistry& registry) {
  return RenderPrometheusText(registry.SnapshotAll());
}

}  // namespace threadline
