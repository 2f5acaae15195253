// bench/probes: what each probe the agent uses costs the traced application, per hit.
//
// A loop of N small write()+read() pairs (64 bytes) on a loopback TCP connection, in this
// process, pinned to one CPU, measured:
//   untraced                   no program loaded
//   attached, not selected     the capture program attached, this process not selected: what
//                              every unselected process on the node pays (per syscall: the
//                              entry and exit tracepoints run, a selection-map lookup, an
//                              args-map lookup)
//   attached, selected         this process traced: arguments stashed, fd -> socket walk, two
//                              data events with 64 bytes of payload per pair, delivered to a
//                              reader draining the ring on another CPU (the agent's
//                              RingConsumer into a sink that does nothing), events committed
//                              without waking the reader as the agent does (batch_wakeups)
//   selected, wake-up per      as "selected", with the kernel's default commit: the reader is
//     event                    woken (irq_work, a self-IPI) whenever it had caught up, i.e.
//                              for nearly every event: the difference is what those wake-ups
//                              cost the traced syscalls
//   selected, AF_UNIX          the same traced process doing I/O on a socket that is not TCP
//                              (socketpair): the walk to the socket, then nothing is emitted
//                              (compared with untraced AF_UNIX)
// and untraced once more at the end (drift check). Each case is the median of R runs.
//
// --bpf-stats: also the time spent inside the four syscall programs the loop hits (entry and exit
// of read and write), from the kernel's own per-program counters (BPF_ENABLE_STATS: run_time_ns
// and run_cnt), as ns per pair, median [min-max] over the runs. That is the part of the
// overhead our programs decide (the tracepoint's own dispatch is not in it), and it is far less
// sensitive to a loaded machine than the timed loop (only preemption inside a program counts).
// The timed figures then include the counters' own cost (two clock reads per program run).
//
//
// Then the uprobes (--no-uprobes skips them):
//   uprobe kinds               a uprobe (the agent's TLS entry program, process not selected) on
//                              tiny functions whose first instruction is a 5-byte nop, a push,
//                              a direct call, or `sub $0x18,%rsp`, and a uretprobe on the push and
//                              sub ones: what one hit costs by the kind of instruction probed
//                              (the kernel emulates push/call/jmp/jcc/nop, optimizes a 5-byte nop
//                              into a call, and single-steps everything else)
//   OpenSSL                    SSL_write(64 B) + SSL_read(64 B) over a loopback TLS 1.3
//                              connection in this process, untraced; sockets traced only (the
//                              agent with --tls off: no data event, by design, as the sockets
//                              carry ciphertext, which is never emitted; the bench checks that
//                              none is); and the agent's TLS probes on the system
//                              libssl placed at the exported SSL_read/SSL_write entries (single-
//                              stepped on Debian's build) or where the agent places them (their
//                              internal callee, emulated: agent/kernel/tls_attacher.cpp), as
//                              uprobe + uretprobe pairs, and at the agent's sites through one
//                              uprobe session link (kernel 6.13+: the return is probed only in
//                              a selected process), each with this process not selected and
//                              selected.

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/common/unique_fd.h"
#include "agent/ingest/ring_consumer.h"
#include "agent/kernel/bpf_env.h"
#include "agent/kernel/capture_program.h"
#include "agent/kernel/tls_attacher.h"
#include "symbolizer/elf_file.h"
#include "symbolizer/proc_maps.h"
#include "tests/support/ci_mode.h"

// Probe targets for the "uprobe kinds" cases: each starts with the instruction kind named and
// returns at once. Top-level asm so the compiler cannot change their first instruction.
__asm__(
    ".text\n"
    ".globl tl_bench_site_nop5\n.type tl_bench_site_nop5,@function\n"
    "tl_bench_site_nop5:\n .byte 0x0f,0x1f,0x44,0x00,0x00\n ret\n"
    ".globl tl_bench_site_push\n.type tl_bench_site_push,@function\n"
    "tl_bench_site_push:\n push %rbp\n pop %rbp\n ret\n"
    ".globl tl_bench_site_call\n.type tl_bench_site_call,@function\n"
    "tl_bench_site_call:\n call tl_bench_site_leaf\n ret\n"
    ".globl tl_bench_site_sub\n.type tl_bench_site_sub,@function\n"
    "tl_bench_site_sub:\n sub $0x18,%rsp\n add $0x18,%rsp\n ret\n"
    ".globl tl_bench_site_leaf\n.type tl_bench_site_leaf,@function\n"
    "tl_bench_site_leaf:\n ret\n");
extern "C" {
void tl_bench_site_nop5();
void tl_bench_site_push();
void tl_bench_site_call();
void tl_bench_site_sub();
}

