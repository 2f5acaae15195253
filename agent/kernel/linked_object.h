// What the BPF objects linked to the capture object (traceparent injection, the TCP header option)
// do alike when they load: use the capture object's instance of every map they share with it,
// attach a sockops program to the cgroup v2 root, and read a per-CPU counter array.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/common/bpf_handles.h"
#include "agent/common/result.h"

struct bpf_object;
struct bpf_program;
struct bpf_map;

namespace threadline {

class CaptureProgram;

// Before `obj` is loaded: every map it declares that the capture object has too (same name:
// both include the same headers) becomes the capture object's map, so there is one instance.
// Its own maps (and its .rodata/.bss) stay its own.
Status ShareCaptureMaps(const CaptureProgram& capture, bpf_object* obj);

// Attaches a sockops (or other cgroup) program to the cgroup directory `path`.
Result<BpfLink> AttachToCgroup(bpf_program* prog, const std::string& path);

// A per-CPU array of N counters, summed over CPUs (entries that cannot be read count 0).
template <size_t N>
std::array<uint64_t, N> SumPerCpuCounters(const bpf_map* map, int ncpus);
std::vector<uint64_t> SumPerCpuCounters(const bpf_map* map, uint32_t n, int ncpus);

template <size_t N>
std::array<uint64_t, N> SumPerCpuCounters(const bpf_map* map, int ncpus) {
  std::array<uint64_t, N> out{};
  const std::vector<uint64_t> sums = SumPerCpuCounters(map, static_cast<uint32_t>(N), ncpus);
  for (size_t i = 0; i < N && i < sums.size(); ++i) out[i] = sums[i];
  return out;
}

}  // namespace threadline
