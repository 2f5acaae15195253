#include "agent/kernel/tls_attacher.h"

#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iterator>

#include "agent/discovery/proc_fs.h"
#include "agent/kernel/capture_program.h"
#include "agent/kernel/uprobe_session.h"
#include "symbolizer/elf_file.h"
#include "symbolizer/probe_site.h"

namespace threadline {

// One uprobe + uretprobe pair to attach (or one offset of the file's session link).
struct OpenSslSite {
  uint64_t file_offset = 0;
  const char* entry_program = nullptr;
  std::string label;  // for logs and the report
  bool required = false;
  uint64_t session_cookie = 0;  // enum tl_tls_cookie (threadline/events.h)
};

namespace {

// The OpenSSL family's plaintext calls, by direction (OpenSSL 1.1/3.x, BoringSSL, LibreSSL
// export the same names). A file is a TLS library when it has both plain calls; the _ex
// variants (OpenSSL 1.1.1+, used by python's _ssl) are probed where present. Each function gets
// an entry probe (arguments) and a return probe (the byte count exists only at return; one
// shared program, the entry's stash says which call it was). Where exactly they go is
// PlanOpenSslSites' choice.
struct OpenSslCalls {
  const char* plain;  // required
  const char* ex;     // optional
  const char* plain_program;
  const char* ex_program;
};
constexpr OpenSslCalls kOpenSslCalls[] = {
    {"SSL_write", "SSL_write_ex", "tl_ssl_write_enter", "tl_ssl_write_ex_enter"},
    {"SSL_read", "SSL_read_ex", "tl_ssl_read_enter", "tl_ssl_read_ex_enter"},
};
constexpr const char* kReturnProgram = "tl_ssl_return";
// Entry and return of every OpenSSL site in one program, through a uprobe session.
constexpr const char* kSessionProgram = "tl_ssl_session";
// What the session program is told about each site.
uint64_t SessionCookie(const OpenSslCalls& calls, bool ex) {
  return (std::string_view(calls.plain) == "SSL_write" ? TL_TLS_COOKIE_EGRESS : 0) |
         (ex ? TL_TLS_COOKIE_EX : 0);
}

// When an exec'd process is looked at again: its libraries are mapped by the loader right after
// exec, and an early dlopen (python's `import ssl`) soon after.
constexpr std::chrono::milliseconds kRescanDelays[] = {std::chrono::milliseconds(0),
                                                       std::chrono::milliseconds(100),
                                                       std::chrono::milliseconds(1000)};

uint64_t MonotonicNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}


// Up to `n` bytes of `path` at `offset` (fewer at the end of the file, none on error).
std::vector<uint8_t> ReadAt(const std::string& path, uint64_t offset, size_t n) {
  std::vector<uint8_t> bytes(n);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  const ssize_t got = ::pread(fd, bytes.data(), n, static_cast<off_t>(offset));
  ::close(fd);
  bytes.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return bytes;
}


// Where to probe a file's OpenSSL calls, per direction. A uretprobe costs what the function's
// first instruction costs (symbolizer/probe_site.h): when SSL_read (SSL_write) starts with an
// instruction the kernel must single-step, and it and SSL_read_ex (SSL_write_ex) both call the
// same function straight away, that common callee is OpenSSL's internal read (write) function,
// with SSL_read_ex's arguments and return convention (ssl, buf, num, size_t *done -> 1 on
// success); when its first instruction is emulated, one pair of probes there serves both entry
// points for a fraction of the cost. Otherwise each function is probed at its own entry.
std::vector<OpenSslSite> PlanOpenSslSites(const symbolizer::ElfFile& elf, const std::string& path,
                                          bool prefer_cheap) {
  std::vector<OpenSslSite> sites;
  for (const auto& d : kOpenSslCalls) {
    const auto plain = elf.Find(d.plain);
    if (!plain) continue;  // required: the caller has checked
    const auto ex = elf.Find(d.ex);
    const std::vector<uint8_t> code = ReadAt(path, plain->file_offset, 96);
    bool chosen = false;
    if (prefer_cheap && ex && !symbolizer::UprobeEmulatesFirstInstruction(code)) {
      const std::vector<uint8_t> ex_code = ReadAt(path, ex->file_offset, 96);
      const auto plain_calls = symbolizer::LeadingCallTargets(code, plain->address);
      const auto ex_calls = symbolizer::LeadingCallTargets(ex_code, ex->address);
      for (uint64_t target : plain_calls) {
        if (std::find(ex_calls.begin(), ex_calls.end(), target) == ex_calls.end()) continue;
        const auto offset = elf.FileOffsetOf(target);
        if (!offset || !symbolizer::UprobeEmulatesFirstInstruction(ReadAt(path, *offset, 16)))
          break;
        sites.push_back({*offset, d.ex_program,
                         fmt::format("{}+{} at their common callee {:#x}", d.plain, d.ex, target),
                         true, SessionCookie(d, true)});
        chosen = true;
        break;
      }
    }
    if (chosen) continue;
    sites.push_back({plain->file_offset, d.plain_program, d.plain, true, SessionCookie(d, false)});
    if (ex) sites.push_back({ex->file_offset, d.ex_program, d.ex, false, SessionCookie(d, true)});
  }
  return sites;
}

bool LooksLikeTlsLibrary(const std::string& path) {
  std::string_view base = path;
  if (size_t slash = base.rfind('/'); slash != std::string_view::npos) base.remove_prefix(slash + 1);
  return base.find("ssl") != std::string_view::npos;  // libssl.so.3, libboringssl.so, ...
}

}  // namespace

