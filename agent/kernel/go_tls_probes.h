// Go crypto/tls uprobes for one Go executable (bpf/capture/go_tls.bpf.h): what TlsAttacher does
// for a file that turns out to be a Go program rather than an OpenSSL carrier.
//
// For each Go executable (device + inode, once, like the OpenSSL files):
//   1. read the Go version from its build info and functions from its pclntab
//      (symbolizer/go_binary: stripped binaries too);
//   2. refuse versions outside the Conn layout table below (logged once, counted): the BPF side
//      reads the socket fd through Go's private structs, whose offsets are only known for the
//      versions listed; older than 1.17 also lacks the register ABI the probes read;
//   3. find crypto/tls.(*Conn).Write and (*Conn).Read and the return instructions of Read
//      (decoded with capstone, symbolizer/x86_insn);
//   4. attach: an entry probe on Write, an entry probe on Read and a probe on each of Read's
//      return instructions (never uretprobes: they crash Go programs), each carrying the Conn
//      layout in its BPF cookie. "Entry" probes sit on the jbe of the stack-bound check that
//      opens each function (emulated by the kernel, and never seen twice per call; see
//      go_tls.bpf.h); a function without that prologue is refused.
//
// A Go program without crypto/tls (most command-line tools) is skipped quietly; everything else
// that stops an attach is logged at warning level once per file and counted by reason in
// threadline_tls_files_skipped_total.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "agent/common/bpf_handles.h"
#include "agent/common/metrics.h"
#include "agent/common/result.h"
#include "symbolizer/go_binary.h"
#include "threadline/events.h"

namespace threadline {

class CaptureProgram;

// Where a *tls.Conn keeps its fd, for Go versions [first, last] (see events.h).
struct GoConnLayout {
  symbolizer::GoVersion first, last;
  tl_go_tls_layout layout;
};

// The layout for this Go version, nullopt when the version is not in the table.
std::optional<tl_go_tls_layout> GoConnLayoutFor(const symbolizer::GoVersion& version);

inline constexpr const char* kGoTlsWrite = "crypto/tls.(*Conn).Write";
inline constexpr const char* kGoTlsRead = "crypto/tls.(*Conn).Read";

// The outcome for one file that is (or was, for a vanished one) a candidate Go executable.
struct GoTlsAttachment {
  std::string version;   // "go1.19.8"
  std::string build_id;  // Go build id
  std::vector<std::string> functions;  // probed, with their sites, for the log
  std::vector<BpfLink> links;
  bool attached = false;
  // Why not attached: a label of threadline_tls_files_skipped_total ("go_unknown_version",
  // "go_no_crypto_tls", "go_no_symbols", "go_unsupported_binary", "go_attach_failed",
  // "vanished"); empty when attached.
  std::string skip_reason;
  std::string error;
};

class GoTlsProbes {
 public:
  // The capture object must carry the Go programs.
  static Status CheckPrograms(const CaptureProgram& capture);

  GoTlsProbes(CaptureProgram& capture, MetricsRegistry& metrics);

  // Looks at `open_path` (how the agent opens it; `shown_path` is for logs). nullopt when the
  // file is not a Go executable: the caller goes on with its other checks.
  std::optional<GoTlsAttachment> Attach(const std::string& open_path, const std::string& shown_path);

 private:
  void Skip(GoTlsAttachment& a, const std::string& reason, const std::string& shown_path,
            bool warn);

  CaptureProgram& capture_;
  MetricsRegistry& metrics_;
};

}  // namespace threadline
