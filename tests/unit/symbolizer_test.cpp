// The symbolizer on real files: Go executables built here with Debian's Go (stripped and not),
// and the system libssl.so.3. Every answer is checked against binutils / Go's own tools, which
// read the same files independently: `go tool nm` (addresses), `objdump -h` (file offsets),
// `objdump -d` (return instructions), `nm -D` (libssl).
//
// Needs Go (golang-go) and binutils: under CI=true their absence fails the tests, elsewhere it
// skips them with the reason.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "agent/kernel/go_tls_probes.h"
#include "symbolizer/elf_file.h"
#include "symbolizer/go_binary.h"
#include "symbolizer/x86_insn.h"
#include "tests/support/ci_mode.h"

namespace threadline::symbolizer {
namespace {

namespace fs = std::filesystem;
using ::threadline::testing::InCi;

// Runs a shell command; its stdout, or nullopt when it failed.
std::optional<std::string> Shell(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return std::nullopt;
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(p);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return out;
}

bool Have(const std::string& tool) { return Shell("command -v " + tool + " >/dev/null").has_value(); }

#define REQUIRE_TOOL(tool)                                                            \
  do {                                                                                \
    if (!Have(tool)) {                                                                \
      if (InCi()) FAIL() << "CI=true: " << tool << " not installed (scripts/deps.sh)"; \
      GTEST_SKIP() << tool << " not installed (scripts/deps.sh --with-test-peers)";   \
    }                                                                                 \
  } while (0)

// A program whose TLS calls the linker must keep.
constexpr char kGoProgram[] = R"(package main

import (
	"crypto/tls"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		return
	}
	c, err := tls.Dial("tcp", os.Args[1], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	fmt.Println(n)
}
)";

// (.text VMA, .text file offset) from `objdump -h`.
std::pair<uint64_t, uint64_t> TextSection(const std::string& path) {
  auto out = Shell("objdump -h '" + path + "'");
  if (!out) return {0, 0};
  std::istringstream in(*out);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string idx, name, size, vma, lma, off;
    if (f >> idx >> name >> size >> vma >> lma >> off && name == ".text")
      return {std::stoull(vma, nullptr, 16), std::stoull(off, nullptr, 16)};
  }
  return {0, 0};
}

class GoBinaryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!Have("go") || !Have("objdump")) return;
    dir_ = new std::string(fs::temp_directory_path() / ("tl-symbolizer-go-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    std::ofstream(*dir_ + "/main.go") << kGoProgram;
    // Offline, std-lib only. A cache of our own when the environment has no home for Go's.
    std::string env = "GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0 ";
    if (!std::getenv("GOCACHE") && !std::getenv("HOME")) env += "GOCACHE=" + *dir_ + "/gocache ";
    const std::string build = "cd '" + *dir_ + "' && " + env + "go build";
    built_ = Shell(build + " -o plain main.go 2>&1") && Shell(build + " -ldflags='-s -w' -o stripped main.go 2>&1");
  }
  static void TearDownTestSuite() {
    if (dir_) {
      std::error_code ec;
      fs::remove_all(*dir_, ec);
      delete dir_;
      dir_ = nullptr;
    }
  }
  void SetUp() override {
    REQUIRE_TOOL("go");
    REQUIRE_TOOL("objdump");
    ASSERT_TRUE(built_) << "go build failed in " << (dir_ ? *dir_ : "?");
  }
  static std::string Path(const char* name) { return *dir_ + "/" + name; }

  // Function symbols (T/t) of the unstripped binary, as Go's own nm prints them.
  static std::map<uint64_t, std::string> GoNm() {
    std::map<uint64_t, std::string> out;
    auto text = Shell("go tool nm '" + Path("plain") + "'");
    if (!text) return out;
    std::istringstream in(*text);
    std::string line;
    static const std::regex re(R"(^\s*([0-9a-f]+) [Tt] (.+)$)");
    while (std::getline(in, line)) {
      std::smatch m;
      if (std::regex_match(line, m, re)) out.emplace(std::stoull(m[1], nullptr, 16), m[2]);
    }
    return out;
  }

  static std::string* dir_;
  static bool built_;
};
std::string* GoBinaryTest::dir_ = nullptr;
bool GoBinaryTest::built_ = false;

