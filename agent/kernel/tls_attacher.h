// Puts the TLS uprobes of the capture object (bpf/capture/tls.bpf.h) on every file that carries
// the OpenSSL family's SSL_read/SSL_write: dynamic libssl.so* and binaries with OpenSSL linked
// in (node); and Go executables, whose crypto/tls gets its own probes (go_tls_probes.h).
//
// A uprobe belongs to a file (its inode), not to a process: attached once with pid -1, it fires
// in every process that maps the file, today's and tomorrow's. So the attacher keeps one entry
// per file (device + inode) and attaches at most once per file, whatever the number of
// processes; the BPF side filters by the selection map as for syscalls.
//
// Where files are found:
//   - at start: libssl.so* in the system library directories (every later process that loads
//     the system libssl is covered before it runs), then the maps of every running process;
//   - on exec: the new executable at once (static OpenSSL, like node), then the process's maps
//     again after 100 ms and 1 s, when the loader (and an early dlopen) has mapped its
//     libraries. Libraries of containers live on other inodes and are found the same way,
//     through /proc/<pid>/root.
// Exec work runs on the attacher's own thread, so the ring-buffer consumer never waits on ELF
// parsing or uprobe registration.
//
// Never attaches to the agent's own executable. Failures (no symbols, a file gone before the
// attach) are logged once per file, counted, and the file is not tried again.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/common/bpf_handles.h"
#include "agent/common/metrics.h"
#include "agent/common/result.h"
#include "agent/common/unique_fd.h"
#include "agent/kernel/go_tls_probes.h"
#include "symbolizer/proc_maps.h"

namespace threadline {

class CaptureProgram;
struct OpenSslSite;  // tls_attacher.cpp

struct TlsAttacherOptions {
  std::string proc_root = "/proc";
  uint32_t agent_pid = 0;
  // Where the system libssl lives; scanned at start.
  std::vector<std::string> library_dirs = {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                                           "/lib64", "/usr/lib64", "/usr/lib", "/usr/local/lib"};
  bool scan_at_start = true;  // false: only explicit AttachFile/ScanProcess calls (tests)
  // Probe OpenSSL's internal read/write function instead of the exported SSL_read/SSL_write
  // entries when that is cheaper (symbolizer/probe_site.h). false: always the exported
  // functions' entries (bench/probes_bench compares the two).
  bool cheap_openssl_sites = true;
  // Attach the OpenSSL sites of a file as one uprobe session link (kernel 6.13+;
  // agent/kernel/uprobe_session.h) whose entry skips the return probe in processes that are not
  // traced; falls back to uprobe + uretprobe pairs where the kernel refuses it. false: always
  // the pairs (bench/probes_bench compares the two).
  bool uprobe_sessions = true;
};

// What was done with one file, for logs and tests.
struct TlsFileReport {
  std::string path;
  std::vector<std::string> functions;  // functions probed (entry + return each)
  std::string build_id;
  std::string error;  // empty when attached
};

class TlsAttacher {
 public:
  static Result<std::unique_ptr<TlsAttacher>> Create(CaptureProgram& capture,
                                                     const TlsAttacherOptions& options,
                                                     MetricsRegistry& metrics);
  ~TlsAttacher();  // stops the thread, then detaches every probe
  TlsAttacher(const TlsAttacher&) = delete;
  TlsAttacher& operator=(const TlsAttacher&) = delete;

  // A process exec'd: look at it now and again shortly (see above). Never blocks on work.
  void OnExec(uint32_t pid);

  // Synchronous forms (start-up, tests). Return the number of files newly attached.
  size_t ScanProcess(uint32_t pid);
  // Attaches to one file if it exports the functions. `open_path` is how the agent opens it.
  Result<TlsFileReport> AttachFile(const std::string& open_path);

  size_t attached_files() const;
  // OpenSSL sites go through uprobe sessions (the kernel took the first session link).
  bool uses_uprobe_sessions() const;

  // Stops the thread and hands over every probe's link, so the owner can detach them together
  // with others (DestroyLinksConcurrently); the attacher attaches nothing afterwards.
  std::vector<BpfLink> ReleaseLinks();

 private:
  struct FileState {
    bool attached = false;
    std::vector<BpfLink> links;
    UniqueFd session_link;  // the file's OpenSSL sites as one uprobe session link
  };
  // Whether the kernel takes uprobe session links: learnt at the first attempt.
  enum class SessionSupport { kUnknown, kYes, kNo };
  TlsAttacher(CaptureProgram& capture, const TlsAttacherOptions& options, MetricsRegistry& metrics);
  // Caller holds mu_.
  size_t ScanProcessLocked(uint32_t pid);
  bool ConsiderLocked(const symbolizer::FileKey& key, const std::string& open_path, bool log_skip);
  Result<TlsFileReport> AttachLocked(const symbolizer::FileKey& key, const std::string& open_path);
  // Go executables (go_tls_probes.h): nullopt when the file is not one.
  std::optional<Result<TlsFileReport>> AttachGoLocked(const symbolizer::FileKey& key,
                                                      FileState& state,
                                                      const std::string& open_path);
  void ScanLibraryDirsLocked();
  // The OpenSSL sites of a file as one session link; false (logged) when the kernel refuses it.
  bool AttachSessionLocked(FileState& state, const std::string& open_path,
                           const std::string& shown, const std::vector<OpenSslSite>& sites);
  void Run();

  CaptureProgram& capture_;
  TlsAttacherOptions options_;
  std::optional<symbolizer::FileKey> agent_exe_;
  Counter& files_attached_;
  Counter& files_failed_;
  Counter& probes_attached_;
  GoTlsProbes go_probes_;
  SessionSupport sessions_ = SessionSupport::kUnknown;

  mutable std::mutex mu_;  // files_ and the links
  std::map<symbolizer::FileKey, FileState> files_;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::multimap<uint64_t, uint32_t> due_;  // monotonic ns -> pid
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace threadline