namespace threadline::bench {
namespace {

constexpr int kSkipped = 77;  // ctest SKIP_RETURN_CODE

bool Pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

// A connected loopback TCP pair: `client` writes, `server` reads (same process).
struct SocketPair {
  UniqueFd writer;
  UniqueFd reader;
};

SocketPair LoopbackTcp() {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (listener.get() < 0 || ::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len) ||
      ::listen(listener.get(), 1) ||
      ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len)) {
    std::perror("probes_bench: listen");
    std::exit(1);
  }
  UniqueFd client(::socket(AF_INET, SOCK_STREAM, 0));
  if (client.get() < 0 || ::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), len)) {
    std::perror("probes_bench: connect");
    std::exit(1);
  }
  UniqueFd server(::accept(listener.get(), nullptr, nullptr));
  if (server.get() < 0) {
    std::perror("probes_bench: accept");
    std::exit(1);
  }
  int one = 1;
  ::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return {std::move(client), std::move(server)};
}

SocketPair UnixPair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds)) {
    std::perror("probes_bench: socketpair");
    std::exit(1);
  }
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// CPU time of the calling thread: what the pair costs this process, the BPF programs included
// (they run in its syscalls), whatever else the machine runs meanwhile.
double ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// ns per write()+read() pair over `iterations` (wall clock); `cpu_ns`, when given, gets the
// thread's CPU ns per pair.
// --exchange: each "pair" is a request and its response on the same connection (write+read one
// way, then write+read back), as a keep-alive client and server make them: every syscall
// changes the direction of its connection's data, which is where the context rule and the
// request boundary run (bpf/capture/trace_ctx.bpf.h, shed_turn.bpf.h). 4 data events per pair.
bool g_exchange = false;

double TimePairs(const SocketPair& p, size_t iterations, double* cpu_ns = nullptr) {
  const double cpu0 = ThreadCpuNs();
  char buf[64], reply[64];
  std::memset(buf, 'x', sizeof(buf));
  std::memset(reply, 'y', sizeof(reply));
  if (g_exchange) {
    // An HTTP/1 request line: the connection was made before the programs attached (its role
    // unknown), so the kernel starts a server request only on bytes that look like one.
    std::memcpy(buf, "GET /x HTTP/1.1\r\n", 17);
    std::memcpy(reply, "HTTP/1.1 200 OK\r\n", 17);
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < iterations; ++i) {
    if (::write(p.writer.get(), buf, sizeof(buf)) != static_cast<ssize_t>(sizeof(buf)) ||
        ::read(p.reader.get(), buf, sizeof(buf)) != static_cast<ssize_t>(sizeof(buf)) ||
        (g_exchange &&
         (::write(p.reader.get(), reply, sizeof(reply)) != static_cast<ssize_t>(sizeof(reply)) ||
          ::read(p.writer.get(), reply, sizeof(reply)) != static_cast<ssize_t>(sizeof(reply))))) {
      std::perror("probes_bench: write/read");
      std::exit(1);
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (cpu_ns) *cpu_ns = (ThreadCpuNs() - cpu0) / static_cast<double>(iterations);
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(iterations);
}

// Counts data events; runs on the drain thread, read after it stopped.
class CountingSink : public EventSink {
 public:
  void OnData(const DataEvent&) override { data_events.fetch_add(1, std::memory_order_relaxed); }
  std::atomic<uint64_t> data_events{0};
};

// The capture program plus a thread draining its ring on another CPU.
class Tracer {
 public:
  // `batch_wakeups`: CaptureConfig::batch_wakeups (the agent's default: true).
  // `args_hash`: stash syscall arguments in the pid_tgid hash even where task storage works
  // (CaptureConfig::args_task_storage = false), to compare the two.
  static inline bool args_hash = false;
  static std::unique_ptr<Tracer> Start(int drain_cpu, bool batch_wakeups, std::string* error) {
    if (auto st = PrepareBpfEnvironment(); !st.ok()) {
      *error = st.error().message;
      return nullptr;
    }
    CaptureConfig cc;
    cc.agent_tgid = 0;  // this process is the traced application here, not the agent
    cc.trace_all = false;
    cc.batch_wakeups = batch_wakeups;
    cc.args_task_storage = !args_hash;
    auto capture = CaptureProgram::Create(cc);
    if (!capture.ok()) {
      *error = capture.error().message;
      return nullptr;
    }
    std::unique_ptr<Tracer> t(new Tracer());  // private constructor
    t->capture_ = std::move(*capture);
    auto ring = RingConsumer::Create(t->capture_->ring_buffer_fd(), t->sink_, t->metrics_);
    if (!ring.ok()) {
      *error = ring.error().message;
      return nullptr;
    }
    t->ring_ = std::move(*ring);
    t->drainer_ = std::thread([tp = t.get(), drain_cpu] {
      Pin(drain_cpu);
      while (!tp->stop_.load(std::memory_order_relaxed)) (void)tp->ring_->Poll(20);
      tp->ring_->Drain();
    });
    return t;
  }
  ~Tracer() {
    stop_.store(true);
    if (drainer_.joinable()) drainer_.join();
    ring_.reset();
    capture_.reset();
  }

  void Select(bool selected) {
    const uint32_t self = static_cast<uint32_t>(getpid());
    if (selected) {
      (void)capture_->Select(self, TL_SEL_TRACE);
    } else {
      (void)capture_->Unselect(self);
    }
  }
  uint64_t data_events() const { return sink_.data_events.load(); }
  CaptureProgram& capture() { return *capture_; }
  // Summed run_time_ns and run_cnt of the programs a write()+read() pair runs (kernel counters,
  // counting only while BPF_ENABLE_STATS is on).
  static constexpr const char* kSyscallPrograms[] = {"tl_enter_write", "tl_exit_write", "tl_enter_read",
                                                     "tl_exit_read"};
  static constexpr size_t kPrograms = std::size(kSyscallPrograms);
  struct ProgramTime {
    uint64_t ns = 0;
    uint64_t runs = 0;
    uint64_t each_ns[kPrograms] = {};  // by kSyscallPrograms; 0 for one not in the object
    uint64_t each_runs[kPrograms] = {};
  };
  ProgramTime SyscallProgramTime() const {
    ProgramTime t;
    for (size_t i = 0; i < kPrograms; ++i) {
      bpf_program* prog = capture_->FindProgram(kSyscallPrograms[i]);
      if (!prog) continue;
      bpf_prog_info info{};
      uint32_t len = sizeof(info);
      if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) != 0) continue;
      t.ns += info.run_time_ns;
      t.runs += info.run_cnt;
      t.each_ns[i] = info.run_time_ns;
      t.each_runs[i] = info.run_cnt;
    }
    return t;
  }
  uint64_t lost() const {
    KernelDrops d = capture_->ReadDrops();
    uint64_t n = 0;
    for (int r = 0; r < TL_DROP__COUNT; ++r) n += d.Total(r);
    return n;
  }

 private:
  Tracer() = default;
  MetricsRegistry metrics_;
  CountingSink sink_;
  std::unique_ptr<CaptureProgram> capture_;
  std::unique_ptr<RingConsumer> ring_;
  std::atomic<bool> stop_{false};
  std::thread drainer_;
};

