#include "agent/output/console_tree.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <span>

namespace threadline {

namespace {

std::string AttributeText(const AttributeValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return x;
        } else if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, int64_t>) {
          return std::to_string(x);
        } else {
          char buf[32];
          std::snprintf(buf, sizeof(buf), "%g", x);
          return buf;
        }
      },
      v);
}

// Terminal text: control characters would break the tree (or the terminal), so they become '?'.
void AppendPrintable(std::string_view s, std::string& out) {
  for (char c : s) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
}

std::string_view ServiceName(const Span& s) {
  if (s.resource != nullptr) {
    if (const AttributeValue* v = FindAttribute(s.resource->attributes, "service.name"))
      if (const auto* str = std::get_if<std::string>(v)) return *str;
  }
  return "unknown_service";
}

constexpr std::string_view kKeyAttributes[] = {"http.response.status_code", "url.path",
                                               "db.response.status_code", "db.query.text"};

void AppendSpanLine(const Span& s, size_t depth, bool orphan, std::string& out) {
  out.append(2 * (depth + 1), ' ');
  AppendPrintable(s.name.empty() ? std::string_view("(unnamed)") : std::string_view(s.name), out);
  out += " [";
  out += ToString(s.kind);
  out += "] ";
  AppendPrintable(ServiceName(s), out);
  out += ' ';
  out += ConsoleTreeSink::FormatDuration(s.end_unix_ns > s.start_unix_ns ? s.end_unix_ns - s.start_unix_ns : 0);
  out += ' ';
  out += ToString(s.status);
  if (!s.status_message.empty()) {
    out += " \"";
    AppendPrintable(s.status_message, out);
    out += '"';
  }
  for (std::string_view key : kKeyAttributes) {
    if (const AttributeValue* v = FindAttribute(s.attributes, key)) {
      out += ' ';
      out += key;
      out += '=';
      AppendPrintable(AttributeText(*v), out);
    }
  }
  if (orphan) {
    out += " (parent ";
    out += s.parent_span_id.Hex();
    out += " not seen)";
  }
  out += '\n';
}

bool StartsBefore(const Span* a, const Span* b) {
  if (a->start_unix_ns != b->start_unix_ns) return a->start_unix_ns < b->start_unix_ns;
  return a->span_id.bytes < b->span_id.bytes;
}

struct SpanIdHash {
  size_t operator()(const SpanId& id) const {
    uint64_t v;
    std::memcpy(&v, id.bytes.data(), sizeof(v));
    return v;
  }
};

}  // namespace

uint64_t ConsoleTreeSink::SteadyNowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

size_t ConsoleTreeSink::TraceIdHash::operator()(const TraceId& id) const {
  uint64_t a, b;
  std::memcpy(&a, id.bytes.data(), 8);
  std::memcpy(&b, id.bytes.data() + 8, 8);
  return a ^ (b * 0x9e3779b97f4a7c15ULL);
}

std::string ConsoleTreeSink::FormatDuration(uint64_t ns) {
  char buf[32];
  if (ns >= 1'000'000'000) {
    std::snprintf(buf, sizeof(buf), "%.2fs", static_cast<double>(ns) / 1e9);
  } else if (ns >= 1'000'000) {
    std::snprintf(buf, sizeof(buf), "%.1fms", static_cast<double>(ns) / 1e6);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f\xc2\xb5s", static_cast<double>(ns) / 1e3);
  }
  return buf;
}

