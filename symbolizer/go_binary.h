// A Go executable read for placing uprobes: its Go version (from the build info the linker
// writes), and functions by name from Go's own symbol table, the pclntab, which the runtime
// needs for stack traces and which therefore survives `-ldflags="-s -w"` and strip(1).
//
// What is read:
//   - build info: `.go.buildinfo` (or, without section headers, the "\xff Go buildinf:" blob in a
//     writable segment). Go >= 1.18 stores the version inline (flag bit 2: a varint-prefixed
//     string after the 32-byte header); older ones store a pointer to a Go string header.
//   - pclntab: `.gopclntab` (or, without section headers, found by its header in a read-only
//     segment and checked for consistency). Header magics: 0xfffffff1 (Go >= 1.20) and
//     0xfffffff0 (1.18-1.19) share a layout (32-bit entry offsets from textStart); 0xfffffffa
//     (1.16-1.17) has pointer-sized entries; older tables (0xfffffffb, Go 1.2-1.15) are refused:
//     those Go versions pass arguments on the stack, not in the registers the BPF side reads.
//   - functab: (entry, _func offset) pairs sorted by entry; a function's size is the distance to
//     the next entry (the last is followed by the end of text), which is what a scan for its
//     return instructions needs.
//
// The file stays open for the object's lifetime and is read with pread (see Mapping in the
// source for why not mmap); functions are resolved once, at Open(), keeping only the ones
// asked for.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/common/result.h"

namespace threadline::symbolizer {

struct GoVersion {
  int major = 0, minor = 0, patch = 0;
  auto operator<=>(const GoVersion&) const = default;
};

// "go1.19.8" -> {1, 19, 8}; "go1.21rc2" -> {1, 21, 0}; "devel ..." and garbage -> nullopt.
std::optional<GoVersion> ParseGoVersion(std::string_view text);

struct GoFunction {
  uint64_t address = 0;      // virtual address of the entry
  uint64_t size = 0;         // bytes up to the next function (alignment padding included)
  uint64_t file_offset = 0;  // where the entry is in the file (what a uprobe is attached at)
};

class GoBinary {
 public:
  // An error when `path` is not ELF or not a Go executable (no build info and no pclntab): code
  // ENOEXEC; a Go pclntab older than Go 1.16: ENOTSUP; the file cannot be opened: its errno;
  // malformed tables: 0. A wanted function that is not there is simply absent.
  static Result<GoBinary> Open(const std::string& path, const std::vector<std::string>& wanted);

  GoBinary(GoBinary&&) noexcept;
  GoBinary& operator=(GoBinary&&) noexcept;
  ~GoBinary();

  const std::string& path() const { return path_; }
  // As the build info says it, e.g. "go1.19.8"; empty when the build info is missing.
  const std::string& version_text() const { return version_text_; }
  std::optional<GoVersion> version() const { return ParseGoVersion(version_text_); }
  // The Go build id (.note.go.buildid), else the GNU build id; empty when neither exists.
  const std::string& build_id() const { return build_id_; }
  uint32_t pclntab_magic() const { return pclntab_magic_; }
  size_t function_count() const { return function_count_; }

  std::optional<GoFunction> Find(std::string_view name) const;
  // The function's machine code as it is in the file (read from the page cache, so never with
  // the int3 bytes of uprobes already on it).
  std::optional<std::vector<uint8_t>> Code(const GoFunction& fn) const;
  // Offsets from the entry of each return instruction of `fn` (decoded with x86_insn).
  Result<std::vector<uint64_t>> ReturnOffsets(const GoFunction& fn) const;

 private:
  struct Mapping;
  GoBinary() = default;

  std::string path_;
  std::unique_ptr<Mapping> map_;
  std::string version_text_;
  std::string build_id_;
  uint32_t pclntab_magic_ = 0;
  size_t function_count_ = 0;
  std::unordered_map<std::string, GoFunction> functions_;
};

}  // namespace threadline::symbolizer
