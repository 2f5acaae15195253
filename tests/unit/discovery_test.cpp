// Discovery against fake /proc trees: /proc/<pid>/stat parsing, process info, selection by pid and
// executable (with descendants), and the /proc/net/tcp parser used for late-seen sockets.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "agent/discovery/proc_socket_resolver.h"
#include "agent/discovery/process_info.h"
#include "agent/discovery/selector.h"
#include "threadline/events.h"

namespace threadline {
namespace {

namespace fs = std::filesystem;

// A throwaway /proc with just the files discovery reads.
class FakeProc {
 public:
  FakeProc() {
    char tmpl[] = "/tmp/threadline-fakeproc-XXXXXX";
    root_ = ::mkdtemp(tmpl);
  }
  ~FakeProc() { fs::remove_all(root_); }
  const std::string& root() const { return root_; }

  void Add(uint32_t pid, uint32_t ppid, const std::string& comm, const std::string& exe,
           const std::string& cmdline, uint64_t start_ticks = 100, bool kthread = false) {
    fs::path dir = fs::path(root_) / std::to_string(pid);
    fs::create_directories(dir / "ns");
    // pid (comm) state ppid pgrp session tty tpgid flags ... field 22 = starttime
    std::string stat = std::to_string(pid) + " (" + comm + ") S " + std::to_string(ppid) +
                       " 1 1 0 -1 " + std::to_string(kthread ? 0x00200000 : 0x00400000);
    for (int f = 10; f <= 21; ++f) stat += " 0";
    stat += " " + std::to_string(start_ticks) + " 0 0\n";
    Write(dir / "stat", stat);
    Write(dir / "comm", comm + "\n");
    Write(dir / "cmdline", cmdline);
    if (!exe.empty()) fs::create_symlink(exe, dir / "exe");
    fs::create_symlink("net:[4026531840]", dir / "ns" / "net");
  }

