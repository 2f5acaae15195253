#include "symbolizer/elf_file.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "agent/common/unique_fd.h"

namespace threadline::symbolizer {

namespace {

struct ElfDeleter {
  void operator()(Elf* e) const { elf_end(e); }
};

std::string Hex(const uint8_t* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 0xf];
  }
  return out;
}

constexpr uint32_t kNtGnuBuildId = 3;

}  // namespace

Result<ElfFile> ElfFile::Open(const std::string& path, const std::vector<std::string>& wanted) {
  if (elf_version(EV_CURRENT) == EV_NONE) return Error{"libelf: " + std::string(elf_errmsg(-1))};
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Error::FromErrno("open " + path, errno);
  std::unique_ptr<Elf, ElfDeleter> elf(elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr));
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF)
    return Error{path + ": not an ELF file"};
  GElf_Ehdr ehdr;
  if (!gelf_getehdr(elf.get(), &ehdr)) return Error{path + ": no ELF header"};

  ElfFile out;
  out.path_ = path;
  out.type_ = ehdr.e_type;

  size_t nphdr = 0;
  if (elf_getphdrnum(elf.get(), &nphdr) == 0) {
    for (size_t i = 0; i < nphdr; ++i) {
      GElf_Phdr ph;
      if (!gelf_getphdr(elf.get(), static_cast<int>(i), &ph)) continue;
      if (ph.p_type == PT_LOAD) {
        out.segments_.push_back({ph.p_vaddr, ph.p_memsz, ph.p_offset, ph.p_filesz});
      }
    }
  }

  // Two passes over the sections: .dynsym wins over .symtab (exported is what callers call).
  for (Elf64_Word table : {static_cast<Elf64_Word>(SHT_DYNSYM), static_cast<Elf64_Word>(SHT_SYMTAB)}) {
    for (Elf_Scn* scn = elf_nextscn(elf.get(), nullptr); scn; scn = elf_nextscn(elf.get(), scn)) {
      GElf_Shdr sh;
      if (!gelf_getshdr(scn, &sh)) continue;
      if (sh.sh_type == SHT_NOTE && table == SHT_DYNSYM && out.build_id_.empty()) {
        Elf_Data* data = elf_getdata(scn, nullptr);
        size_t off = 0, name_off = 0, desc_off = 0;
        GElf_Nhdr nh;
        while (data && (off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
          if (nh.n_type == kNtGnuBuildId && nh.n_namesz == 4 &&
              std::memcmp(static_cast<const char*>(data->d_buf) + name_off, "GNU", 4) == 0) {
            out.build_id_ = Hex(static_cast<const uint8_t*>(data->d_buf) + desc_off, nh.n_descsz);
            break;
          }
        }
      }
      if (sh.sh_type != table || sh.sh_entsize == 0) continue;
      Elf_Data* data = elf_getdata(scn, nullptr);
      if (!data) continue;
      const size_t count = sh.sh_size / sh.sh_entsize;
      for (size_t i = 0; i < count; ++i) {
        GElf_Sym sym;
        if (!gelf_getsym(data, static_cast<int>(i), &sym)) continue;
        if (GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF || sym.st_value == 0)
          continue;
        const char* name = elf_strptr(elf.get(), sh.sh_link, sym.st_name);
        if (!name || !*name) continue;
        bool is_wanted = false;
        for (const auto& w : wanted) is_wanted = is_wanted || w == name;
        if (!is_wanted || out.functions_.count(name)) continue;
        ElfFunction f;
        f.address = sym.st_value;
        f.size = sym.st_size;
        f.dynamic = table == SHT_DYNSYM;
        auto offset = out.FileOffsetOf(sym.st_value);
        if (!offset) continue;
        f.file_offset = *offset;
        out.functions_.emplace(name, f);
      }
    }
  }
  return out;
}

std::optional<ElfFunction> ElfFile::Find(std::string_view name) const {
  auto it = functions_.find(std::string(name));
  if (it == functions_.end()) return std::nullopt;
  return it->second;
}

std::optional<uint64_t> ElfFile::FileOffsetOf(uint64_t address) const {
  for (const Segment& s : segments_) {
    if (address >= s.vaddr && address < s.vaddr + s.filesz) return address - s.vaddr + s.offset;
  }
  return std::nullopt;
}

}  // namespace threadline::symbolizer
