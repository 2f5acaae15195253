#include "symbolizer/go_binary.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <unordered_set>

#include "agent/common/unique_fd.h"
#include "symbolizer/x86_insn.h"

namespace threadline::symbolizer {

namespace {

// pclntab header magics (Go's debug/gosym names them go1xxmagic).
constexpr uint32_t kPclntab120 = 0xfffffff1;  // Go 1.20 and later: the 1.18 layout
constexpr uint32_t kPclntab118 = 0xfffffff0;  // Go 1.18, 1.19
constexpr uint32_t kPclntab116 = 0xfffffffa;  // Go 1.16, 1.17
constexpr char kBuildInfoMagic[] = "\xff Go buildinf:";
constexpr size_t kBuildInfoMagicLen = 14;
constexpr size_t kBuildInfoHeader = 32;
constexpr uint32_t kNoteGoBuildId = 4;
constexpr uint32_t kNoteGnuBuildId = 3;

struct ElfDeleter {
  void operator()(Elf* e) const { elf_end(e); }
};

uint32_t Le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));  // x86-64 only: host order is the file's order
  return v;
}
uint64_t Le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

std::string Hex(const uint8_t* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 0xf];
  }
  return out;
}

// The descriptor of the first note of `type` named `name` in [p, p+n), or empty.
std::span<const uint8_t> FindNote(std::span<const uint8_t> notes, std::string_view name,
                                  uint32_t type) {
  size_t off = 0;
  auto align4 = [](size_t v) { return (v + 3) & ~size_t{3}; };
  while (off + 12 <= notes.size()) {
    const uint32_t namesz = Le32(&notes[off]), descsz = Le32(&notes[off + 4]),
                   ntype = Le32(&notes[off + 8]);
    const size_t name_at = off + 12, desc_at = name_at + align4(namesz);
    if (namesz > notes.size() || descsz > notes.size() || desc_at + descsz > notes.size()) break;
    std::string_view nname(reinterpret_cast<const char*>(&notes[name_at]), namesz);
    while (!nname.empty() && nname.back() == '\0') nname.remove_suffix(1);  // Go pads "Go\0\0"
    if (ntype == type && nname == name) return notes.subspan(desc_at, descsz);
    off = desc_at + align4(descsz);
  }
  return {};
}

}  // namespace

std::optional<GoVersion> ParseGoVersion(std::string_view text) {
  if (!text.starts_with("go")) return std::nullopt;
  text.remove_prefix(2);
  GoVersion v;
  int* parts[] = {&v.major, &v.minor, &v.patch};
  for (int i = 0; i < 3; ++i) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *parts[i]);
    if (ec != std::errc()) {
      if (i < 2) return std::nullopt;  // major and minor are required
      break;
    }
    text.remove_prefix(static_cast<size_t>(end - text.data()));
    if (!text.starts_with('.')) break;  // "go1.21rc2", "go1.20 X:boringcrypto"
    text.remove_prefix(1);
  }
  return v;
}

// The file, read with pread(2) on demand, with its segments and the sections we care about.
// Not mmap(2): a private read-only mapping of a file is, to the kernel, a possibly-executable
// mapping of it, and uprobes already registered on the file (another agent's, a previous
// instance's during a restart) are installed into it as int3 bytes; decoding those would find
// a different program. pread sees the page cache, which uprobes never modify.
struct GoBinary::Mapping {
  struct Segment {
    uint64_t vaddr, memsz, offset, filesz;
    uint32_t flags;
  };
  struct Section {
    uint64_t addr, offset, size;
    uint32_t type;
  };

  UniqueFd fd;
  uint64_t size = 0;
  std::vector<Segment> segments;
  std::unordered_map<std::string, Section> sections;

