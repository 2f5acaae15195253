// bench/hook_dispatch: what each way of hooking syscalls costs per syscall, the kernel's
// dispatch included (which BPF run counters cannot see), with programs that stop after the
// selection check (bpf/hook_dispatch.bpf.c):
//   none          no program
//   tracepoints   syscalls:sys_enter_write, sys_exit_write, sys_exit_read (the capture
//                 object's hook set for a write+read pair)
//   raw_tp        raw_syscalls sys_enter + sys_exit as raw tracepoints, dispatching on the
//                 syscall number, run for every syscall of every task
//   tp_btf        the same as BTF tracepoints
// For each: the loop thread's CPU ns (CLOCK_THREAD_CPUTIME_ID: others' load is not counted) per
// write(64 B)+read(64 B) pair on loopback TCP, and per getppid(), a syscall no program wants
// (what every other syscall on the node pays). Configurations run interleaved, round after
// round; reported: median [min-max] over the rounds, and the median delta against "none".
// --selected marks this process traced (the programs then count a run and return).

#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "agent/common/unique_fd.h"
#include "hook_dispatch.skel.h"

namespace {

double ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

struct Pair {
  threadline::UniqueFd writer, reader;
};

bool LoopbackTcp(Pair& p) {
  threadline::UniqueFd listener(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (listener.get() < 0 || ::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len) ||
      ::listen(listener.get(), 1) || ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len))
    return false;
  p.writer = threadline::UniqueFd(::socket(AF_INET, SOCK_STREAM, 0));
  if (p.writer.get() < 0 || ::connect(p.writer.get(), reinterpret_cast<sockaddr*>(&addr), len)) return false;
  p.reader = threadline::UniqueFd(::accept(listener.get(), nullptr, nullptr));
  int one = 1;
  ::setsockopt(p.writer.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return p.reader.get() >= 0;
}

double PairNs(const Pair& p, size_t n) {
  char buf[64];
  std::memset(buf, 'x', sizeof(buf));
  const double t0 = ThreadCpuNs();
  for (size_t i = 0; i < n; ++i) {
    if (::write(p.writer.get(), buf, sizeof(buf)) != 64 || ::read(p.reader.get(), buf, sizeof(buf)) != 64) {
      std::perror("hook_dispatch: write/read");
      std::exit(1);
    }
  }
  return (ThreadCpuNs() - t0) / static_cast<double>(n);
}

double OtherSyscallNs(size_t n) {
  const double t0 = ThreadCpuNs();
  for (size_t i = 0; i < n; ++i) ::syscall(SYS_getppid);
  return (ThreadCpuNs() - t0) / static_cast<double>(n);
}

struct Config {
  const char* name;
  std::vector<bpf_program*> programs;
  std::vector<double> pair, other;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  size_t iterations = 100'000;
  int rounds = 9;
  bool selected = false;
  CLI::App app{"threadline: syscall hook dispatch cost, per-syscall tracepoints vs raw_syscalls"};
  app.add_option("--iterations", iterations, "pairs (and getppid calls) per round")->check(CLI::PositiveNumber);
  app.add_option("--rounds", rounds, "interleaved rounds")->check(CLI::PositiveNumber);
  app.add_flag("--selected", selected, "mark this process traced");
  CLI11_PARSE(app, argc, argv);

  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(0, &set);
  sched_setaffinity(0, sizeof(set), &set);
  libbpf_set_print([](libbpf_print_level, const char*, va_list) { return 0; });

  hook_dispatch_bpf* skel = hook_dispatch_bpf__open();
  if (!skel) {
    std::perror("hook_dispatch: open");
    return 77;
  }
  const uint32_t tgid = static_cast<uint32_t>(getpid());
  bpf_map__set_max_entries(skel->maps.hint, tgid / 64 + 1);
  // tp_btf needs kernel BTF and attach by name; drop it (and report) where it does not load.
  if (hook_dispatch_bpf__load(skel)) {
    std::fprintf(stderr, "hook_dispatch: load failed (root and BPF needed)\n");
    hook_dispatch_bpf__destroy(skel);
    return 77;
  }
  if (selected) {
    const uint32_t word = tgid / 64;
    const uint64_t bits = 1ull << (tgid & 63);
    bpf_map__update_elem(skel->maps.hint, &word, sizeof(word), &bits, sizeof(bits), BPF_ANY);
  }
  std::vector<Config> configs = {
      {"none", {}, {}, {}},
      {"tracepoints (3)", {skel->progs.tp_enter_write, skel->progs.tp_exit_write, skel->progs.tp_exit_read}, {}, {}},
      {"raw_tp sys_enter+sys_exit", {skel->progs.raw_enter, skel->progs.raw_exit}, {}, {}},
      {"tp_btf sys_enter+sys_exit", {skel->progs.btf_enter, skel->progs.btf_exit}, {}, {}},
  };
  Pair p;
  if (!LoopbackTcp(p)) {
    std::perror("hook_dispatch: loopback pair");
    return 1;
  }
  for (int r = 0; r < rounds; ++r) {
    for (Config& c : configs) {
      std::vector<bpf_link*> links;
      for (bpf_program* prog : c.programs) {
        bpf_link* l = bpf_program__attach(prog);
        if (!l) {
          std::fprintf(stderr, "hook_dispatch: attach %s: %s\n", bpf_program__name(prog), std::strerror(errno));
          return 1;
        }
        links.push_back(l);
      }
      (void)PairNs(p, iterations / 10 + 1);  // warm-up
      c.pair.push_back(PairNs(p, iterations));
      c.other.push_back(OtherSyscallNs(iterations));
      for (bpf_link* l : links) bpf_link__destroy(l);
    }
  }
  std::printf("hook_dispatch: %zu pairs and getppid calls per round, %d interleaved rounds, process %s\n",
              iterations, rounds, selected ? "selected" : "not selected");
  std::printf("%-28s %26s %10s %26s %10s\n", "hooks", "cpu ns/pair [min-max]", "delta", "cpu ns/getppid [min-max]",
              "delta");
  const double base_pair = Median(configs[0].pair), base_other = Median(configs[0].other);
  for (const Config& c : configs) {
    const auto [pmin, pmax] = std::minmax_element(c.pair.begin(), c.pair.end());
    const auto [omin, omax] = std::minmax_element(c.other.begin(), c.other.end());
    std::printf("%-28s %8.0f [%7.0f-%7.0f] %+10.0f %8.1f [%7.1f-%7.1f] %+10.1f\n", c.name, Median(c.pair), *pmin,
                *pmax, Median(c.pair) - base_pair, Median(c.other), *omin, *omax, Median(c.other) - base_other);
    std::printf("RESULT {\"bench\":\"hook_dispatch\",\"hooks\":\"%s\",\"selected\":%s,\"pair_cpu_ns\":%.1f,"
                "\"pair_delta\":%.1f,\"other_cpu_ns\":%.1f,\"other_delta\":%.1f}\n",
                c.name, selected ? "true" : "false", Median(c.pair), Median(c.pair) - base_pair, Median(c.other),
                Median(c.other) - base_other);
  }
  hook_dispatch_bpf__destroy(skel);
  return 0;
}