struct CaseResult {
  std::string name;
  double median_ns = 0;
  double min_ns = 0;
  double max_ns = 0;
  uint64_t events = 0;  // data events the reader got during this case
  uint64_t lost = 0;
  // Probe cases: runs of the probe's programs over kProbeCheckCalls calls made after the timed
  // runs, with the kernel's BPF run counters on (off while timing: they cost time).
  int64_t probe_runs = -1;
  uint64_t probe_runs_wanted = 0;
  // --bpf-stats: ns inside the syscall programs per pair, median/min/max over the runs, and
  // program runs per pair (4 when every entry and exit ran).
  double prog_ns = -1, prog_min_ns = 0, prog_max_ns = 0, prog_runs_per_pair = 0;
  std::string per_program;  // "name ns/run (runs/pair)" for each program that ran
  // The loop thread's CPU ns per pair (CLOCK_THREAD_CPUTIME_ID), median/min/max; -1: not taken.
  double cpu_ns = -1, cpu_min_ns = 0, cpu_max_ns = 0;
  int base = -1;  // index of the case the delta is against; -1: the untraced case of its transport
};

// Median, min and max of the runs of one case.
CaseResult Summarize(const std::string& name, std::vector<double> runs) {
  std::sort(runs.begin(), runs.end());
  CaseResult c;
  c.name = name;
  c.median_ns = runs[runs.size() / 2];
  c.min_ns = runs.front();
  c.max_ns = runs.back();
  return c;
}

