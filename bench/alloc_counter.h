// Counts heap allocations of the whole process by replacing the global operator new/delete
// (bench binaries only: alloc_counter.cpp must be linked into exactly one executable, never
// into threadline_core). Counting costs two plain increments per allocation, so the throughput
// the benchmark reports is still the pipeline's, not the counter's.
#pragma once

#include <cstdint>

namespace threadline::bench {

struct AllocStats {
  uint64_t allocations = 0;  // operator new calls
  uint64_t bytes = 0;        // bytes requested from operator new
  int64_t live_bytes = 0;    // heap bytes in use (malloc's count, any allocator call)
};

AllocStats CurrentAllocStats();

}  // namespace threadline::bench