 private:
  static void Write(const fs::path& p, const std::string& text) {
    std::ofstream(p, std::ios::binary) << text;
  }
  std::string root_;
};

TEST(ParseStat, CommWithSpacesAndParentheses) {
  auto info = discovery::ParseStat(
      "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->pid, 1234u);
  EXPECT_EQ(info->comm, "my (odd) prog");
  EXPECT_EQ(info->ppid, 1u);
  EXPECT_EQ(info->start_time_ticks, 98765u);
  EXPECT_FALSE(info->is_kernel_thread);
}

TEST(ParseStat, RejectsTruncatedText) {
  EXPECT_FALSE(discovery::ParseStat("1234 (x").ok());
  EXPECT_FALSE(discovery::ParseStat("").ok());
  EXPECT_FALSE(discovery::ParseStat("1234 (x) S 1").ok());
}

TEST(ReadProcessInfo, ReadsEveryFieldFromAFakeTree) {
  FakeProc proc;
  proc.Add(42, 1, "nginx", "/usr/sbin/nginx", std::string("nginx\0-g\0daemon off;\0", 21), 555);
  auto info = ReadProcessInfo(42, proc.root());
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->comm, "nginx");
  EXPECT_EQ(info->exe_path, "/usr/sbin/nginx");
  EXPECT_EQ(info->ppid, 1u);
  EXPECT_EQ(info->start_time_ticks, 555u);
  EXPECT_EQ(info->netns_inode, 4026531840u);
  ASSERT_EQ(info->cmdline.size(), 3u);
  EXPECT_EQ(info->cmdline[1], "-g");
  EXPECT_EQ(info->cmdline[2], "daemon off;");
}

TEST(ReadProcessInfo, MissingProcessIsAnError) {
  FakeProc proc;
  EXPECT_FALSE(ReadProcessInfo(7, proc.root()).ok());
}

TEST(ListPids, OnlyNumericEntriesAscending) {
  FakeProc proc;
  proc.Add(30, 1, "c", "/bin/c", "c");
  proc.Add(4, 1, "a", "/bin/a", "a");
  fs::create_directories(fs::path(proc.root()) / "self");
  fs::create_directories(fs::path(proc.root()) / "sys");
  EXPECT_EQ(ListPids(proc.root()), (std::vector<uint32_t>{4, 30}));
}

TEST(Selector, TraceAllButTheAgentAndKernelThreads) {
  Selector all(SelectionConfig{.agent_pid = 10});
  EXPECT_TRUE(all.trace_all_processes());
  ProcessInfo p{.pid = 11, .comm = "curl", .exe_path = "/usr/bin/curl"};
  EXPECT_TRUE(all.Matches(p));
  p.pid = 10;
  EXPECT_FALSE(all.Matches(p));
  EXPECT_EQ(all.SelectionFlags(p), TL_SEL_EXCLUDE);
  ProcessInfo kthread{.pid = 2, .comm = "kworker/0:1", .is_kernel_thread = true};
  EXPECT_FALSE(all.Matches(kthread));
}

TEST(Selector, ExeGlobMatchesPathBasenameOrComm) {
  Selector sel(SelectionConfig{.exe_globs = {"*python3*"}, .agent_pid = 1});
  EXPECT_FALSE(sel.trace_all_processes());
  EXPECT_TRUE(sel.Matches(ProcessInfo{.pid = 5, .comm = "python3", .exe_path = "/usr/bin/python3.11"}));
  EXPECT_TRUE(sel.Matches(ProcessInfo{.pid = 5, .comm = "worker", .exe_path = "/opt/py/bin/python3"}));
  EXPECT_TRUE(sel.Matches(ProcessInfo{.pid = 5, .comm = "python3", .exe_path = ""}));
  EXPECT_FALSE(sel.Matches(ProcessInfo{.pid = 5, .comm = "node", .exe_path = "/usr/bin/node"}));
  Selector base(SelectionConfig{.exe_globs = {"nginx"}, .agent_pid = 1});
  EXPECT_TRUE(base.Matches(ProcessInfo{.pid = 6, .comm = "nginx: worker", .exe_path = "/usr/sbin/nginx"}));
  EXPECT_EQ(base.SelectionFlags(ProcessInfo{.pid = 6, .comm = "x", .exe_path = "/usr/sbin/nginx"}),
            TL_SEL_TRACE | TL_SEL_INHERIT);
}

TEST(Selector, InitialMatchesIncludesDescendantsButNeverTheAgentTree) {
  FakeProc proc;
  proc.Add(1, 0, "init", "/sbin/init", "init");
  proc.Add(100, 1, "nginx", "/usr/sbin/nginx", "nginx");
  proc.Add(101, 100, "nginx", "/usr/sbin/nginx", "nginx");  // worker forked before us
  proc.Add(102, 101, "sh", "/bin/sh", "sh");                // its child
  proc.Add(200, 1, "curl", "/usr/bin/curl", "curl");
  proc.Add(300, 1, "threadline", "/opt/threadline", "threadline");  // the agent
  proc.Add(301, 300, "nginx", "/usr/sbin/nginx", "nginx");  // agent's child matching the glob
  Selector sel(SelectionConfig{.exe_globs = {"nginx"}, .agent_pid = 300});
  EXPECT_EQ(sel.InitialMatches(proc.root()), (std::vector<uint32_t>{100, 101, 102}));
  Selector by_pid(SelectionConfig{.pids = {200}, .agent_pid = 300});
  EXPECT_EQ(by_pid.InitialMatches(proc.root()), (std::vector<uint32_t>{200}));
}

TEST(ParseProcNetTcp, Ipv4AndListeningSockets) {
  const char* text =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11111 1 0000000000000000 100 0 0 10 0\n"
      "   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 22222 1 0000000000000000 20 4 30 10 -1\n"
      "garbage line\n";
  auto entries = discovery::ParseProcNetTcp(text, AF_INET);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].state, 10);
  EXPECT_EQ(entries[0].tuple.local_port, 8080);
  EXPECT_EQ(entries[0].inode, 11111u);
  EXPECT_EQ(entries[1].tuple.local.ToString(), "127.0.0.1");
  EXPECT_EQ(entries[1].tuple.local_port, 40000);
  EXPECT_EQ(entries[1].tuple.remote_port, 8080);
  EXPECT_EQ(entries[1].state, 1);
  EXPECT_EQ(entries[1].tuple.family, AF_INET);
}

TEST(ParseProcNetTcp, Ipv6AndV4Mapped) {
  const char* text =
      "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:A000 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0\n"
      "   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:A001 01 00000000:00000000 00:00000000 00000000     0        0 444 1 0\n";
  auto entries = discovery::ParseProcNetTcp(text, AF_INET6);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].tuple.local.ToString(), "::1");
  EXPECT_EQ(entries[0].tuple.remote_port, 0xA000);
  EXPECT_EQ(entries[1].tuple.local.ToString(), "127.0.0.1");  // v4-mapped normalised
  EXPECT_EQ(entries[1].tuple.family, AF_INET6);
  EXPECT_EQ(entries[1].inode, 444u);
}

}  // namespace
}  // namespace threadline