CaseResult RunCase(const std::string& name, const SocketPair& p, size_t iterations, int repeats,
                   Tracer* tracer) {
  (void)TimePairs(p, std::min<size_t>(iterations / 10 + 1, 10000));  // warm-up
  if (tracer) std::this_thread::sleep_for(std::chrono::milliseconds(50));  // reader catches up
  const uint64_t events0 = tracer ? tracer->data_events() : 0;
  const uint64_t lost0 = tracer ? tracer->lost() : 0;
  std::vector<double> runs;
  std::vector<double> prog_ns, cpu_ns;
  uint64_t prog_runs = 0;
  Tracer::ProgramTime each{};  // per-program sums over the runs
  for (int r = 0; r < repeats; ++r) {
    const Tracer::ProgramTime before = tracer ? tracer->SyscallProgramTime() : Tracer::ProgramTime{};
    double cpu = 0;
    runs.push_back(TimePairs(p, iterations, &cpu));
    cpu_ns.push_back(cpu);
    if (tracer) {
      const Tracer::ProgramTime after = tracer->SyscallProgramTime();
      prog_ns.push_back(static_cast<double>(after.ns - before.ns) / static_cast<double>(iterations));
      prog_runs += after.runs - before.runs;
      for (size_t i = 0; i < Tracer::kPrograms; ++i) {
        each.each_ns[i] += after.each_ns[i] - before.each_ns[i];
        each.each_runs[i] += after.each_runs[i] - before.each_runs[i];
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  CaseResult c = Summarize(name, std::move(runs));
  std::sort(cpu_ns.begin(), cpu_ns.end());
  c.cpu_ns = cpu_ns[cpu_ns.size() / 2];
  c.cpu_min_ns = cpu_ns.front();
  c.cpu_max_ns = cpu_ns.back();
  if (!prog_ns.empty() && prog_runs > 0) {
    std::sort(prog_ns.begin(), prog_ns.end());
    c.prog_ns = prog_ns[prog_ns.size() / 2];
    c.prog_min_ns = prog_ns.front();
    c.prog_max_ns = prog_ns.back();
    c.prog_runs_per_pair = static_cast<double>(prog_runs) / (static_cast<double>(iterations) * repeats);
    for (size_t i = 0; i < Tracer::kPrograms; ++i) {
      if (each.each_runs[i] == 0) continue;
      char part[128];
      std::snprintf(part, sizeof(part), "%s%s %.0f ns/run (%.2f/pair)", c.per_program.empty() ? "" : ", ",
                    Tracer::kSyscallPrograms[i],
                    static_cast<double>(each.each_ns[i]) / static_cast<double>(each.each_runs[i]),
                    static_cast<double>(each.each_runs[i]) / (static_cast<double>(iterations) * repeats));
      c.per_program += part;
    }
  }
  if (tracer) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    c.events = tracer->data_events() - events0;
    c.lost = tracer->lost() - lost0;
  }
  return c;
}

// ---- uprobes ----

// ns per call of `fn` over `iterations`.
double TimeCalls(void (*fn)(), size_t iterations) {
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < iterations; ++i) fn();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(iterations);
}

CaseResult MedianOf(const std::string& name, int repeats, const std::function<double()>& run,
                    Tracer* tracer) {
  (void)run();  // warm-up
  const uint64_t events0 = tracer ? tracer->data_events() : 0;
  std::vector<double> runs;
  for (int r = 0; r < repeats; ++r) runs.push_back(run());
  CaseResult c = Summarize(name, std::move(runs));
  if (tracer) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    c.events = tracer->data_events() - events0;
  }
  return c;
}

// A uprobe (or uretprobe) of the capture object on a function of this executable.
BpfLink AttachToSelf(CaptureProgram& capture, const char* program, const char* symbol, bool ret,
                     std::string* error) {
  auto elf = symbolizer::ElfFile::Open("/proc/self/exe", {symbol});
  if (!elf.ok() || !elf->Find(symbol)) {
    *error = std::string("symbol not found in /proc/self/exe: ") + symbol;
    return BpfLink();
  }
  LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = ret);
  bpf_link* link = bpf_program__attach_uprobe_opts(capture.FindProgram(program), -1, "/proc/self/exe",
                                                   elf->Find(symbol)->file_offset, &opts);
  if (!link) *error = std::string("attach to ") + symbol + ": " + std::strerror(errno);
  return BpfLink(link);
}

// A client and a server SSL over a loopback TCP pair, handshake done (TLS 1.3, P-256 self-signed).
struct TlsPair {
  SocketPair sockets;
  SSL_CTX* server_ctx = nullptr;
  SSL_CTX* client_ctx = nullptr;
  SSL* client = nullptr;
  SSL* server = nullptr;
  ~TlsPair() {
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(client_ctx);
    SSL_CTX_free(server_ctx);
  }
};

std::unique_ptr<TlsPair> MakeTlsPair() {
  auto t = std::make_unique<TlsPair>();
  t->sockets = LoopbackTcp();
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_set_issuer_name(cert, X509_get_subject_name(cert));
  X509_sign(cert, key, EVP_sha256());
  t->server_ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(t->server_ctx, cert);
  SSL_CTX_use_PrivateKey(t->server_ctx, key);
  X509_free(cert);
  EVP_PKEY_free(key);
  t->client_ctx = SSL_CTX_new(TLS_client_method());
  t->client = SSL_new(t->client_ctx);
  t->server = SSL_new(t->server_ctx);
  SSL_set_fd(t->client, t->sockets.writer.get());
  SSL_set_fd(t->server, t->sockets.reader.get());
  int accepted = 0;
  std::thread acceptor([&] { accepted = SSL_accept(t->server); });
  const int connected = SSL_connect(t->client);
  acceptor.join();
  if (connected != 1 || accepted != 1) {
    std::fprintf(stderr, "probes_bench: TLS handshake failed\n");
    ERR_print_errors_fp(stderr);
    std::exit(1);
  }
  return t;
}

// TLS pairs per run: a pair costs ~4-10x a plain write+read pair.
size_t TlsIterations(size_t iterations) { return std::max<size_t>(iterations / 8, 1); }