TlsAttacher::TlsAttacher(CaptureProgram& capture, const TlsAttacherOptions& options,
                         MetricsRegistry& metrics)
    : capture_(capture),
      options_(options),
      files_attached_(metrics.GetCounter("threadline_tls_files_attached_total", {},
                                         "Files (libssl, binaries with OpenSSL) given TLS uprobes")),
      files_failed_(metrics.GetCounter("threadline_tls_files_failed_total", {},
                                       "Files with TLS functions whose uprobes could not be attached")),
      probes_attached_(metrics.GetCounter("threadline_tls_uprobes_attached_total", {},
                                          "TLS uprobes attached (entry and return count apart)")),
      go_probes_(capture, metrics) {}

TlsAttacher::~TlsAttacher() { DestroyLinksConcurrently(ReleaseLinks()); }

std::vector<BpfLink> TlsAttacher::ReleaseLinks() {
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
    file.session_link.reset();  // one per library: closed here, the rest go concurrently
  }
  return links;
}

Result<std::unique_ptr<TlsAttacher>> TlsAttacher::Create(CaptureProgram& capture,
                                                         const TlsAttacherOptions& options,
                                                         MetricsRegistry& metrics) {
  for (const auto& calls : kOpenSslCalls) {
    for (const char* program : {calls.plain_program, calls.ex_program, kReturnProgram}) {
      if (!capture.FindProgram(program))
        return Error{std::string("capture object has no program ") + program};
    }
  }
  if (auto go = GoTlsProbes::CheckPrograms(capture); !go.ok()) return go.error();
  std::unique_ptr<TlsAttacher> a(new TlsAttacher(capture, options, metrics));
  a->agent_exe_ = symbolizer::FileKeyOf(options.proc_root + "/" + std::to_string(options.agent_pid) + "/exe");
  if (options.scan_at_start) {
    std::lock_guard lock(a->mu_);
    a->ScanLibraryDirsLocked();
    size_t processes = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(options.proc_root, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      const uint32_t pid = static_cast<uint32_t>(std::stoul(name));
      if (pid == options.agent_pid) continue;
      a->ScanProcessLocked(pid);
      ++processes;
    }
    size_t attached = 0;
    for (const auto& [key, f] : a->files_) attached += f.attached;
    spdlog::info("TLS: uprobes on {} file(s) after scanning the library directories and {} "
                 "processes; new processes are looked at when they exec",
                 attached, processes);
  }
  a->worker_ = std::thread([p = a.get()] { p->Run(); });
  return a;
}

void TlsAttacher::OnExec(uint32_t pid) {
  if (pid == options_.agent_pid) return;
  const uint64_t now = MonotonicNs();
  {
    std::lock_guard lock(queue_mu_);
    // Thousands of short-lived processes: bound the queue; a process missed here is still
    // covered when its library is the system's (attached at start) or was seen before.
    if (due_.size() >= 3 * 4096) return;
    for (auto d : kRescanDelays)
      due_.emplace(now + static_cast<uint64_t>(std::chrono::nanoseconds(d).count()), pid);
  }
  queue_cv_.notify_one();
}

void TlsAttacher::Run() {
  std::unique_lock lock(queue_mu_);
  while (!stopping_) {
    if (due_.empty()) {
      queue_cv_.wait(lock);
      continue;
    }
    const uint64_t now = MonotonicNs();
    auto first = due_.begin();
    if (first->first > now) {
      queue_cv_.wait_for(lock, std::chrono::nanoseconds(first->first - now));
      continue;
    }
    const uint32_t pid = first->second;
    due_.erase(first);
    lock.unlock();
    ScanProcess(pid);
    lock.lock();
  }
}

size_t TlsAttacher::ScanProcess(uint32_t pid) {
  std::lock_guard lock(mu_);
  return ScanProcessLocked(pid);
}

