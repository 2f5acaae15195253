#include "agent/kernel/go_tls_probes.h"

#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "agent/kernel/capture_program.h"
#include "symbolizer/x86_insn.h"

namespace threadline {

static_assert(sizeof(tl_go_tls_layout) == sizeof(uint64_t), "travels as a BPF cookie");
static_assert(sizeof(tl_go_tls_key) == 16);
static_assert(sizeof(tl_go_tls_call) == 8 * 3 + 4 + 4);

namespace {

// The chain the BPF side follows from a *tls.Conn to its socket fd. Checked against the Go
// 1.19 sources (/usr/lib/go-1.19/src) and unchanged from 1.17 through 1.22:
//   crypto/tls.Conn   { conn net.Conn; ... }     interface at 0: itab word, then data at +8
//   net.TCPConn       { conn }  net.conn { fd *netFD }                 fd at 0
//   net.netFD         { pfd poll.FD; ... }
//   internal/poll.FD  { fdmu fdMutex{state uint64; rsema, wsema uint32}; Sysfd int; ... }
//                                                                       Sysfd at 16
// A version outside this table is refused, never guessed: a wrong offset would read another
// number as the fd and attach plaintext to the wrong connection.
constexpr GoConnLayout kGoConnLayouts[] = {
    {{1, 17, 0}, {1, 22, 999}, {.conn_iface_data = 8, .netconn_fd = 0, .netfd_sysfd = 16, .flags = TL_GO_LAYOUT_VALID}},
};

uint64_t Cookie(const tl_go_tls_layout& l) {
  uint64_t c;
  std::memcpy(&c, &l, sizeof(c));
  return c;
}

std::string VersionRange() {
  std::string out;
  for (const auto& l : kGoConnLayouts) {
    out += (out.empty() ? "" : ", ") + ("go" + std::to_string(l.first.major) + "." +
                                        std::to_string(l.first.minor) + "-go" +
                                        std::to_string(l.last.major) + "." +
                                        std::to_string(l.last.minor));
  }
  return out;
}

constexpr const char* kWriteEntry = "tl_go_tls_write_enter";
constexpr const char* kReadEntry = "tl_go_tls_read_enter";
constexpr const char* kReadReturn = "tl_go_tls_read_return";

}  // namespace

std::optional<tl_go_tls_layout> GoConnLayoutFor(const symbolizer::GoVersion& version) {
  for (const auto& l : kGoConnLayouts) {
    if (version >= l.first && version <= l.last) return l.layout;
  }
  return std::nullopt;
}

Status GoTlsProbes::CheckPrograms(const CaptureProgram& capture) {
  for (const char* name : {kWriteEntry, kReadEntry, kReadReturn}) {
    if (!capture.FindProgram(name)) return Error{std::string("capture object has no program ") + name};
  }
  return OkStatus();
}

GoTlsProbes::GoTlsProbes(CaptureProgram& capture, MetricsRegistry& metrics)
    : capture_(capture), metrics_(metrics) {}

void GoTlsProbes::Skip(GoTlsAttachment& a, const std::string& reason, const std::string& shown_path,
                       bool warn) {
  a.skip_reason = reason;
  metrics_
      .GetCounter("threadline_tls_files_skipped_total", {{"reason", reason}},
                  "Files with TLS code the agent could not or would not probe, by reason")
      .Add();
  if (warn)
    spdlog::warn("Go TLS: {} not probed ({}): {}; its TLS traffic is not decrypted", shown_path,
                 reason, a.error);
  else
    spdlog::debug("Go TLS: {} not probed ({}): {}", shown_path, reason, a.error);
}

std::optional<GoTlsAttachment> GoTlsProbes::Attach(const std::string& open_path,
                                                   const std::string& shown_path) {
  GoTlsAttachment a;
  auto bin = symbolizer::GoBinary::Open(open_path, {kGoTlsWrite, kGoTlsRead});
  if (!bin.ok()) {
    const int code = bin.error().code;
    if (code == ENOEXEC) return std::nullopt;  // not Go: the OpenSSL checks go on
    a.error = bin.error().message;
    if (code == ENOENT || code == ESRCH) {
      // The process (and maybe its binary) went away between finding and opening it: thousands
      // of short-lived processes do this. Counted, debug only; the caller forgets the file so a
      // later process of the same binary is looked at again.
      Skip(a, "vanished", shown_path, false);
      return a;
    }
    if (code == ENOTSUP) {
      Skip(a, "go_unknown_version", shown_path, true);  // Go < 1.16: stack ABI
      return a;
    }
    if (code != 0) return std::nullopt;  // unreadable: not ours to judge
    Skip(a, "go_unsupported_binary", shown_path, true);  // Go, but tables we cannot read
    return a;
  }
  a.version = bin->version_text();
  a.build_id = bin->build_id();
  const auto version = bin->version();
  const auto layout = version ? GoConnLayoutFor(*version) : std::nullopt;
  auto write = bin->Find(kGoTlsWrite);
  auto read = bin->Find(kGoTlsRead);
  if (!write && !read) {
    a.error = "no crypto/tls.(*Conn).Read/Write in its symbol table";
    Skip(a, "go_no_crypto_tls", shown_path, false);  // a Go program that does no TLS
    return a;
  }
  if (!layout) {
    a.error = "Go version " + (a.version.empty() ? std::string("unknown (no build info)") : a.version) +
              " not supported (supported: " + VersionRange() + ")";
    Skip(a, "go_unknown_version", shown_path, true);
    return a;
  }
  if (!write || !read) {
    a.error = std::string("only ") + (write ? kGoTlsWrite : kGoTlsRead) + " in its symbol table";
    Skip(a, "go_no_symbols", shown_path, true);
    return a;
  }
  auto returns = bin->ReturnOffsets(*read);
  if (!returns.ok() || returns->empty()) {
    a.error = std::string(kGoTlsRead) + ": " +
              (returns.ok() ? "no return instruction found" : returns.error().message);
    Skip(a, "go_unsupported_binary", shown_path, true);
    return a;
  }

  // Entry sites: the stack check's jbe (see go_tls.bpf.h). Without that prologue a probe at the
  // entry could see a Write twice (once more after a stack growth): refused rather than wrong.
  auto write_code = bin->Code(*write);
  auto read_code = bin->Code(*read);
  auto write_jbe = write_code ? symbolizer::GoStackCheckJumpOffset(*write_code) : std::nullopt;
  auto read_jbe = read_code ? symbolizer::GoStackCheckJumpOffset(*read_code) : std::nullopt;
  if (!write_jbe || !read_jbe) {
    a.error = "no stack-check prologue at the start of " +
              std::string(!write_jbe ? kGoTlsWrite : kGoTlsRead);
    Skip(a, "go_unsupported_binary", shown_path, true);
    return a;
  }
  tl_go_tls_layout at_jbe = *layout;
  at_jbe.flags |= TL_GO_SITE_STACK_CHECK;

  struct Site {
    const char* program;
    uint64_t file_offset;
    uint64_t cookie;
  };
  std::vector<Site> sites = {{kWriteEntry, write->file_offset + *write_jbe, Cookie(at_jbe)},
                             {kReadEntry, read->file_offset + *read_jbe, Cookie(at_jbe)}};
  for (uint64_t off : *returns) sites.push_back({kReadReturn, read->file_offset + off, Cookie(*layout)});
  for (const Site& site : sites) {
    LIBBPF_OPTS(bpf_uprobe_opts, opts, .bpf_cookie = site.cookie, .retprobe = false);
    bpf_link* link = bpf_program__attach_uprobe_opts(capture_.FindProgram(site.program), -1,
                                                     open_path.c_str(), site.file_offset, &opts);
    if (!link) {
      const int err = errno;
      a.links.clear();  // all or nothing: reads without writes would make half a conversation
      a.error = std::string("uprobe ") + site.program + " at file offset " +
                std::to_string(site.file_offset) + ": " + std::strerror(err);
      Skip(a, err == ENOENT ? "vanished" : "go_attach_failed", shown_path, err != ENOENT);
      return a;
    }
    a.links.emplace_back(link);
  }
  const size_t return_sites = returns->size();
  a.functions = {std::string(kGoTlsWrite) + " (entry)",
                 std::string(kGoTlsRead) + " (entry + " + std::to_string(return_sites) +
                     " return instruction" + (return_sites == 1 ? "" : "s") + ")"};
  a.attached = true;
  spdlog::info("Go TLS: uprobes attached to {} ({}; {}, {}; Go build id {})", shown_path,
               a.version, a.functions[0], a.functions[1], a.build_id.empty() ? "none" : a.build_id);
  return a;
}

}  // namespace threadline
