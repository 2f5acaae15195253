// The table of the agent's settings and the one place their sources are layered.
//
// A setting is data (Pixie's kProbeSpecs style): its dotted key, its flag, its environment
// variables, whether it is a list, and two functions that parse a value into AgentOptions and
// print it back. Every source hands raw text to the same parser, so a bad value is rejected the
// same way whether it came from a flag, the environment or the file, and the message names the
// source ("--capture-bytes", "THREADLINE_LIMITS_CAPTURE_BYTES", "config.yaml:7").
#pragma once

#include <functional>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include "agent/app/options.h"
#include "agent/common/result.h"

namespace threadline::config {

struct Setting {
  std::string key;                     // "limits.capture_bytes"
  std::string flag;                    // "--capture-bytes", or empty: no flag
  std::vector<std::string> extra_env;  // standard variables read after THREADLINE_<KEY> (OTEL_*, NODE_NAME)
  bool list = false;                   // a list: env is comma-separated, a flag repeats
  std::string help;
  // Parses `items` (one item for scalars) into the options; the error says what is wrong with
  // the value, without the source (the caller adds it).
  std::function<Status(AgentOptions&, const std::vector<std::string>&)> set;
  std::function<std::vector<std::string>(const AgentOptions&)> get;
  bool secret = false;  // printed redacted by --print-config
  bool map_items = false;  // a list whose file form may also be a map: `key: value` -> "key=value"
  std::string Env() const;  // THREADLINE_<KEY>: upper case, '.' -> '_'
};

// Every setting, grouped by section in the order --print-config prints them.
const std::vector<Setting>& Settings();
// One item of sampling.slow_routes, "ROUTE=MS": the route pattern and the milliseconds.
Result<std::pair<std::string, uint32_t>> ParseSlowRoute(const std::string& item);
const Setting* FindSetting(std::string_view key);

// One value from one source, before parsing.
struct RawValue {
  std::string key;
  std::vector<std::string> items;
  ValueOrigin origin;
};

// The environment's values: for each setting, THREADLINE_<KEY> if set and non-empty, else the
// first set standard variable of extra_env. Lists split at commas (items trimmed, empty dropped).
std::vector<RawValue> EnvironmentValues(const EnvLookup& env);

// THE precedence, in one place: applies defaults' computed parts (from `env`), then `file`,
// `environment` and `flags` values in that order over `options`, each later one overriding,
// records every key's origin, then derives what depends on several keys (output mode from the
// endpoint, kubernetes.active, traces_endpoint vs endpoint). Errors name the source.
Status Resolve(AgentOptions& options, const std::vector<RawValue>& file,
               const std::vector<RawValue>& environment, const std::vector<RawValue>& flags,
               const EnvLookup& env);

// "default", "file config.yaml:3", "env THREADLINE_X", "flag --pid".
std::string DescribeOrigin(const ValueOrigin& origin);

// The closest known key to a mistyped one (edit distance <= 3), or empty.
std::string SuggestKey(std::string_view unknown);

}  // namespace threadline::config