size_t TlsAttacher::ScanProcessLocked(uint32_t pid) {
  if (pid == options_.agent_pid) return 0;
  size_t attached = 0;
  const std::string proc = options_.proc_root + "/" + std::to_string(pid);
  // The executable first: OpenSSL linked in statically (node). Through /proc/<pid>/exe, so a
  // binary in another mount namespace, or replaced on disk since, is still the right inode.
  if (auto exe = symbolizer::FileKeyOf(proc + "/exe")) attached += ConsiderLocked(*exe, proc + "/exe", false);
  for (const auto& m : symbolizer::MappedFiles(options_.proc_root, pid)) {
    if (!m.executable || !LooksLikeTlsLibrary(m.path)) continue;
    attached += ConsiderLocked(m.key, m.open_path, true);
  }
  return attached;
}

void TlsAttacher::ScanLibraryDirsLocked() {
  for (const auto& dir : options_.library_dirs) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (!name.starts_with("libssl.so")) continue;
      const std::string path = entry.path().string();
      auto key = symbolizer::FileKeyOf(path);  // symlinks and merged /usr: same inode, looked at once
      if (!key) continue;
      // The resolved name reads better in logs, but under <proc_root>/1/root (the host's
      // libraries seen from a container) resolving goes through the magic link to the wrong
      // root: keep it only when it still names the same file.
      std::error_code canon_ec;
      const auto canonical = std::filesystem::canonical(entry.path(), canon_ec);
      const bool same = !canon_ec && symbolizer::FileKeyOf(canonical.string()) == key;
      ConsiderLocked(*key, same ? canonical.string() : path, true);
    }
  }
}

bool TlsAttacher::ConsiderLocked(const symbolizer::FileKey& key, const std::string& open_path,
                                 bool log_skip) {
  if (agent_exe_ && key == *agent_exe_) return false;
  if (files_.count(key)) return false;
  auto report = AttachLocked(key, open_path);
  if (!report.ok()) {
    // Not ELF, unreadable, no SSL functions: remembered, so never looked at again.
    if (log_skip) spdlog::debug("TLS: {} skipped: {}", open_path, report.error().message);
    return false;
  }
  return report->error.empty();
}

Result<TlsFileReport> TlsAttacher::AttachFile(const std::string& open_path) {
  auto key = symbolizer::FileKeyOf(open_path);
  if (!key) return Error::FromErrno("stat " + open_path, errno);
  std::lock_guard lock(mu_);
  if (auto it = files_.find(*key); it != files_.end()) {
    if (it->second.attached) return TlsFileReport{open_path, {}, {}, {}};
    return Error{open_path + ": already looked at, not a TLS library"};
  }
  return AttachLocked(*key, open_path);
}

Result<TlsFileReport> TlsAttacher::AttachLocked(const symbolizer::FileKey& key,
                                                const std::string& open_path) {
  FileState& state = files_[key];  // remembered whatever happens below
  if (auto go = AttachGoLocked(key, state, open_path)) return std::move(*go);
  std::vector<std::string> wanted;
  for (const auto& calls : kOpenSslCalls) {
    wanted.emplace_back(calls.plain);
    wanted.emplace_back(calls.ex);
  }
  auto elf = symbolizer::ElfFile::Open(open_path, wanted);
  if (!elf.ok()) return elf.error();
  for (const auto& calls : kOpenSslCalls) {
    if (!elf->Find(calls.plain)) return Error{std::string("no ") + calls.plain};
  }

  TlsFileReport report;
  report.path = open_path.ends_with("/exe") ? discovery::LinkTargetOr(open_path) : open_path;
  report.build_id = elf->build_id();
  const std::vector<OpenSslSite> sites =
      PlanOpenSslSites(*elf, open_path, options_.cheap_openssl_sites);
  if (options_.uprobe_sessions && sessions_ != SessionSupport::kNo &&
      AttachSessionLocked(state, open_path, report.path, sites)) {
    for (const auto& site : sites) report.functions.emplace_back(site.label);
    probes_attached_.Add(sites.size());
    files_attached_.Add();
    state.attached = true;
    spdlog::info("TLS: uprobes attached to {} ({}; one uprobe session, return probed in traced "
                 "processes only; build id {})",
                 report.path, fmt::join(report.functions, ", "),
                 report.build_id.empty() ? "none" : report.build_id);
    return report;
  }
  std::vector<BpfLink> links;
  std::string failure;
  size_t required_probed = 0;
  for (const auto& site : sites) {
    for (bool ret : {false, true}) {
      bpf_program* prog = capture_.FindProgram(ret ? kReturnProgram : site.entry_program);
      LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = ret);
      bpf_link* link = bpf_program__attach_uprobe_opts(prog, -1, open_path.c_str(),
                                                       site.file_offset, &opts);
      if (!link) {
        const int err = errno;
        failure = std::string(ret ? "uretprobe " : "uprobe ") + site.label + ": " + std::strerror(err);
        // What an operator can do about it (deploy/README.md "Capabilities").
        if (err == EACCES || err == EPERM)
          failure += " (uprobes need CAP_SYS_ADMIN on this kernel: run with it, e.g. deploy/overlays/tls-capture)";
        break;
      }
      links.emplace_back(link);
    }
    if (!failure.empty()) {
      if (site.required) break;
      spdlog::warn("TLS: {}: optional {} not probed ({})", report.path, site.label, failure);
      failure.clear();
      continue;
    }
    if (site.required) ++required_probed;
    report.functions.emplace_back(site.label);
  }
  const bool have_required = required_probed >= std::size(kOpenSslCalls);  // a site per direction
  if (!failure.empty() || !have_required) {
    report.error = failure.empty() ? "required functions not probed" : failure;
    files_failed_.Add();
    spdlog::warn("TLS: could not attach to {}: {}; its TLS traffic is not decrypted", report.path,
                 report.error);
    return report;  // links go: a half-probed library would see reads without writes
  }
  probes_attached_.Add(links.size());
  files_attached_.Add();
  state.attached = true;
  state.links = std::move(links);
  spdlog::info("TLS: uprobes attached to {} ({}; build id {})", report.path,
               fmt::join(report.functions, ", "), report.build_id.empty() ? "none" : report.build_id);
  return report;
}

