// The YAML config file (--config FILE or THREADLINE_CONFIG): nested maps whose dotted paths are
// the settings' keys (settings.h), e.g.
//
//   selection:
//     exe: ["*nginx*"]
//   limits:
//     capture_bytes: 8192
//
// Strict: an unknown key, a duplicate key, a list where one value is expected (or a map where
// a section is expected) is an error naming the key and its line, so a typo never silently does
// nothing. A scalar where a list is expected is a one-item list; `selection.labels` may also be
// a map (app: web -> "app=web"). An empty file (or only comments) sets nothing.
#pragma once

#include <string>
#include <vector>

#include "agent/common/result.h"
#include "agent/config/settings.h"

namespace threadline::config {

// The values the file sets, in file order, each with origin "<path>:<line>".
Result<std::vector<RawValue>> LoadConfigFile(const std::string& path);
// The same from text (tests); `name` stands for the path in origins and errors.
Result<std::vector<RawValue>> ParseConfigText(const std::string& text, const std::string& name);

}  // namespace threadline::config