// ns per SSL_write(64 B) + SSL_read(64 B) pair.
double TimeTlsPairs(const TlsPair& t, size_t iterations) {
  char buf[64];
  std::memset(buf, 'x', sizeof(buf));
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < iterations; ++i) {
    if (SSL_write(t.client, buf, sizeof(buf)) != static_cast<int>(sizeof(buf)) ||
        SSL_read(t.server, buf, sizeof(buf)) != static_cast<int>(sizeof(buf))) {
      std::fprintf(stderr, "probes_bench: SSL_write/SSL_read failed\n");
      std::exit(1);
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(iterations);
}

// The system libssl this process runs (the one OpenSSL's symbols resolve to).
std::string LoadedLibssl() {
  for (const auto& m : symbolizer::MappedFiles("/proc", static_cast<uint32_t>(getpid()))) {
    if (m.path.find("libssl.so") != std::string::npos) return m.path;
  }
  return {};
}

// Untimed calls over which a probe case checks its probes ran.
constexpr size_t kProbeCheckCalls = 200;

// Runs of the capture object's TLS-entry and return programs during `calls()`, counted by the
// kernel (BPF_ENABLE_STATS while its fd is open); -1 when the counters cannot be had. Proves a
// probe fired where timing alone cannot on a busy machine (a trap is ~1 us against a TLS pair of
// 10-25 us that load makes vary more than that).
int64_t CountProbeRuns(CaptureProgram& capture, const std::function<void()>& calls) {
  static constexpr const char* kPrograms[] = {"tl_ssl_write_enter", "tl_ssl_write_ex_enter",
                                              "tl_ssl_read_enter", "tl_ssl_read_ex_enter",
                                              "tl_ssl_return", "tl_ssl_session"};
  auto runs = [&]() -> int64_t {
    int64_t n = 0;
    for (const char* name : kPrograms) {
      bpf_program* p = capture.FindProgram(name);
      if (p == nullptr) continue;
      bpf_prog_info info{};
      uint32_t len = sizeof(info);
      if (bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len) != 0) return -1;
      n += static_cast<int64_t>(info.run_cnt);
    }
    return n;
  };
  UniqueFd stats(bpf_enable_stats(BPF_STATS_RUN_TIME));
  if (!stats.valid()) return -1;
  const int64_t before = runs();
  calls();
  const int64_t after = runs();
  return before < 0 || after < 0 ? -1 : after - before;
}

// Appends the uprobe cases to `results`; false on a setup failure (`error` says which).
// `tls` is the connection "TLS untraced" (results[tls_untraced]) was measured on, before any
// program was loaded.
bool RunUprobeCases(Tracer& tracer, const TlsPair& tls, int tls_untraced, size_t iterations,
                    int repeats, std::vector<CaseResult>* results, std::string* error) {
  tracer.Select(false);
  CaptureProgram& capture = tracer.capture();
  struct Kind {
    const char* label;
    const char* symbol;
    void (*fn)();
    bool ret;
  };
  const Kind kinds[] = {
      {"uprobe on a 5-byte nop (optimized)", "tl_bench_site_nop5", tl_bench_site_nop5, false},
      {"uprobe on push %rbp (emulated)", "tl_bench_site_push", tl_bench_site_push, false},
      {"uprobe on call rel32 (emulated)", "tl_bench_site_call", tl_bench_site_call, false},
      {"uprobe on sub $0x18,%rsp (single-stepped)", "tl_bench_site_sub", tl_bench_site_sub, false},
      {"uretprobe, entry push %rbp", "tl_bench_site_push", tl_bench_site_push, true},
      {"uretprobe, entry sub $0x18,%rsp", "tl_bench_site_sub", tl_bench_site_sub, true},
  };
  for (const Kind& k : kinds) {
    const int base_index = static_cast<int>(results->size());
    results->push_back(MedianOf(std::string("call untraced: ") + k.symbol, repeats,
                                [&] { return TimeCalls(k.fn, iterations); }, nullptr));
    BpfLink link = AttachToSelf(capture, k.ret ? "tl_ssl_return" : "tl_ssl_write_enter", k.symbol,
                                k.ret, error);
    if (!link) return false;
    results->push_back(MedianOf(k.label, repeats, [&] { return TimeCalls(k.fn, iterations); },
                                nullptr));
    results->back().base = base_index;
    results->back().probe_runs_wanted = kProbeCheckCalls;
    results->back().probe_runs =
        CountProbeRuns(capture, [&] { (void)TimeCalls(k.fn, kProbeCheckCalls); });
  }

  // OpenSSL, on the connection measured untraced before.
  const std::string libssl = LoadedLibssl();
  if (libssl.empty()) {
    *error = "libssl.so not found in this process's maps";
    return false;
  }
  const size_t pairs = TlsIterations(iterations);
  auto run = [&] { return TimeTlsPairs(tls, pairs); };
  tracer.Select(true);
  results->push_back(MedianOf("TLS, sockets traced, no uprobes (--tls off)", repeats, run, &tracer));
  results->back().base = tls_untraced;
  struct Placement {
    bool cheap;
    bool sessions;
    const char* where;
  };
  // Uprobe + uretprobe pairs at the exported entries, then at the agent's sites, then the
  // agent's sites through one uprobe session link (its default on kernels 6.13+: the return is
  // probed only in traced processes).
  const Placement placements[] = {{false, false, "exported entries"},
                                  {true, false, "agent's sites"},
                                  {true, true, "agent's sites, sessions"}};
  for (const Placement& placement : placements) {
    const bool cheap = placement.cheap;
    TlsAttacherOptions options;
    options.scan_at_start = false;
    options.cheap_openssl_sites = cheap;
    options.uprobe_sessions = placement.sessions;
    MetricsRegistry metrics;
    auto attacher = TlsAttacher::Create(tracer.capture(), options, metrics);
    if (!attacher.ok()) {
      *error = attacher.error().message;
      return false;
    }
    auto report = (*attacher)->AttachFile(libssl);
    if (!report.ok() || !report->error.empty()) {
      *error = "attach to " + libssl + ": " + (report.ok() ? report->error : report.error().message);
      return false;
    }
    if (placement.sessions && !(*attacher)->uses_uprobe_sessions()) {
      std::printf("probes_bench: no uprobe sessions on this kernel: the session cases are skipped\n");
      continue;
    }
    std::string where = placement.where;
    // At least an SSL_write and an SSL_read entry per pair.
    auto check_runs = [&](CaseResult& c) {
      c.probe_runs_wanted = 2 * kProbeCheckCalls;
      c.probe_runs = CountProbeRuns(capture, [&] { (void)TimeTlsPairs(tls, kProbeCheckCalls); });
    };
    tracer.Select(false);
    results->push_back(MedianOf("TLS uprobes at " + where + ", not selected", repeats, run, &tracer));
    results->back().base = tls_untraced;
    check_runs(results->back());
    tracer.Select(true);
    results->push_back(MedianOf("TLS uprobes at " + where + ", selected", repeats, run, &tracer));
    results->back().base = tls_untraced;
    check_runs(results->back());
    std::string sites;
    for (const auto& f : report->functions) sites += (sites.empty() ? "" : "; ") + f;
    std::printf("probes_bench: %s: %s\n", where.c_str(), sites.c_str());
  }
  tracer.Select(false);
  return true;
}