TEST_F(GoBinaryTest, ReadsGoVersionFromBuildInfo) {
  auto go_version = Shell("go env GOVERSION");
  ASSERT_TRUE(go_version);
  const std::string expected = go_version->substr(0, go_version->find_first_of("\r\n"));
  for (const char* name : {"plain", "stripped"}) {
    auto bin = GoBinary::Open(Path(name), {});
    ASSERT_TRUE(bin.ok()) << bin.error().message;
    EXPECT_EQ(bin->version_text(), expected) << name;
    ASSERT_TRUE(bin->version()) << name;
    EXPECT_GE(*bin->version(), (GoVersion{1, 17, 0})) << name;
    EXPECT_FALSE(bin->build_id().empty()) << name;
    EXPECT_GT(bin->function_count(), 1000u) << name;
  }
}

TEST_F(GoBinaryTest, FindsCryptoTlsFunctionsLikeGoNm) {
  const auto nm = GoNm();
  ASSERT_FALSE(nm.empty());
  std::map<std::string, uint64_t> by_name;
  for (const auto& [addr, name] : nm) by_name.emplace(name, addr);
  const auto [text_vma, text_off] = TextSection(Path("plain"));
  ASSERT_NE(text_vma, 0u);

  for (const char* name : {"plain", "stripped"}) {
    auto bin = GoBinary::Open(Path(name), {kGoTlsRead, kGoTlsWrite, "main.main"});
    ASSERT_TRUE(bin.ok()) << bin.error().message;
    for (const char* fn : {kGoTlsRead, kGoTlsWrite, "main.main"}) {
      auto f = bin->Find(fn);
      ASSERT_TRUE(f) << fn << " in " << name;
      ASSERT_TRUE(by_name.count(fn)) << fn;
      // -s -w drops the ELF symbol table and DWARF only: the code is where the plain build has it.
      EXPECT_EQ(f->address, by_name[fn]) << fn << " in " << name;
      EXPECT_EQ(f->file_offset, f->address - text_vma + text_off) << fn << " in " << name;
      // Size: up to the next function symbol.
      auto next = nm.upper_bound(f->address);
      ASSERT_NE(next, nm.end());
      EXPECT_EQ(f->address + f->size, next->first) << fn << " (next: " << next->second << ")";
    }
    EXPECT_FALSE(bin->Find("crypto/tls.(*Conn).NoSuchMethod"));
  }
}

TEST_F(GoBinaryTest, ReturnOffsetsAreTheRetInstructionsObjdumpSees) {
  for (const char* name : {"plain", "stripped"}) {
    auto bin = GoBinary::Open(Path(name), {kGoTlsRead, kGoTlsWrite});
    ASSERT_TRUE(bin.ok()) << bin.error().message;
    for (const char* fn : {kGoTlsRead, kGoTlsWrite}) {
      auto f = bin->Find(fn);
      ASSERT_TRUE(f);
      auto offsets = bin->ReturnOffsets(*f);
      ASSERT_TRUE(offsets.ok()) << offsets.error().message;
      ASSERT_FALSE(offsets->empty()) << fn;

      char range[96];
      std::snprintf(range, sizeof(range), "--start-address=%#llx --stop-address=%#llx",
                    static_cast<unsigned long long>(f->address),
                    static_cast<unsigned long long>(f->address + f->size));
      auto dis = Shell(std::string("objdump -d --no-show-raw-insn ") + range + " '" + Path(name) + "'");
      ASSERT_TRUE(dis);
      std::set<uint64_t> objdump_rets;
      std::istringstream in(*dis);
      std::string line;
      static const std::regex re(R"(^\s*([0-9a-f]+):\s+(ret|retq)\b.*)");
      while (std::getline(in, line)) {
        std::smatch m;
        if (std::regex_match(line, m, re)) objdump_rets.insert(std::stoull(m[1], nullptr, 16) - f->address);
      }
      EXPECT_EQ(std::set<uint64_t>(offsets->begin(), offsets->end()), objdump_rets) << fn << " in " << name;
      auto code = bin->Code(*f);
      ASSERT_TRUE(code);
      // The entry probe site: the jbe objdump shows within the prologue.
      auto jbe = GoStackCheckJumpOffset(*code);
      ASSERT_TRUE(jbe) << fn;
      char at[32];
      std::snprintf(at, sizeof(at), "%llx:", static_cast<unsigned long long>(f->address + *jbe));
      const size_t line_at = dis->find(at);
      ASSERT_NE(line_at, std::string::npos) << fn << " " << at;
      EXPECT_NE(dis->substr(line_at, dis->find('\n', line_at) - line_at).find("jbe"), std::string::npos) << fn;
      for (uint64_t off : *offsets) {
        ASSERT_LT(off, f->size);
        EXPECT_TRUE((*code)[off] == 0xc3 || (*code)[off] == 0xc2) << fn << "+" << off;
      }
    }
  }
}

