// Small readers for /proc that report failures as values. Processes vanish between any two reads
// and permission checks differ per file, so every read can fail and none of them throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "agent/common/result.h"

namespace threadline::discovery {

// The whole file, up to max_bytes (procfs files report size 0, so this reads until EOF).
Result<std::string> ReadProcFile(const std::string& path, size_t max_bytes = 1 << 20);

// The target of a symlink (procfs magic links like /proc/<pid>/exe and /proc/<pid>/fd/<n>).
Result<std::string> ReadLink(const std::string& path);

// How a file is named in logs: the target of the link at `path` (/proc/<pid>/exe), else `path`.
std::string LinkTargetOr(const std::string& path);

// The number in a procfs anonymous-object link such as "socket:[123]" or "net:[4026531840]",
// given its prefix ("socket", "net"). nullopt when the text is not of that form.
std::optional<uint64_t> ParseBracketedInode(std::string_view link, std::string_view prefix);

// Parses a whole string as a decimal number; nullopt on anything else (empty, sign, trailing).
std::optional<uint64_t> ParseDecimal(std::string_view text);

}  // namespace threadline::discovery