std::string ConsoleTreeSink::RenderTrace(const std::vector<Span>& spans) {
  std::string out;
  if (spans.empty()) return out;
  out += "trace ";
  out += spans.front().trace_id.Hex();
  out += " (";
  out += std::to_string(spans.size());
  out += spans.size() == 1 ? " span)\n" : " spans)\n";

  std::unordered_map<SpanId, bool, SpanIdHash> present;
  for (const Span& s : spans) present.emplace(s.span_id, true);

  std::unordered_map<SpanId, std::vector<const Span*>, SpanIdHash> children;
  std::vector<const Span*> roots;
  for (const Span& s : spans) {
    const bool has_parent = s.parent_span_id.valid() && s.parent_span_id != s.span_id &&
                            present.contains(s.parent_span_id);
    if (has_parent) {
      children[s.parent_span_id].push_back(&s);
    } else {
      roots.push_back(&s);
    }
  }
  for (auto& [id, list] : children) std::sort(list.begin(), list.end(), StartsBefore);
  std::sort(roots.begin(), roots.end(), StartsBefore);

  // Iterative depth-first walk (a long chain must not exhaust the stack); `printed` guards
  // against parent cycles and duplicate span ids.
  std::unordered_map<const Span*, bool> printed;
  struct Frame {
    const Span* span;
    size_t depth;
  };
  std::vector<Frame> stack;
  const auto walk = [&](const Span* root, bool orphan_root) {
    stack.push_back({root, 0});
    bool first = true;
    while (!stack.empty()) {
      Frame f = stack.back();
      stack.pop_back();
      if (!printed.emplace(f.span, true).second) continue;
      AppendSpanLine(*f.span, f.depth, first && orphan_root, out);
      first = false;
      auto it = children.find(f.span->span_id);
      if (it == children.end()) continue;
      for (auto c = it->second.rbegin(); c != it->second.rend(); ++c) stack.push_back({*c, f.depth + 1});
    }
  };
  for (const Span* r : roots) walk(r, r->parent_span_id.valid());
  // Spans in a parent cycle are reachable from no root: print them as orphans.
  std::vector<const Span*> rest;
  for (const Span& s : spans)
    if (!printed.contains(&s)) rest.push_back(&s);
  std::sort(rest.begin(), rest.end(), StartsBefore);
  for (const Span* r : rest)
    if (!printed.contains(r)) walk(r, true);
  return out;
}

ConsoleTreeSink::ConsoleTreeSink(std::FILE* out, ConsoleTreeOptions options, NowFn now,
                                 MetricsRegistry& metrics)
    : out_(out),
      options_(options),
      now_(std::move(now)),
      printed_quiet_(metrics.GetCounter("threadline_console_traces_printed_total", {{"reason", "quiet"}},
                                        "Traces printed by --output=console, by what triggered it")),
      printed_max_traces_(metrics.GetCounter("threadline_console_traces_printed_total", {{"reason", "max_traces"}})),
      printed_max_spans_(metrics.GetCounter("threadline_console_traces_printed_total", {{"reason", "max_spans"}})),
      printed_flush_(metrics.GetCounter("threadline_console_traces_printed_total", {{"reason", "flush"}})) {
  if (options_.max_traces == 0) options_.max_traces = 1;
  if (options_.max_spans == 0) options_.max_spans = 1;
}

void ConsoleTreeSink::OnSpan(Span&& span) {
  const uint64_t now = now_();
  auto idx = index_.find(span.trace_id);
  TraceList::iterator it;
  if (idx == index_.end()) {
    traces_.push_back(HeldTrace{.trace_id = span.trace_id, .spans = {}, .last_arrival_ns = now, .has_root = false});
    it = std::prev(traces_.end());
    index_.emplace(span.trace_id, it);
  } else {
    it = idx->second;
    traces_.splice(traces_.end(), traces_, it);  // keep the list ordered by last arrival
  }
  it->last_arrival_ns = now;
  if (!span.parent_span_id.valid()) it->has_root = true;
  it->spans.push_back(std::move(span));
  ++held_spans_;
  EnforceBounds();
  Poll();
}

void ConsoleTreeSink::EnforceBounds() {
  while (traces_.size() > options_.max_traces) PrintAndErase(traces_.begin(), printed_max_traces_);
  while (held_spans_ > options_.max_spans && !traces_.empty())
    PrintAndErase(traces_.begin(), printed_max_spans_);
}

void ConsoleTreeSink::Poll() {
  const uint64_t now = now_();
  const uint64_t shortest = std::min(options_.quiet_ns, options_.root_quiet_ns);
  // Ordered by last arrival: only a prefix can be due.
  for (auto it = traces_.begin(); it != traces_.end();) {
    const uint64_t idle = now >= it->last_arrival_ns ? now - it->last_arrival_ns : 0;
    if (idle < shortest) break;
    auto next = std::next(it);
    if (idle >= options_.quiet_ns || (it->has_root && idle >= options_.root_quiet_ns))
      PrintAndErase(it, printed_quiet_);
    it = next;
  }
}

void ConsoleTreeSink::Flush() {
  while (!traces_.empty()) PrintAndErase(traces_.begin(), printed_flush_);
  std::fflush(out_);
}

void ConsoleTreeSink::PrintAndErase(TraceList::iterator it, Counter& reason) {
  const std::string text = RenderTrace(it->spans);
  std::fwrite(text.data(), 1, text.size(), out_);
  std::fflush(out_);
  reason.Add();
  held_spans_ -= it->spans.size();
  index_.erase(it->trace_id);
  traces_.erase(it);
}

}  // namespace threadline
