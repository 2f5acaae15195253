#include "agent/kernel/linked_object.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>

#include <cerrno>

#include "agent/common/unique_fd.h"
#include "agent/kernel/capture_program.h"

namespace threadline {

Status ShareCaptureMaps(const CaptureProgram& capture, bpf_object* obj) {
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, obj) {
    if (bpf_map__is_internal(map)) continue;  // .rodata, .bss: per object
    const char* name = bpf_map__name(map);
    const int fd = capture.MapFd(name);
    if (fd < 0) continue;  // the object's own
    if (int err = bpf_map__reuse_fd(map, fd))
      return Error::FromErrno(std::string("share capture map ") + name, -err);
  }
  return OkStatus();
}

Result<BpfLink> AttachToCgroup(bpf_program* prog, const std::string& path) {
  UniqueFd cgroup(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cgroup.valid()) return Error::FromErrno("open cgroup v2 root " + path, errno);
  bpf_link* link = bpf_program__attach_cgroup(prog, cgroup.get());
  if (!link) return Error::FromErrno(std::string("attach ") + bpf_program__name(prog) + " to " + path, errno);
  return BpfLink(link);
}

std::vector<uint64_t> SumPerCpuCounters(const bpf_map* map, uint32_t n, int ncpus) {
  std::vector<uint64_t> out(n, 0);
  std::vector<uint64_t> values(static_cast<size_t>(ncpus > 0 ? ncpus : 1));
  for (uint32_t i = 0; i < n; ++i) {
    if (bpf_map__lookup_elem(map, &i, sizeof(i), values.data(), values.size() * sizeof(uint64_t), 0))
      continue;
    for (uint64_t v : values) out[i] += v;
  }
  return out;
}

}  // namespace threadline
