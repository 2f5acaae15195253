// An ELF file read with libelf, for placing uprobes: functions by name from `.dynsym` and
// `.symtab`, their file offsets (what a uprobe is attached at), and the GNU build id.
//
// Reads the symbol tables once, at Open(), keeping only the functions asked for, so a 100 MB
// binary (node) costs one pass and a few bytes of memory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/common/result.h"

namespace threadline::symbolizer {

struct ElfFunction {
  uint64_t address = 0;      // virtual address (st_value)
  uint64_t size = 0;         // st_size
  uint64_t file_offset = 0;  // where its first instruction is in the file
  bool dynamic = false;      // found in .dynsym (exported), else .symtab
};

class ElfFile {
 public:
  // Opens `path` and looks up each of `wanted` (exact names, e.g. "SSL_write"). A file that is
  // not ELF is an error; a function not found is simply absent.
  static Result<ElfFile> Open(const std::string& path, const std::vector<std::string>& wanted);

  const std::string& path() const { return path_; }
  // Hex of the NT_GNU_BUILD_ID note, empty when the file has none.
  const std::string& build_id() const { return build_id_; }
  bool is_shared_object() const { return type_ == 3; /* ET_DYN */ }
  std::optional<ElfFunction> Find(std::string_view name) const;
  // Virtual address -> file offset, through the PT_LOAD segment holding it.
  std::optional<uint64_t> FileOffsetOf(uint64_t address) const;

 private:
  struct Segment {
    uint64_t vaddr, memsz, offset, filesz;
  };
  std::string path_;
  std::string build_id_;
  uint16_t type_ = 0;
  std::vector<Segment> segments_;
  std::unordered_map<std::string, ElfFunction> functions_;
};

}  // namespace threadline::symbolizer