// Section headers are not needed to run a program and some packers drop them: the build info
// and the pclntab are then found by their magic in the segments.
TEST_F(GoBinaryTest, WorksWithoutSectionHeaders) {
  const std::string copy = Path("no-sections");
  fs::copy_file(Path("stripped"), copy, fs::copy_options::overwrite_existing);
  {
    std::fstream f(copy, std::ios::in | std::ios::out | std::ios::binary);
    const char zeros[8] = {};
    f.seekp(0x28);  // e_shoff
    f.write(zeros, 8);
    f.seekp(0x3c);  // e_shnum, e_shstrndx
    f.write(zeros, 4);
  }
  auto with = GoBinary::Open(Path("stripped"), {kGoTlsRead, kGoTlsWrite});
  auto without = GoBinary::Open(copy, {kGoTlsRead, kGoTlsWrite});
  ASSERT_TRUE(with.ok()) << with.error().message;
  ASSERT_TRUE(without.ok()) << without.error().message;
  EXPECT_EQ(without->version_text(), with->version_text());
  EXPECT_EQ(without->pclntab_magic(), with->pclntab_magic());
  for (const char* fn : {kGoTlsRead, kGoTlsWrite}) {
    ASSERT_TRUE(without->Find(fn)) << fn;
    EXPECT_EQ(without->Find(fn)->address, with->Find(fn)->address) << fn;
    EXPECT_EQ(without->Find(fn)->size, with->Find(fn)->size) << fn;
    EXPECT_EQ(without->Find(fn)->file_offset, with->Find(fn)->file_offset) << fn;
  }
}

TEST_F(GoBinaryTest, GoVersionHasAConnLayout) {
  auto bin = GoBinary::Open(Path("stripped"), {});
  ASSERT_TRUE(bin.ok());
  ASSERT_TRUE(bin->version());
  auto layout = GoConnLayoutFor(*bin->version());
  ASSERT_TRUE(layout) << bin->version_text() << " must be in the table (it builds our tests)";
  EXPECT_EQ(layout->conn_iface_data, 8);
  EXPECT_EQ(layout->netconn_fd, 0);
  EXPECT_EQ(layout->netfd_sysfd, 16);
}

TEST(GoVersionTest, ParsesAndRefusesUnknownLayouts) {
  EXPECT_EQ(ParseGoVersion("go1.19.8"), (GoVersion{1, 19, 8}));
  EXPECT_EQ(ParseGoVersion("go1.21rc2"), (GoVersion{1, 21, 0}));
  EXPECT_EQ(ParseGoVersion("go1.20 X:boringcrypto"), (GoVersion{1, 20, 0}));
  EXPECT_FALSE(ParseGoVersion("devel go1.22-abc"));
  EXPECT_FALSE(ParseGoVersion(""));
  EXPECT_FALSE(GoConnLayoutFor({1, 16, 15}));  // stack ABI
  EXPECT_TRUE(GoConnLayoutFor({1, 17, 0}));
  EXPECT_TRUE(GoConnLayoutFor({1, 22, 5}));
  EXPECT_FALSE(GoConnLayoutFor({1, 23, 0}));  // not verified: refused, never guessed
}

TEST(GoBinaryErrorsTest, NonGoFilesAreNotGo) {
  auto self = GoBinary::Open("/proc/self/exe", {});
  ASSERT_FALSE(self.ok());
  EXPECT_EQ(self.error().code, ENOEXEC) << self.error().message;
  auto text = GoBinary::Open("/etc/hostname", {});
  ASSERT_FALSE(text.ok());
  auto gone = GoBinary::Open("/nonexistent/binary", {});
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ENOENT);
}