int Main(int argc, char** argv) {
  size_t iterations = 200'000;
  int repeats = 5;
  int cpu = 0;
  int drain_cpu = -1;
  bool smoke = false;
  CLI::App app{"threadline probe cost: write()+read() pairs untraced vs with the capture program"};
  app.add_option("--iterations", iterations, "write+read pairs per run")->check(CLI::PositiveNumber);
  app.add_option("--repeats", repeats, "Runs per case (the median is reported)")->check(CLI::PositiveNumber);
  app.add_option("--cpu", cpu, "CPU the loop is pinned to");
  app.add_option("--drain-cpu", drain_cpu, "CPU of the ring reader (-1: another one than --cpu)");
  app.add_flag("--smoke", smoke, "Few iterations: checks that it runs and produces numbers");
  bool no_uprobes = false;
  app.add_flag("--no-uprobes", no_uprobes, "Skip the uprobe cases (kinds and OpenSSL)");
  bool bpf_stats = false;
  app.add_flag("--exchange", g_exchange,
               "Each pair is a request and its response (write+read, then back): 4 data events");
  app.add_flag("--bpf-stats", bpf_stats,
               "Also report the time inside the read/write syscall programs per pair (kernel "
               "run_time_ns counters; adds their own cost to the timed figures)");
  app.add_flag("--args-hash", Tracer::args_hash,
               "Stash syscall arguments in the pid_tgid hash, not task storage (the fallback for "
               "kernels without task storage; for comparing the two)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (smoke) {
    iterations = std::min<size_t>(iterations, 20000);
    repeats = 1;
  }
  spdlog::set_level(spdlog::level::warn);
  signal(SIGPIPE, SIG_IGN);
  const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (drain_cpu < 0) drain_cpu = ncpu > 1 ? (cpu + 1) % static_cast<int>(ncpu) : cpu;
  if (!Pin(cpu)) {
    std::fprintf(stderr, "probes_bench: cannot pin to CPU %d\n", cpu);
    return 1;
  }
  const bool ci = ::threadline::testing::InCi();

  UniqueFd stats_fd;  // the kernel counts program run time while this is open
  if (bpf_stats) {
    stats_fd = UniqueFd(bpf_enable_stats(BPF_STATS_RUN_TIME));
    if (stats_fd.get() < 0) {
      std::fprintf(stderr, "probes_bench: --bpf-stats: BPF_ENABLE_STATS failed: %s\n", std::strerror(errno));
      return 1;
    }
  }
  SocketPair tcp = LoopbackTcp();
  SocketPair unix_pair = UnixPair();
  std::printf("probes_bench: %zu write(64 B)+read(64 B) pairs%s per run, median of %d runs, loop "
              "on CPU %d, ring reader on CPU %d\n",
              iterations, g_exchange ? " and their replies (--exchange)" : "", repeats, cpu, drain_cpu);

  std::vector<CaseResult> results;
  results.push_back(RunCase("untraced (no program loaded), TCP", tcp, iterations, repeats, nullptr));
  results.push_back(RunCase("untraced (no program loaded), AF_UNIX", unix_pair, iterations, repeats, nullptr));
  std::string error;
  auto tracer = Tracer::Start(drain_cpu, /*batch_wakeups=*/true, &error);
  if (!tracer) {
    std::fprintf(stderr, "probes_bench: cannot load the capture program: %s\n", error.c_str());
    if (ci) return 1;  // CI must be able to run BPF: fail, never skip
    std::fprintf(stderr, "probes_bench: skipped (needs root and BPF; in CI mode, CI=true, that is a failure)\n");
    return kSkipped;
  }
  // The connection was made before the programs attached: the first selected write finds it
  // (first-I/O path), exactly like a server's keep-alive connection at agent start.
  tracer->Select(false);
  results.push_back(RunCase("attached, process not selected, TCP", tcp, iterations, repeats, tracer.get()));
  tracer->Select(true);
  results.push_back(RunCase("attached, process selected, TCP", tcp, iterations, repeats, tracer.get()));
  results.push_back(RunCase("attached, process selected, AF_UNIX", unix_pair, iterations, repeats, tracer.get()));
  tracer->Select(false);
  tracer.reset();
  tracer = Tracer::Start(drain_cpu, /*batch_wakeups=*/false, &error);
  if (!tracer) {
    std::fprintf(stderr, "probes_bench: cannot load the capture program: %s\n", error.c_str());
    return 1;
  }
  tracer->Select(true);
  results.push_back(RunCase("selected, TCP, a wake-up per event", tcp, iterations, repeats, tracer.get()));
  tracer->Select(false);
  tracer.reset();
  results.push_back(RunCase("untraced again (drift check), TCP", tcp, iterations, repeats, nullptr));

  const size_t first_uprobe_case = results.size();
  if (!no_uprobes) {
    // No program is loaded at this point: the TLS baseline.
    auto tls = MakeTlsPair();
    const int tls_untraced = static_cast<int>(results.size());
    results.push_back(MedianOf("TLS untraced (no program loaded)", repeats,
                               [&] { return TimeTlsPairs(*tls, TlsIterations(iterations)); }, nullptr));
    tracer = Tracer::Start(drain_cpu, /*batch_wakeups=*/true, &error);
    if (!tracer || !RunUprobeCases(*tracer, *tls, tls_untraced, iterations, repeats, &results, &error)) {
      std::fprintf(stderr, "probes_bench: uprobe cases: %s\n", error.c_str());
      return 1;
    }
    tracer.reset();
  }

  // Deltas against the case named by `base`, else the untraced case of the same transport.
  auto base_of = [&](const CaseResult& c) {
    if (c.base >= 0) return results[static_cast<size_t>(c.base)].median_ns;
    return c.name.find("AF_UNIX") != std::string::npos ? results[1].median_ns : results[0].median_ns;
  };
  std::printf("%-40s %9s %17s %14s %12s %6s\n", "case", "ns/pair", "spread (min-max)", "delta ns/pair",
              "data events", "lost");
  bool ok = true;
  for (const CaseResult& c : results) {
    char spread[64];
    std::snprintf(spread, sizeof(spread), "%.0f-%.0f", c.min_ns, c.max_ns);
    char delta[64];
    const double base = base_of(c);
    std::snprintf(delta, sizeof(delta), "%+.0f (%+.0f%%)", c.median_ns - base,
                  100.0 * (c.median_ns - base) / base);
    std::printf("%-40s %9.0f %17s %14s %12llu %6llu\n", c.name.c_str(), c.median_ns, spread,
                c.name.find("untraced") != std::string::npos ? "-" : delta, static_cast<unsigned long long>(c.events),
                static_cast<unsigned long long>(c.lost));
    std::printf("RESULT {\"bench\":\"probes\",\"case\":\"%s\",\"ns_per_pair\":%.1f,\"min\":%.1f,"
                "\"max\":%.1f,\"data_events\":%llu,\"lost\":%llu}\n",
                c.name.c_str(), c.median_ns, c.min_ns, c.max_ns,
                static_cast<unsigned long long>(c.events), static_cast<unsigned long long>(c.lost));
    if (!(c.median_ns > 0)) ok = false;
  }
  // CPU time is what the wall clock would show on a quiet machine, without the time other
  // processes took the CPU from the loop: on a shared machine, compare these.
  std::printf("\nthe loop thread's CPU time per pair (CLOCK_THREAD_CPUTIME_ID; others' load not counted):\n");
  std::printf("%-40s %9s %17s %14s\n", "case", "cpu ns/pair", "spread (min-max)", "delta ns/pair");
  for (const CaseResult& c : results) {
    if (c.cpu_ns < 0) continue;
    const double base = c.name.find("AF_UNIX") != std::string::npos ? results[1].cpu_ns : results[0].cpu_ns;
    char spread[64];
    std::snprintf(spread, sizeof(spread), "%.0f-%.0f", c.cpu_min_ns, c.cpu_max_ns);
    char delta[64];
    std::snprintf(delta, sizeof(delta), "%+.0f", c.cpu_ns - base);
    std::printf("%-40s %9.0f %17s %14s\n", c.name.c_str(), c.cpu_ns, spread,
                c.name.find("untraced") != std::string::npos ? "-" : delta);
    std::printf("RESULT {\"bench\":\"probes_cpu\",\"case\":\"%s\",\"cpu_ns_per_pair\":%.1f,\"min\":%.1f,"
                "\"max\":%.1f,\"delta\":%.1f}\n",
                c.name.c_str(), c.cpu_ns, c.cpu_min_ns, c.cpu_max_ns, c.cpu_ns - base);
  }
  if (bpf_stats) {
    std::printf("\ntime inside the read/write syscall programs (BPF_ENABLE_STATS), per pair:\n");
    std::printf("%-40s %9s %17s %14s\n", "case", "ns/pair", "spread (min-max)", "program runs/pair");
    for (const CaseResult& c : results) {
      if (c.prog_ns < 0) continue;
      char spread[64];
      std::snprintf(spread, sizeof(spread), "%.0f-%.0f", c.prog_min_ns, c.prog_max_ns);
      std::printf("%-40s %9.1f %17s %14.2f\n", c.name.c_str(), c.prog_ns, spread, c.prog_runs_per_pair);
      std::printf("    %s\n", c.per_program.c_str());
      std::printf("RESULT {\"bench\":\"probes_bpf_stats\",\"case\":\"%s\",\"prog_ns_per_pair\":%.1f,"
                  "\"min\":%.1f,\"max\":%.1f,\"runs_per_pair\":%.2f}\n",
                  c.name.c_str(), c.prog_ns, c.prog_min_ns, c.prog_max_ns, c.prog_runs_per_pair);
    }
  }
  // The selected TCP case must really have been traced: two data events per pair.
  const CaseResult& selected = results[3];
  const uint64_t expected = (g_exchange ? 4ull : 2ull) * iterations * static_cast<uint64_t>(repeats);
  if (selected.events + selected.lost < expected) {
    std::fprintf(stderr, "probes_bench: the selected case produced %llu data events (+%llu lost), "
                 "expected >= %llu: the loop was not traced\n",
                 static_cast<unsigned long long>(selected.events),
                 static_cast<unsigned long long>(selected.lost),
                 static_cast<unsigned long long>(expected));
    ok = false;
  }
  // Every uprobe case must really have been probed (its programs ran, by the kernel's counters;
  // timing cannot tell on a busy machine), and the selected TLS cases traced: two plaintext data
  // events per SSL_write+SSL_read pair.
  for (size_t i = first_uprobe_case; i < results.size(); ++i) {
    const CaseResult& c = results[i];
    if (c.probe_runs_wanted > 0 && c.probe_runs < static_cast<int64_t>(c.probe_runs_wanted)) {
      std::fprintf(stderr, "probes_bench: %s: its probes ran %lld times over %zu calls, expected "
                   ">= %llu (-1: no BPF run counters): the probe did not fire\n", c.name.c_str(),
                   static_cast<long long>(c.probe_runs), kProbeCheckCalls,
                   static_cast<unsigned long long>(c.probe_runs_wanted));
      ok = false;
    }
    if (c.name.starts_with("TLS uprobes") && c.name.ends_with(", selected")) {
      const uint64_t want = 2ull * TlsIterations(iterations) * static_cast<uint64_t>(repeats);
      if (c.events < want) {
        std::fprintf(stderr, "probes_bench: %s produced %llu data events, expected >= %llu\n",
                     c.name.c_str(), static_cast<unsigned long long>(c.events),
                     static_cast<unsigned long long>(want));
        ok = false;
      }
    }
  }
  // By design, the selected process without uprobes produces no data event: its TLS sockets
  // carry ciphertext, which the capture programs recognise (a TLS record header where the stream
  // starts: data__starts_tls_record, bpf/capture/data.bpf.h) and never emit; plaintext comes from
  // the uprobes only. An event here would be ciphertext leaking to the parsers.
  for (size_t i = first_uprobe_case; i < results.size(); ++i) {
    const CaseResult& c = results[i];
    if (c.name.starts_with("TLS, sockets traced, no uprobes") && c.events != 0) {
      std::fprintf(stderr, "probes_bench: %s produced %llu data events, expected none (ciphertext "
                   "is never emitted)\n", c.name.c_str(), static_cast<unsigned long long>(c.events));
      ok = false;
    }
  }
  if (results[2].events != 0) {
    std::fprintf(stderr, "probes_bench: the unselected case produced %llu data events\n",
                 static_cast<unsigned long long>(results[2].events));
    ok = false;
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace threadline::bench

int main(int argc, char** argv) { return threadline::bench::Main(argc, argv); }