  // `len` bytes at file offset `offset`; empty when they are not all in the file.
  std::vector<uint8_t> File(uint64_t offset, uint64_t len) const {
    if (offset > size || len > size - offset || len > (uint64_t{1} << 31)) return {};
    std::vector<uint8_t> out(static_cast<size_t>(len));
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::pread(fd.get(), out.data() + done, out.size() - done,
                          static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return {};
      done += static_cast<size_t>(n);
    }
    return out;
  }
  std::vector<uint8_t> SectionBytes(const std::string& name) const {
    auto it = sections.find(name);
    if (it == sections.end() || it->second.type == SHT_NOBITS) return {};
    return File(it->second.offset, it->second.size);
  }
  std::optional<uint64_t> FileOffsetOf(uint64_t vaddr) const {
    for (const Segment& s : segments) {
      if (vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz) return vaddr - s.vaddr + s.offset;
    }
    return std::nullopt;
  }
  // `len` bytes at a virtual address, when the file holds all of them.
  std::vector<uint8_t> At(uint64_t vaddr, uint64_t len) const {
    for (const Segment& s : segments) {
      if (vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz && len <= s.filesz - (vaddr - s.vaddr))
        return File(vaddr - s.vaddr + s.offset, len);
    }
    return {};
  }
};

namespace {

// The version string of a build info blob (which starts at the magic); empty if unreadable.
// `mapping` resolves virtual addresses (GoBinary::Mapping, private, hence `auto`).
std::string ParseBuildInfo(std::span<const uint8_t> blob, const auto& mapping) {
  if (blob.size() < kBuildInfoHeader) return {};
  const uint8_t ptr_size = blob[14], flags = blob[15];
  if (flags & 0x2) {
    // Go >= 1.18: uvarint length, then the bytes, right after the header.
    uint64_t len = 0;
    size_t i = kBuildInfoHeader;
    for (int shift = 0; i < blob.size() && shift < 64; shift += 7, ++i) {
      len |= static_cast<uint64_t>(blob[i] & 0x7f) << shift;
      if (!(blob[i] & 0x80)) break;
    }
    ++i;
    if (i > blob.size() || len > blob.size() - i) return {};
    return std::string(reinterpret_cast<const char*>(&blob[i]), static_cast<size_t>(len));
  }
  // Older: a pointer to runtime.buildVersion, a Go string header {data, len}.
  if (ptr_size != 8 || (flags & 0x1)) return {};  // only little-endian 64-bit is ours
  auto header = mapping.At(Le64(&blob[16]), 16);
  if (header.empty()) return {};
  const uint64_t len = Le64(&header[8]);
  if (len == 0 || len > 256) return {};
  auto text = mapping.At(Le64(&header[0]), len);
  return std::string(reinterpret_cast<const char*>(text.data()), text.size());
}

// Is there a plausible pclntab header at `t`? (Used when the section headers are missing.)
bool PlausiblePclntab(std::span<const uint8_t> t) {
  if (t.size() < 72) return false;
  const uint32_t magic = Le32(&t[0]);
  if (magic != kPclntab120 && magic != kPclntab118 && magic != kPclntab116) return false;
  if (t[4] != 0 || t[5] != 0 || t[6] != 1 || t[7] != 8) return false;  // pads, x86 quantum, 8-byte ptrs
  const uint64_t nfunc = Le64(&t[8]);
  return nfunc > 0 && nfunc < (1u << 24);
}

}  // namespace

GoBinary::GoBinary(GoBinary&&) noexcept = default;
GoBinary& GoBinary::operator=(GoBinary&&) noexcept = default;
GoBinary::~GoBinary() = default;

