// The global operator new/delete replacement behind alloc_counter.h. Every form the standard
// lets a program replace is here (plain, array, nothrow, aligned), so nothing bypasses it.
#include "bench/alloc_counter.h"

#include <malloc.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace threadline::bench {
namespace {

// Plain load + store, not fetch_add: a locked read-modify-write per allocation would cost the
// pipeline more than the allocation itself. The benchmarked code allocates on one thread; other
// threads (none on the hot path) could lose a count, never corrupt one.
std::atomic<uint64_t> g_allocations{0};
std::atomic<uint64_t> g_bytes{0};

void Bump(std::atomic<uint64_t>& counter, uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

void* Allocate(std::size_t size, std::size_t align) {
  if (size == 0) size = 1;
  void* p = align <= alignof(std::max_align_t)
                ? std::malloc(size)
                : std::aligned_alloc(align, (size + align - 1) / align * align);
  if (!p) return nullptr;
  Bump(g_allocations, 1);
  Bump(g_bytes, size);
  return p;
}

void* AllocateOrThrow(std::size_t size, std::size_t align) {
  void* p = Allocate(size, align);
  if (!p) throw std::bad_alloc();
  return p;
}

void Release(void* p) noexcept { std::free(p); }

constexpr std::size_t kDefaultAlign = alignof(std::max_align_t);

}  // namespace

AllocStats CurrentAllocStats() {
  // Live heap from malloc's own books: exact, and free of per-call cost.
  const struct mallinfo2 mi = mallinfo2();
  return AllocStats{g_allocations.load(std::memory_order_relaxed),
                    g_bytes.load(std::memory_order_relaxed),
                    static_cast<int64_t>(mi.uordblks + mi.hblkhd)};
}

}  // namespace threadline::bench

using threadline::bench::Allocate;
using threadline::bench::AllocateOrThrow;
using threadline::bench::kDefaultAlign;
using threadline::bench::Release;

void* operator new(std::size_t n) { return AllocateOrThrow(n, kDefaultAlign); }
void* operator new[](std::size_t n) { return AllocateOrThrow(n, kDefaultAlign); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return Allocate(n, kDefaultAlign); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return Allocate(n, kDefaultAlign); }
void* operator new(std::size_t n, std::align_val_t a) {
  return AllocateOrThrow(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return AllocateOrThrow(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return Allocate(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return Allocate(n, static_cast<std::size_t>(a));
}

void operator delete(void* p) noexcept { Release(p); }
void operator delete[](void* p) noexcept { Release(p); }
void operator delete(void* p, std::size_t) noexcept { Release(p); }
void operator delete[](void* p, std::size_t) noexcept { Release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { Release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { Release(p); }
void operator delete(void* p, std::align_val_t) noexcept { Release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { Release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { Release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { Release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { Release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { Release(p); }
