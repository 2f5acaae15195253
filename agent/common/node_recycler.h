// Node recycling for node-based containers whose entries come and go on one thread.
#pragma once

#include <cstddef>
#include <functional>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

namespace threadline {

// Keeps the freed single-object blocks of one size (a node-based container's nodes) for the
// next insert, so a container whose entries come and go (the trace store's, one per trace; the
// connection table's list and indexes, the protocol dispatcher's and the span builder's maps, one
// per connection) does not allocate per entry in steady state (pipeline_bench: 1 allocation per
// trace, 5 per connection). Bounded; one thread (the consumer's).
class NodeRecycler {
 public:
  static constexpr size_t kMaxKept = 4096;
  NodeRecycler() = default;
  NodeRecycler(const NodeRecycler&) = delete;
  NodeRecycler& operator=(const NodeRecycler&) = delete;
  ~NodeRecycler() {
    for (void* p : kept_) ::operator delete(p);
  }
  void* Allocate(size_t bytes) {
    if (bytes == block_bytes_ && !kept_.empty()) {
      void* p = kept_.back();
      kept_.pop_back();
      return p;
    }
    return ::operator new(bytes);
  }
  // `single`: a one-object block (a node), worth keeping; arrays (buckets) go back at once.
  void Release(void* p, size_t bytes, bool single) {
    if (single && block_bytes_ == 0) block_bytes_ = bytes;
    if (single && bytes == block_bytes_ && kept_.size() < kMaxKept) {
      kept_.push_back(p);
      return;
    }
    ::operator delete(p);
  }

 private:
  size_t block_bytes_ = 0;
  std::vector<void*> kept_;
};

// std::allocator_traits-conforming front of a NodeRecycler (which must outlive the container).
template <typename T>
struct RecyclingAllocator {
  using value_type = T;
  NodeRecycler* recycler;
  explicit RecyclingAllocator(NodeRecycler* r) : recycler(r) {}
  template <typename U>
  RecyclingAllocator(const RecyclingAllocator<U>& o) : recycler(o.recycler) {}  // NOLINT: rebind
  T* allocate(size_t n) { return static_cast<T*>(recycler->Allocate(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { recycler->Release(p, n * sizeof(T), n == 1); }
  template <typename U>
  bool operator==(const RecyclingAllocator<U>& o) const { return recycler == o.recycler; }
};

// An unordered_map whose nodes come from `recycler` (which must outlive it):
//   RecyclingMap<K, V, Hash> m{0, Hash{}, std::equal_to<K>{}, RecyclingAllocatorFor<K, V>(&recycler)};
template <typename K, typename V>
using RecyclingAllocatorFor = RecyclingAllocator<std::pair<const K, V>>;
template <typename K, typename V, typename Hash>
using RecyclingMap = std::unordered_map<K, V, Hash, std::equal_to<K>, RecyclingAllocatorFor<K, V>>;

}  // namespace threadline