Result<GoBinary> GoBinary::Open(const std::string& path, const std::vector<std::string>& wanted) {
  if (elf_version(EV_CURRENT) == EV_NONE) return Error{"libelf: " + std::string(elf_errmsg(-1))};
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Error::FromErrno("open " + path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error::FromErrno("stat " + path, errno);
  std::unique_ptr<Elf, ElfDeleter> elf(elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr));
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF) return Error{path + ": not an ELF file", ENOEXEC};
  GElf_Ehdr ehdr;
  if (!gelf_getehdr(elf.get(), &ehdr)) return Error{path + ": no ELF header"};
  if (ehdr.e_machine != EM_X86_64) return Error{path + ": not x86-64", ENOEXEC};

  GoBinary out;
  out.path_ = path;
  out.map_ = std::make_unique<Mapping>();
  Mapping& m = *out.map_;
  m.size = static_cast<uint64_t>(st.st_size);
  m.fd = std::move(fd);  // the same descriptor: libelf keeps reading through it

  size_t nphdr = 0;
  if (elf_getphdrnum(elf.get(), &nphdr) == 0) {
    for (size_t i = 0; i < nphdr; ++i) {
      GElf_Phdr ph;
      if (gelf_getphdr(elf.get(), static_cast<int>(i), &ph) && ph.p_type == PT_LOAD)
        m.segments.push_back({ph.p_vaddr, ph.p_memsz, ph.p_offset, ph.p_filesz, ph.p_flags});
    }
  }
  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf.get(), &shstrndx) == 0) {
    for (Elf_Scn* scn = elf_nextscn(elf.get(), nullptr); scn; scn = elf_nextscn(elf.get(), scn)) {
      GElf_Shdr sh;
      if (!gelf_getshdr(scn, &sh)) continue;
      const char* name = elf_strptr(elf.get(), shstrndx, sh.sh_name);
      if (name && *name) m.sections.emplace(name, Mapping::Section{sh.sh_addr, sh.sh_offset, sh.sh_size, sh.sh_type});
    }
  }
  const bool have_sections = !m.sections.empty();

  // Build ids: Go's own first (always there), the GNU one when an external linker added it.
  const auto go_note = m.SectionBytes(".note.go.buildid");
  const auto gnu_note = m.SectionBytes(".note.gnu.build-id");
  if (auto desc = FindNote(go_note, "Go", kNoteGoBuildId); !desc.empty())
    out.build_id_.assign(reinterpret_cast<const char*>(desc.data()), desc.size());
  else if (auto gnu = FindNote(gnu_note, "GNU", kNoteGnuBuildId); !gnu.empty())
    out.build_id_ = Hex(gnu.data(), gnu.size());

  // Build info: the section, else the magic (16-byte aligned) in a writable segment.
  std::vector<uint8_t> buildinfo = m.SectionBytes(".go.buildinfo");
  if (buildinfo.empty() && !have_sections) {
    for (const auto& s : m.segments) {
      if (!(s.flags & PF_W)) continue;
      auto seg = m.File(s.offset, s.filesz);
      for (size_t i = 0; i + kBuildInfoHeader <= seg.size(); i += 16) {
        if (std::memcmp(&seg[i], kBuildInfoMagic, kBuildInfoMagicLen) == 0) {
          buildinfo.assign(seg.begin() + static_cast<std::ptrdiff_t>(i), seg.end());
          break;
        }
      }
      if (!buildinfo.empty()) break;
    }
  }
  if (buildinfo.size() >= kBuildInfoHeader &&
      std::memcmp(buildinfo.data(), kBuildInfoMagic, kBuildInfoMagicLen) == 0)
    out.version_text_ = ParseBuildInfo(buildinfo, m);

  // pclntab: the section, else a consistent header in a read-only, non-executable segment.
  std::vector<uint8_t> tab = m.SectionBytes(".gopclntab");
  if (tab.empty() && !have_sections) {
    for (const auto& s : m.segments) {
      if (s.flags & (PF_W | PF_X)) continue;
      auto seg = m.File(s.offset, s.filesz);
      const std::span<const uint8_t> view(seg);
      for (size_t i = 0; i + 72 <= seg.size(); i += 8) {
        if (PlausiblePclntab(view.subspan(i))) {
          tab.assign(seg.begin() + static_cast<std::ptrdiff_t>(i), seg.end());
          break;
        }
      }
      if (!tab.empty()) break;
    }
  }
  if (tab.empty()) {
    if (out.version_text_.empty()) return Error{path + ": not a Go executable", ENOEXEC};
    return Error{path + ": Go " + out.version_text_ + " executable without a pclntab"};
  }
  if (tab.size() < 72) return Error{path + ": pclntab truncated"};
  const uint32_t magic = Le32(&tab[0]);
  out.pclntab_magic_ = magic;
  if (magic != kPclntab120 && magic != kPclntab118 && magic != kPclntab116) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%#x", magic);
    return Error{path + ": pclntab magic " + buf +
                 " (Go older than 1.16 or unknown): not supported (register ABI needs Go >= 1.17)",
                 ENOTSUP};
  }
  if (tab[6] != 1 || tab[7] != 8) return Error{path + ": pclntab not for x86-64"};

  // Header fields (8 bytes each after the first 8): nfunc, nfiles, [textStart,] funcnameOffset,
  // cuOffset, filetabOffset, pctabOffset, pclnOffset.
  const bool v118 = magic == kPclntab118 || magic == kPclntab120;
  auto field = [&](int i) { return Le64(&tab[8 + 8 * static_cast<size_t>(i)]); };
  const uint64_t nfunc = field(0);
  uint64_t text_start = v118 ? field(2) : 0;
  const uint64_t funcname_off = field(v118 ? 3 : 2);
  const uint64_t pcln_off = field(v118 ? 7 : 6);
  if (v118 && text_start == 0) {
    // PIE: textStart is filled by a dynamic relocation; runtime.text is where .text begins.
    auto it = m.sections.find(".text");
    if (it == m.sections.end()) return Error{path + ": PIE Go binary without .text: text start unknown"};
    text_start = it->second.addr;
  }
  const size_t entry_size = v118 ? 8 : 16;
  if (nfunc == 0 || pcln_off >= tab.size() || funcname_off >= tab.size() ||
      (tab.size() - pcln_off) / entry_size < nfunc + 1)
    return Error{path + ": pclntab header out of bounds"};
  out.function_count_ = static_cast<size_t>(nfunc);

  std::unordered_set<std::string_view> want(wanted.begin(), wanted.end());
  const uint8_t* ftab = &tab[pcln_off];
  auto entry_at = [&](uint64_t i) -> uint64_t {
    const uint8_t* e = ftab + i * entry_size;
    return v118 ? text_start + Le32(e) : Le64(e);
  };
  auto funcoff_at = [&](uint64_t i) -> uint64_t {
    const uint8_t* e = ftab + i * entry_size;
    return v118 ? Le32(e + 4) : Le64(e + 8);
  };
  for (uint64_t i = 0; i < nfunc && !want.empty(); ++i) {
    const uint64_t func = pcln_off + funcoff_at(i);
    const size_t nameoff_at = v118 ? 4 : 8;
    if (func >= tab.size() || tab.size() - func < nameoff_at + 4) continue;
    const int32_t nameoff = static_cast<int32_t>(Le32(&tab[func + nameoff_at]));
    if (nameoff < 0 || funcname_off + static_cast<uint64_t>(nameoff) >= tab.size()) continue;
    const char* name = reinterpret_cast<const char*>(&tab[funcname_off + static_cast<uint64_t>(nameoff)]);
    const size_t max = tab.size() - funcname_off - static_cast<uint64_t>(nameoff);
    const std::string_view fname(name, strnlen(name, max));
    auto w = want.find(fname);
    if (w == want.end()) continue;
    GoFunction f;
    f.address = entry_at(i);
    const uint64_t next = entry_at(i + 1);
    if (next <= f.address) return Error{path + ": pclntab not sorted at " + std::string(fname)};
    f.size = next - f.address;
    auto offset = m.FileOffsetOf(f.address);
    if (!offset) continue;
    f.file_offset = *offset;
    out.functions_.emplace(std::string(fname), f);
    want.erase(w);
  }
  return out;
}

std::optional<GoFunction> GoBinary::Find(std::string_view name) const {
  auto it = functions_.find(std::string(name));
  if (it == functions_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::vector<uint8_t>> GoBinary::Code(const GoFunction& fn) const {
  auto code = map_->At(fn.address, fn.size);
  if (code.empty()) return std::nullopt;
  return code;
}

Result<std::vector<uint64_t>> GoBinary::ReturnOffsets(const GoFunction& fn) const {
  auto code = Code(fn);
  if (!code) return Error{path_ + ": function bytes not in the file"};
  return symbolizer::ReturnOffsets(*code, fn.address);
}

}  // namespace threadline::symbolizer
