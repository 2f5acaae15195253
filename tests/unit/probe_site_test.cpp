// symbolizer/probe_site: which first instructions the kernel emulates for a uprobe, the calls at
// the start of a function, and the OpenSSL site choice they feed on the system's libssl.
#include "symbolizer/probe_site.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <vector>

#include "symbolizer/elf_file.h"
#include "tests/support/ci_mode.h"

namespace threadline::symbolizer {
namespace {

bool Emulated(std::vector<uint8_t> code) { return UprobeEmulatesFirstInstruction(code); }

TEST(ProbeSiteTest, EmulatedFirstInstructions) {
  EXPECT_TRUE(Emulated({0x55}));                          // push %rbp
  EXPECT_TRUE(Emulated({0x41, 0x55}));                    // push %r13 (ssl_read_internal)
  EXPECT_TRUE(Emulated({0x90}));                          // nop
  EXPECT_TRUE(Emulated({0x0f, 0x1f, 0x44, 0x00, 0x00}));  // nopl 0x0(%rax,%rax,1)
  EXPECT_TRUE(Emulated({0xe8, 0x10, 0x00, 0x00, 0x00}));  // call rel32
  EXPECT_TRUE(Emulated({0xe9, 0x10, 0x00, 0x00, 0x00}));  // jmp rel32
  EXPECT_TRUE(Emulated({0xeb, 0x05}));                    // jmp rel8
  EXPECT_TRUE(Emulated({0x74, 0x05}));                    // je rel8
  EXPECT_TRUE(Emulated({0x0f, 0x84, 0x10, 0x00, 0x00, 0x00}));  // je rel32
}

TEST(ProbeSiteTest, SingleSteppedFirstInstructions) {
  EXPECT_FALSE(Emulated({0x48, 0x83, 0xec, 0x18}));        // sub $0x18,%rsp (SSL_read)
  EXPECT_FALSE(Emulated({0xf3, 0x0f, 0x1e, 0xfa}));        // endbr64
  EXPECT_FALSE(Emulated({0xc3}));                          // ret
  EXPECT_FALSE(Emulated({0xff, 0x15, 0x00, 0x00, 0x00, 0x00}));  // call *0x0(%rip)
  EXPECT_FALSE(Emulated({0xff, 0x25, 0x00, 0x00, 0x00, 0x00}));  // jmp *0x0(%rip) (a PLT stub)
  EXPECT_FALSE(Emulated({0x48, 0x89, 0xe5}));              // mov %rsp,%rbp
  EXPECT_FALSE(Emulated({0xff, 0x34, 0x24}));              // push (%rsp): memory operand
  EXPECT_FALSE(Emulated({}));
  EXPECT_FALSE(Emulated({0x48}));  // truncated
}

TEST(ProbeSiteTest, LeadingCallTargetsFollowsTheStraightLinePath) {
  // At 0x1000: sub $0x8,%rsp; call 0x2000; test %eax,%eax; js +2; call 0x3000; ret; call 0x4000
  std::vector<uint8_t> code = {0x48, 0x83, 0xec, 0x08,        // sub $0x8,%rsp        0x1000
                               0xe8, 0xf7, 0x0f, 0x00, 0x00,  // call 0x2000          0x1004
                               0x85, 0xc0,                    // test %eax,%eax       0x1009
                               0x78, 0x05,                    // js 0x1012            0x100b
                               0xe8, 0xf0, 0x1f, 0x00, 0x00,  // call 0x3002          0x100d
                               0xc3,                          // ret                  0x1012
                               0xe8, 0x00, 0x00, 0x00, 0x00};  // call (after ret)    0x1013
  const auto targets = LeadingCallTargets(code, 0x1000);
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0], 0x2000u);
  EXPECT_EQ(targets[1], 0x3002u);
  EXPECT_TRUE(LeadingCallTargets(code, 0x1000, /*max_instructions=*/1).empty());
}

// On the system's libssl (Debian 12: OpenSSL 3.0), SSL_read and SSL_read_ex call the same
// internal function at once, and that function starts with an emulated push: the site the agent
// probes instead of two single-stepped entries (agent/kernel/tls_attacher.cpp).
TEST(ProbeSiteTest, SystemLibsslReadAndReadExShareAnEmulatedCallee) {
  std::string path;
  for (const char* p : {"/usr/lib/x86_64-linux-gnu/libssl.so.3", "/lib/x86_64-linux-gnu/libssl.so.3"})
    if (std::filesystem::exists(p)) path = p;
  if (path.empty()) {
    // libssl-dev is a build dependency: under CI its absence is a failure, not a skip.
    if (::threadline::testing::InCi()) FAIL() << "CI mode: no libssl.so.3 on this machine";
    GTEST_SKIP() << "no libssl.so.3 on this machine";
  }
  auto elf = ElfFile::Open(path, {"SSL_read", "SSL_read_ex", "SSL_write", "SSL_write_ex"});
  ASSERT_TRUE(elf.ok()) << elf.error().message;
  auto bytes_at = [&](uint64_t offset, size_t n) {
    std::ifstream in(path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(offset));
    std::vector<uint8_t> b(n);
    in.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(n));
    b.resize(static_cast<size_t>(in.gcount()));
    return b;
  };
  for (auto [plain, ex] : {std::pair{"SSL_read", "SSL_read_ex"}, std::pair{"SSL_write", "SSL_write_ex"}}) {
    auto f = elf->Find(plain);
    auto g = elf->Find(ex);
    ASSERT_TRUE(f && g) << plain;
    const auto code = bytes_at(f->file_offset, 96);
    if (UprobeEmulatesFirstInstruction(code)) {
      // Another build, whose entry is already cheap: the agent probes it there and this test's
      // claim (about Debian 12's libssl3, the one scripts/deps.sh installs and CI runs) has
      // nothing to check. Said, not passed silently; in CI, where libssl is Debian's, a failure.
      const std::string why = std::string(plain) + " in " + path +
                              " starts with an emulated instruction: not the libssl this test is about";
      if (::threadline::testing::InCi()) FAIL() << "CI mode: " << why;
      GTEST_SKIP() << why;
    }
    const auto a = LeadingCallTargets(code, f->address);
    const auto b = LeadingCallTargets(bytes_at(g->file_offset, 96), g->address);
    ASSERT_FALSE(a.empty()) << plain;
    ASSERT_FALSE(b.empty()) << ex;
    EXPECT_EQ(a.front(), b.front()) << plain << " and " << ex << " call different functions first";
    auto off = elf->FileOffsetOf(a.front());
    ASSERT_TRUE(off.has_value());
    EXPECT_TRUE(UprobeEmulatesFirstInstruction(bytes_at(*off, 16)))
        << "the common callee of " << plain << " starts with a single-stepped instruction";
  }
}

}  // namespace
}  // namespace threadline::symbolizer