TEST(X86InsnTest, FindsOnlyRealReturns) {
  // mov eax, 0xc3c3c3c3 ; ret ; ret 8 ; int3
  const uint8_t code[] = {0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc2, 0x08, 0x00, 0xcc};
  auto offsets = ReturnOffsets(code, 0x1000);
  ASSERT_TRUE(offsets.ok()) << offsets.error().message;
  EXPECT_EQ(*offsets, (std::vector<uint64_t>{5, 6}));
}

TEST(X86InsnTest, FindsGoStackCheckJump) {
  // cmp rsp, [r14+0x10] ; jbe +0x3c2 ; sub rsp, 0x68
  const uint8_t small[] = {0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xc2, 0x03, 0x00, 0x00, 0x48, 0x83, 0xec, 0x68};
  EXPECT_EQ(GoStackCheckJumpOffset(small), 4u);
  // lea r12, [rsp-0x68] ; cmp r12, [r14+0x10] ; jbe +0x764
  const uint8_t large[] = {0x4c, 0x8d, 0x64, 0x24, 0x98, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x64, 0x07, 0x00, 0x00};
  EXPECT_EQ(GoStackCheckJumpOffset(large), 9u);
  // lea rax, [rsp-0x68] would clobber the receiver: no site
  const uint8_t clobber[] = {0x48, 0x8d, 0x44, 0x24, 0x98, 0x49, 0x3b, 0x46, 0x10, 0x0f, 0x86, 0x64, 0x07, 0x00, 0x00};
  EXPECT_FALSE(GoStackCheckJumpOffset(clobber));
  const uint8_t plain[] = {0x55, 0x48, 0x89, 0xe5, 0xc3};  // push rbp ; mov rbp, rsp ; ret
  EXPECT_FALSE(GoStackCheckJumpOffset(plain));
}

TEST(X86InsnTest, RefusesCodeThatDoesNotDecodeToTheEnd) {
  const uint8_t code[] = {0xc3, 0x0f, 0x0b, 0x48};  // ret ; ud2 ; a lone REX prefix
  auto offsets = ReturnOffsets(code, 0);
  EXPECT_FALSE(offsets.ok());
}

// The OpenSSL side of the symbolizer, on the system libssl.so.3 (libssl-dev is a build dep).
TEST(ElfFileTest, FindsSslFunctionsInLibsslLikeNm) {
  REQUIRE_TOOL("nm");
  REQUIRE_TOOL("objdump");
  std::string lib;
  for (const char* p : {"/usr/lib/x86_64-linux-gnu/libssl.so.3", "/lib/x86_64-linux-gnu/libssl.so.3"}) {
    if (fs::exists(p)) lib = fs::canonical(p);
  }
  if (lib.empty()) {
    if (InCi()) FAIL() << "CI=true: libssl.so.3 not found";
    GTEST_SKIP() << "libssl.so.3 not found";
  }
  auto nm = Shell("nm -D --defined-only '" + lib + "'");
  ASSERT_TRUE(nm);
  std::map<std::string, uint64_t> syms;
  std::istringstream in(*nm);
  std::string addr, type, name;
  while (in >> addr >> type >> name) {
    if (type == "T") syms[name.substr(0, name.find('@'))] = std::stoull(addr, nullptr, 16);
  }
  const auto [text_vma, text_off] = TextSection(lib);
  ASSERT_NE(text_vma, 0u);
  const std::vector<std::string> wanted = {"SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex"};
  auto elf = ElfFile::Open(lib, wanted);
  ASSERT_TRUE(elf.ok()) << elf.error().message;
  EXPECT_TRUE(elf->is_shared_object());
  for (const auto& fn : wanted) {
    auto f = elf->Find(fn);
    ASSERT_TRUE(f) << fn;
    ASSERT_TRUE(syms.count(fn)) << fn;
    EXPECT_TRUE(f->dynamic) << fn;
    EXPECT_EQ(f->address, syms[fn]) << fn;
    EXPECT_EQ(f->file_offset, f->address - text_vma + text_off) << fn;
  }
  EXPECT_FALSE(GoBinary::Open(lib, {}).ok());
}

}  // namespace
}  // namespace threadline::symbolizer
