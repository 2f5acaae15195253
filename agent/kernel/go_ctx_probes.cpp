#include "agent/kernel/go_ctx_probes.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <iterator>

#include "agent/discovery/process_info.h"
#include "agent/discovery/proc_fs.h"
#include "agent/kernel/capture_program.h"
#include "symbolizer/x86_insn.h"

namespace threadline {

namespace {

// Offsets the probes read, checked against the Go 1.19 sources (/usr/lib/go-1.19/src); the
// fields used have the same places in 1.18 through 1.22:
//   net/http.conn      { server *Server; cancelCtx func; rwc net.Conn; remoteAddr string;
//                        tlsState *tls.ConnectionState; ... }      rwc data at 24, tlsState at 48
//   crypto/tls.Conn    { conn net.Conn; ... }                      its data word at 8
//   net.conn           { fd *netFD }                               0
//   net.netFD          { pfd poll.FD (56 bytes: fdMutex 16, Sysfd, pd, iovecs, csema,
//                        isBlocking, 3 bools); family int; sotype int; ... }  Sysfd 16, family 56
//   transportRequest   { *Request; ... }                           0
//   runtime.newproc1(fn *funcval, callergp *g, callerpc uintptr) *g: callergp in RBX (1.18+;
//                        1.17 passed argp and narg before it)
// A version outside the table gets no probe (a wrong offset would give a goroutine another
// connection's request: a wrong parent).
struct GoCtxLayoutRange {
  symbolizer::GoVersion first, last;
  tl_go_ctx_layout layout;
};
constexpr GoCtxLayoutRange kGoCtxLayouts[] = {
    {{1, 18, 0}, {1, 22, 999},
     {.flags = TL_GO_LAYOUT_VALID, .conn_rwc = 24, .conn_tls_state = 48, .tls_conn_iface = 8,
      .netconn_fd = 0, .netfd_sysfd = 16, .treq_request = 0, .netfd_family = 56}},
};

uint64_t Cookie(const tl_go_ctx_layout& l) {
  uint64_t c;
  std::memcpy(&c, &l, sizeof(c));
  return c;
}


constexpr const char* kReadRequestProgram = "tl_go_ctx_read_request";
constexpr const char* kNewprocProgram = "tl_go_ctx_newproc";
constexpr const char* kNewprocReturnProgram = "tl_go_ctx_newproc_return";
constexpr const char* kRoundTripProgram = "tl_go_ctx_round_trip";
constexpr const char* kRequestWriteProgram = "tl_go_ctx_request_write";

}  // namespace

std::optional<tl_go_ctx_layout> GoCtxLayoutFor(const symbolizer::GoVersion& version) {
  for (const auto& l : kGoCtxLayouts)
    if (version >= l.first && version <= l.last) return l.layout;
  return std::nullopt;
}

GoContextTracker::GoContextTracker(CaptureProgram& capture, const GoContextOptions& options,
                                   MetricsRegistry& metrics)
    : capture_(capture), options_(options), metrics_(metrics) {}

GoContextTracker::~GoContextTracker() { DestroyLinksConcurrently(ReleaseLinks()); }

std::vector<BpfLink> GoContextTracker::ReleaseLinks() {
  capture_.SetExecClassificationOn(false);
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  std::lock_guard lock(mu_);
  std::vector<BpfLink> links;
  for (auto& [key, file] : files_) {
    std::move(file.links.begin(), file.links.end(), std::back_inserter(links));
    file.links.clear();
  }
  return links;
}

Result<std::unique_ptr<GoContextTracker>> GoContextTracker::Create(CaptureProgram& capture,
                                                                   const GoContextOptions& options,
                                                                   MetricsRegistry& metrics) {
  for (const char* p : {kReadRequestProgram, kNewprocProgram, kNewprocReturnProgram,
                        kRoundTripProgram, kRequestWriteProgram})
    if (!capture.FindProgram(p)) return Error{std::string("capture object has no program ") + p};
  std::unique_ptr<GoContextTracker> t(new GoContextTracker(capture, options, metrics));
  t->go_procs_fd_ = capture.MapFd("go_procs");
  if (t->go_procs_fd_ < 0) return Error{"capture object has no map go_procs"};
  t->unclassified_fd_ = capture.MapFd("ctx_unclassified");
  if (t->unclassified_fd_ < 0) return Error{"capture object has no map ctx_unclassified"};
  t->agent_exe_ = symbolizer::FileKeyOf(options.proc_root + "/" + std::to_string(options.agent_pid) + "/exe");
  if (options.scan_at_start) {
    size_t go = 0, tracked = 0;
    for (uint32_t pid : ListPids(options.proc_root)) {
      if (pid == options.agent_pid) continue;
      if (auto f = t->Track(pid); f && f->go) {
        ++go;
        tracked += f->tracked;
      }
    }
    spdlog::info("Go goroutine context: {} running Go process(es), {} followed by goroutine; new "
                 "processes are looked at when they exec", go, tracked);
  }
  t->worker_ = std::thread([p = t.get()] { p->Run(); });
  // From now on every exec is looked at (OnExec), so the kernel may hold the thread rule back
  // for a process until then.
  capture.SetExecClassificationOn(true);
  return t;
}

void GoContextTracker::OnExec(uint32_t pid) {
  if (pid == options_.agent_pid) return;
  {
    std::lock_guard lock(queue_mu_);
    if (queue_.size() >= 4096) return;  // an exec storm: those are short-lived processes
    queue_.push_back(pid);
  }
  queue_cv_.notify_one();
}

void GoContextTracker::OnExit(uint32_t pid) {
  bpf_map_delete_elem(unclassified_fd_, &pid);
  std::lock_guard lock(mu_);
  if (marked_.erase(pid)) bpf_map_delete_elem(go_procs_fd_, &pid);
}

void GoContextTracker::Run() {
  std::unique_lock lock(queue_mu_);
  while (!stopping_) {
    if (queue_.empty()) {
      queue_cv_.wait(lock);
      continue;
    }
    const uint32_t pid = queue_.front();
    queue_.pop_front();
    lock.unlock();
    Track(pid);
    bpf_map_delete_elem(unclassified_fd_, &pid);  // Go or not, it is known now
    lock.lock();
  }
}

void GoContextTracker::Mark(uint32_t pid, bool tracked) {
  const uint32_t flags = tracked ? TL_GO_PROC_TRACKED : 0;
  if (bpf_map_update_elem(go_procs_fd_, &pid, &flags, BPF_ANY) == 0) marked_[pid] = tracked;
}

void GoContextTracker::Count(const char* result) {
  metrics_
      .GetCounter("threadline_go_context_files_total", {{"result", result}},
                  "Go executables looked at for goroutine context, by outcome")
      .Add();
}

std::optional<GoContextFile> GoContextTracker::Track(uint32_t pid) {
  const std::string exe = options_.proc_root + "/" + std::to_string(pid) + "/exe";
  auto key = symbolizer::FileKeyOf(exe);
  if (!key) return std::nullopt;
  std::lock_guard lock(mu_);
  if (agent_exe_ && *key == *agent_exe_) return GoContextFile{};
  auto it = files_.find(*key);
  if (it == files_.end()) it = files_.emplace(*key, Attach(exe, discovery::LinkTargetOr(exe))).first;
  const GoContextFile& f = it->second.file;
  if (f.go) {
    Mark(pid, f.tracked);
  } else if (marked_.erase(pid)) {
    bpf_map_delete_elem(go_procs_fd_, &pid);  // exec'd something else
  }
  return f;
}

GoContextTracker::FileState GoContextTracker::Attach(const std::string& open_path,
                                                     const std::string& shown_path) {
  FileState state;
  GoContextFile& f = state.file;
  auto bin = symbolizer::GoBinary::Open(open_path, {kGoNewproc1, kGoReadRequest, kGoRoundTrip,
                                                    kGoRequestWrite});
  if (!bin.ok()) {
    const int code = bin.error().code;
    if (code == ENOEXEC || code == ENOENT || code == ESRCH || code == EACCES) return state;
    f.go = true;  // Go, but tables we cannot read (or too old for the register ABI)
    f.detail = bin.error().message;
    Count(code == ENOTSUP ? "unknown_version" : "unsupported_binary");
    spdlog::warn("Go goroutine context: {} not followed: {}; its client spans get no parent from "
                 "threads", shown_path, f.detail);
    return state;
  }
  f.go = true;
  f.version = bin->version_text();
  const auto version = bin->version();
  const auto layout = version ? GoCtxLayoutFor(*version) : std::nullopt;
  if (!layout) {
    f.detail = "Go version " + (f.version.empty() ? std::string("unknown") : f.version) +
               " not in the layout table (go1.18-go1.22)";
    Count("unknown_version");
    spdlog::warn("Go goroutine context: {} not followed: {}; its client spans get no parent from "
                 "threads", shown_path, f.detail);
    return state;
  }
  struct Site {
    const char* program;
    uint64_t file_offset;
    uint64_t cookie;
  };
  std::vector<Site> sites;
  std::string missing;
  tl_go_ctx_layout at_jbe = *layout;
  at_jbe.flags |= TL_GO_SITE_STACK_CHECK;
  auto entry = [&](const char* fn, const char* program, bool required) {
    auto found = bin->Find(fn);
    auto code = found ? bin->Code(*found) : std::nullopt;
    auto jbe = code ? symbolizer::GoStackCheckJumpOffset(*code) : std::nullopt;
    if (!jbe) {
      if (required) missing += (missing.empty() ? "" : ", ") + std::string(fn);
      return false;
    }
    sites.push_back({program, found->file_offset + *jbe, Cookie(at_jbe)});
    return true;
  };
  const bool server = entry(kGoReadRequest, kReadRequestProgram, true);
  const bool spawn = entry(kGoNewproc1, kNewprocProgram, true);
  if (spawn) {
    auto fn = bin->Find(kGoNewproc1);
    auto returns = bin->ReturnOffsets(*fn);
    if (!returns.ok() || returns->empty()) {
      missing += std::string(missing.empty() ? "" : ", ") + kGoNewproc1 + " return instructions";
    } else {
      for (uint64_t off : *returns) sites.push_back({kNewprocReturnProgram, fn->file_offset + off, Cookie(*layout)});
    }
  }
  const bool client = entry(kGoRoundTrip, kRoundTripProgram, false) &&
                      entry(kGoRequestWrite, kRequestWriteProgram, false);
  if (!server || !spawn || !missing.empty()) {
    f.detail = "no " + missing + " (a Go program without net/http's server)";
    Count("no_http_server");
    spdlog::info("Go goroutine context: {} ({}) not followed: {}", shown_path, f.version, f.detail);
    return state;
  }
  if (!client) {  // keep the pair or neither: a hand-off seen half would be lost
    while (!sites.empty() && (std::string_view(sites.back().program) == kRoundTripProgram ||
                              std::string_view(sites.back().program) == kRequestWriteProgram))
      sites.pop_back();
  }
  for (const Site& site : sites) {
    LIBBPF_OPTS(bpf_uprobe_opts, opts, .bpf_cookie = site.cookie, .retprobe = false);
    bpf_link* link = bpf_program__attach_uprobe_opts(capture_.FindProgram(site.program), -1,
                                                     open_path.c_str(), site.file_offset, &opts);
    if (!link) {
      const int err = errno;
      state.links.clear();
      f.detail = std::string("uprobe ") + site.program + " at file offset " +
                 std::to_string(site.file_offset) + ": " + std::strerror(err);
      Count("attach_failed");
      spdlog::warn("Go goroutine context: {} not followed: {}", shown_path, f.detail);
      return state;
    }
    state.links.emplace_back(link);
  }
  f.tracked = true;
  f.detail = std::string(kGoReadRequest) + ", " + kGoNewproc1 + " (entry + returns)" +
             (client ? std::string(", ") + kGoRoundTrip + ", " + kGoRequestWrite : std::string());
  Count("followed");
  spdlog::info("Go goroutine context: {} ({}) followed by goroutine: {} uprobes ({})", shown_path,
               f.version, state.links.size(), f.detail);
  return state;
}

size_t GoContextTracker::tracked_files() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [key, s] : files_) n += s.file.tracked;
  return n;
}

}  // namespace threadline