bool TlsAttacher::AttachSessionLocked(FileState& state, const std::string& open_path,
                                      const std::string& shown,
                                      const std::vector<OpenSslSite>& sites) {
  bpf_program* prog = capture_.FindProgram(kSessionProgram);
  if (prog == nullptr || bpf_program__fd(prog) < 0 || sites.empty()) {
    sessions_ = SessionSupport::kNo;
    return false;
  }
  std::vector<uint64_t> offsets;
  std::vector<uint64_t> cookies;
  for (const auto& site : sites) {
    offsets.push_back(site.file_offset);
    cookies.push_back(site.session_cookie);
  }
  auto link = AttachUprobeSession(bpf_program__fd(prog), open_path, offsets, cookies);
  if (!link.ok()) {
    // What a kernel without uprobe sessions (or without the right to make them) answers; any
    // other failure (the file gone since it was looked at) is this file's, not the kernel's.
    const int err = link.error().code;
    const bool kernel_refuses = err == EINVAL || err == EOPNOTSUPP || err == 524 /* ENOTSUPP */ ||
                                err == EPERM || err == EACCES || err == E2BIG;
    if (sessions_ == SessionSupport::kUnknown && kernel_refuses) {
      // The first attempt is the feature probe: a kernel without uprobe sessions (before 6.13)
      // refuses the link type. Logged once; every file then gets uprobe + uretprobe pairs.
      sessions_ = SessionSupport::kNo;
      spdlog::info("TLS: OpenSSL calls probed with uprobe + uretprobe pairs (uprobe sessions "
                   "unavailable: {}): every process that maps a probed library takes the return "
                   "trap too",
                   link.error().message);
    } else {
      spdlog::warn("TLS: {}: uprobe session refused ({}); trying uprobe + uretprobe pairs", shown,
                   link.error().message);
    }
    return false;
  }
  if (sessions_ == SessionSupport::kUnknown) {
    sessions_ = SessionSupport::kYes;
    spdlog::info("TLS: OpenSSL calls probed with uprobe sessions (one link per library; the "
                 "return is probed only in traced processes, so an untraced one takes one trap "
                 "per call instead of two)");
  }
  state.session_link = std::move(*link);
  return true;
}

std::optional<Result<TlsFileReport>> TlsAttacher::AttachGoLocked(const symbolizer::FileKey& key,
                                                                 FileState& state,
                                                                 const std::string& open_path) {
  const std::string shown = open_path.ends_with("/exe") ? discovery::LinkTargetOr(open_path) : open_path;
  auto go = go_probes_.Attach(open_path, shown);
  if (!go) return std::nullopt;
  if (!go->attached) {
    // A process gone before we could open its binary: the binary may live on, so the next
    // process running it is looked at again.
    if (go->skip_reason == "vanished") files_.erase(key);
    return Result<TlsFileReport>(Error{go->error});
  }
  probes_attached_.Add(go->links.size());
  files_attached_.Add();
  state.attached = true;
  state.links = std::move(go->links);
  return Result<TlsFileReport>(TlsFileReport{shown, std::move(go->functions), go->build_id, {}});
}

bool TlsAttacher::uses_uprobe_sessions() const {
  std::lock_guard lock(mu_);
  return sessions_ == SessionSupport::kYes;
}

size_t TlsAttacher::attached_files() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [key, f] : files_) n += f.attached;
  return n;
}

}  // namespace threadline
