#include "agent/app/options.h"

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <memory>

#include "agent/config/config_file.h"
#include "agent/config/settings.h"
#include "agent/spans/redaction.h"

namespace threadline {

namespace {
constexpr char kVersion[] = "threadline 0.1.0";
}  // namespace

Result<AgentOptions> ParseOptions(int argc, char** argv) { return ParseOptions(argc, argv, ProcessEnv()); }

Result<AgentOptions> ParseOptions(int argc, char** argv, const EnvLookup& env) {
  AgentOptions o;

  CLI::App app{"threadline: zero-code distributed tracing with eBPF.\n"
               "Precedence: flags > environment (THREADLINE_<KEY>, OTEL_*) > config file > defaults;\n"
               "--print-config shows every setting, its key and where its value came from.\n"
               "threadline view FILE...: the web view of OTLP JSON files (threadline view --help)."};
  app.set_version_flag("--version", kVersion);
  app.add_flag("--probe", o.probe_only,
               "Load and attach one probe of each kind, print what this kernel supports and "
               "which hook each feature uses, then exit");
  app.add_flag("--print-config", o.print_config,
               "Print the effective configuration as YAML, each value's source as a comment, then "
               "exit (needs no privileges)");
  app.add_option("--config", o.config_file, "YAML config file (env THREADLINE_CONFIG)");
  app.add_option("--duration", o.duration_s, "Stop by itself after this many seconds")
      ->check(CLI::NonNegativeNumber);

  // One flag per setting that has one; values stay text until config::Resolve parses them, so
  // a flag is validated exactly like the same value in the file or the environment.
  const auto& settings = config::Settings();
  std::vector<std::vector<std::string>> flag_values(settings.size());
  for (size_t i = 0; i < settings.size(); ++i) {
    const auto& s = settings[i];
    if (s.flag.empty()) continue;
    std::string help = s.help + " [" + s.key + ", env " + s.Env() + "]";
    auto* opt = app.add_option(s.flag, flag_values[i], help);
    if (!s.list) opt->expected(1)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.get_exit_code() == 0 ? app.help() : e.what();
    if (e.get_name() == "CallForVersion") msg = std::string(kVersion) + "\n";
    return Error{msg, e.get_exit_code()};
  }

  std::vector<config::RawValue> flags;
  for (size_t i = 0; i < settings.size(); ++i) {
    if (settings[i].flag.empty() || app.count(settings[i].flag) == 0) continue;
    flags.push_back({settings[i].key, flag_values[i], {ConfigSource::kFlag, settings[i].flag}});
  }
  std::vector<config::RawValue> file;
  if (o.config_file.empty()) {
    if (auto path = env ? env("THREADLINE_CONFIG") : std::nullopt; path && !path->empty()) o.config_file = *path;
  }
  if (!o.config_file.empty()) {
    ASSIGN_OR_RETURN(file, config::LoadConfigFile(o.config_file));
  }
  RETURN_IF_ERROR(config::Resolve(o, file, config::EnvironmentValues(env), flags, env));
  return o;
}

EnvLookup OtlpEnvironment(const AgentOptions& o, EnvLookup process_env) {
  std::map<std::string, std::string> vars;
  for (const char* prefix : {"OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_"}) {
    const std::string p = prefix;
    vars[p + "PROTOCOL"] = o.otlp_protocol;
    vars[p + "HEADERS"] = o.otlp_headers;
    vars[p + "TIMEOUT"] = std::to_string(o.otlp_timeout_ms);
  }
  // Empty counts as unset (exporter/otlp_config.h): an empty traces endpoint lets the base
  // endpoint (or the default) decide, whatever the process environment holds.
  vars["OTEL_EXPORTER_OTLP_ENDPOINT"] = o.otlp_endpoint;
  vars["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = o.otlp_traces_endpoint;
  return WithOverrides(std::move(vars), std::move(process_env));
}

namespace {

// A YAML double-quoted scalar (valid YAML whatever the text holds).
std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// OTLP header values are credentials (api keys, bearer tokens): only their names are shown.
std::string RedactHeaderValues(const std::string& headers) {
  std::string out;
  size_t start = 0;
  while (start <= headers.size()) {
    size_t comma = headers.find(',', start);
    if (comma == std::string::npos) comma = headers.size();
    std::string member = headers.substr(start, comma - start);
    if (!out.empty()) out += ",";
    const size_t eq = member.find('=');
    out += eq == std::string::npos ? member : member.substr(0, eq + 1) + std::string(kRedacted);
    start = comma + 1;
  }
  return out;
}

}  // namespace

std::string FormatEffectiveConfig(const AgentOptions& o) {
  std::string out =
      "# threadline effective configuration (threadline --print-config).\n"
      "# Precedence: flags > environment (THREADLINE_<KEY>, OTEL_EXPORTER_OTLP_*) > config file > defaults.\n"
      "# Each value is followed by its source. Loadable as is with --config.\n";
  if (!o.config_file.empty()) out += "# Config file: " + o.config_file + "\n";
  std::vector<std::string> open;  // the sections printed so far, outermost first
  for (const auto& s : config::Settings()) {
    std::vector<std::string> parts;
    size_t start = 0;
    for (size_t dot; (dot = s.key.find('.', start)) != std::string::npos; start = dot + 1)
      parts.push_back(s.key.substr(start, dot - start));
    const std::string leaf = s.key.substr(start);
    size_t common = 0;
    while (common < open.size() && common < parts.size() && open[common] == parts[common]) ++common;
    open.resize(common);
    for (size_t i = common; i < parts.size(); ++i) {
      out += std::string(2 * i, ' ') + parts[i] + ":\n";
      open.push_back(parts[i]);
    }
    std::vector<std::string> values = s.get(o);
    if (s.secret)
      for (auto& v : values) v = RedactHeaderValues(v);
    std::string rendered;
    if (s.map_items) {
      // key=value items as the map the file may hold (keys never hold '=': labels, routes).
      rendered = "{";
      for (size_t i = 0; i < values.size(); ++i) {
        const size_t eq = values[i].rfind('=');
        rendered += (i ? ", " : "") + Quote(values[i].substr(0, eq)) + ": " + Quote(values[i].substr(eq + 1));
      }
      rendered += "}";
    } else if (s.list) {
      rendered = "[";
      for (size_t i = 0; i < values.size(); ++i) rendered += (i ? ", " : "") + Quote(values[i]);
      rendered += "]";
    } else {
      rendered = Quote(values.empty() ? "" : values.front());
    }
    auto origin = o.sources.find(s.key);
    std::string comment = config::DescribeOrigin(origin == o.sources.end() ? ValueOrigin{} : origin->second);
    if (s.key == "kubernetes.enabled")
      comment += std::string("; resolved: ") + (o.kubernetes.active ? "on" : "off");
    out += std::string(2 * parts.size(), ' ') + leaf + ": " + rendered + "  # " + comment + "\n";
  }
  return out;
}

}  // namespace threadline
