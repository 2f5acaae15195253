#include "agent/config/config_file.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

namespace threadline::config {

namespace {

// Whether some setting's key lies under `section` ("exporters" or "exporters.otlp").
bool IsSection(const std::string& section) {
  const std::string prefix = section + ".";
  for (const auto& s : Settings())
    if (s.key.compare(0, prefix.size(), prefix) == 0) return true;
  return false;
}

std::string Line(const YAML::Node& node) { return std::to_string(node.Mark().line + 1); }

class Walker {
 public:
  explicit Walker(std::string name) : name_(std::move(name)) {}

  Status Map(const YAML::Node& map, const std::string& section) {
    std::set<std::string> seen;
    for (const auto& entry : map) {
      const YAML::Node& k = entry.first;
      const YAML::Node& v = entry.second;
      if (!k.IsScalar()) return Fail(k, section.empty() ? "a key must be a plain name" : section + ": a key must be a plain name");
      const std::string key = section.empty() ? k.Scalar() : section + "." + k.Scalar();
      if (!seen.insert(k.Scalar()).second) return Fail(k, "duplicate key " + key);
      if (const Setting* s = FindSetting(key)) {
        RETURN_IF_ERROR(Value(*s, k, v));
      } else if (IsSection(key)) {
        if (v.IsNull()) continue;  // "kubernetes:" with nothing under it
        if (!v.IsMap()) return Fail(v, key + " is a section: expected keys under it");
        RETURN_IF_ERROR(Map(v, key));
      } else {
        std::string msg = "unknown key " + key;
        if (std::string hint = SuggestKey(key); !hint.empty()) msg += " (did you mean " + hint + "?)";
        return Fail(k, msg);
      }
    }
    return OkStatus();
  }

  std::vector<RawValue> values;

 private:
  Status Value(const Setting& s, const YAML::Node& k, const YAML::Node& v) {
    RawValue raw{s.key, {}, {ConfigSource::kFile, name_ + ":" + Line(k)}};
    if (v.IsNull()) {
      // "key:" or "key: ~": an empty list, or an empty string for scalars.
      if (!s.list) raw.items.emplace_back();
    } else if (v.IsScalar()) {
      raw.items.push_back(v.Scalar());
    } else if (v.IsSequence() && s.list) {
      for (const auto& item : v) {
        if (!item.IsScalar()) return Fail(item, s.key + ": list items must be plain values");
        raw.items.push_back(item.Scalar());
      }
    } else if (v.IsMap() && s.map_items) {
      for (const auto& e : v) {
        if (!e.first.IsScalar() || !e.second.IsScalar()) return Fail(e.first, s.key + ": entries must be key: value");
        raw.items.push_back(e.first.Scalar() + "=" + e.second.Scalar());
      }
    } else {
      return Fail(v, s.key + (s.list ? ": expected a list of values" : ": expected one value, not a list or map"));
    }
    values.push_back(std::move(raw));
    return OkStatus();
  }

  Status Fail(const YAML::Node& at, const std::string& what) {
    return Error{"config file " + name_ + ":" + Line(at) + ": " + what, 2};
  }

  std::string name_;
};

}  // namespace

Result<std::vector<RawValue>> ParseConfigText(const std::string& text, const std::string& name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Error{"config file " + name + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg, 2};
  }
  Walker walker(name);
  if (root.IsNull()) return walker.values;
  if (!root.IsMap()) return Error{"config file " + name + ": expected a map of settings at the top", 2};
  try {
    RETURN_IF_ERROR(walker.Map(root, ""));
  } catch (const YAML::Exception& e) {
    return Error{"config file " + name + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg, 2};
  }
  return walker.values;
}

Result<std::vector<RawValue>> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error{"config file " + path + ": cannot read it", 2};
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Error{"config file " + path + ": read error", 2};
  return ParseConfigText(text.str(), path);
}

}  // namespace threadline::config
