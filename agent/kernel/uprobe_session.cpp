#include "agent/kernel/uprobe_session.h"

#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace threadline {

namespace {

// The BPF_LINK_CREATE part of union bpf_attr for uprobe_multi links, as the kernel lays it out
// (include/uapi/linux/bpf.h: prog_fd, target_fd, attach_type, flags, then the uprobe_multi
// member of the per-type union at offset 16). Older userspace headers lack the member; the
// kernel reads `sizeof` bytes and requires nothing past them.
struct LinkCreateUprobeMulti {
  uint32_t prog_fd;
  uint32_t target_fd;
  uint32_t attach_type;
  uint32_t flags;
  uint64_t path;             // const char *
  uint64_t offsets;          // const unsigned long *
  uint64_t ref_ctr_offsets;  // const unsigned long * (none)
  uint64_t cookies;          // const __u64 *
  uint32_t cnt;
  uint32_t multi_flags;  // BPF_F_UPROBE_MULTI_RETURN: not for sessions
  uint32_t pid;          // 0: every process
  uint32_t pad;
};
static_assert(sizeof(LinkCreateUprobeMulti) == 64);

}  // namespace

Result<UniqueFd> AttachUprobeSession(int prog_fd, const std::string& path,
                                     const std::vector<uint64_t>& offsets,
                                     const std::vector<uint64_t>& cookies) {
  if (offsets.empty() || offsets.size() != cookies.size())
    return Error{"uprobe session: one cookie per offset, at least one offset"};
  static_assert(sizeof(unsigned long) == sizeof(uint64_t));
  LinkCreateUprobeMulti attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.prog_fd = static_cast<uint32_t>(prog_fd);
  attr.attach_type = kBpfTraceUprobeSession;
  attr.path = reinterpret_cast<uint64_t>(path.c_str());
  attr.offsets = reinterpret_cast<uint64_t>(offsets.data());
  attr.cookies = reinterpret_cast<uint64_t>(cookies.data());
  attr.cnt = static_cast<uint32_t>(offsets.size());
  const long fd = ::syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr));
  if (fd < 0) return Error::FromErrno("uprobe session link on " + path, errno);
  return UniqueFd(static_cast<int>(fd));
}

}  // namespace threadline
