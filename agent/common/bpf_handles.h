// RAII owners for libbpf objects: a skeleton in a unique_ptr whose deleter calls its
// __destroy, and a move-only bpf_link. Destroying them detaches everything, so an agent that
// stops (or dies: the kernel closes its fds) leaves no attachment behind.
#pragma once

#include <bpf/libbpf.h>

#include <memory>
#include <utility>

namespace threadline {

template <typename Skel, void (*Destroy)(Skel*)>
struct SkeletonDeleter {
  void operator()(Skel* s) const {
    if (s) Destroy(s);
  }
};

// Usage: SkeletonPtr<capture_bpf, capture_bpf__destroy>
template <typename Skel, void (*Destroy)(Skel*)>
using SkeletonPtr = std::unique_ptr<Skel, SkeletonDeleter<Skel, Destroy>>;

class BpfLink {
 public:
  BpfLink() = default;
  explicit BpfLink(bpf_link* link) : link_(link) {}
  ~BpfLink() { reset(); }
  BpfLink(BpfLink&& o) noexcept : link_(std::exchange(o.link_, nullptr)) {}
  BpfLink& operator=(BpfLink&& o) noexcept {
    if (this != &o) {
      reset();
      link_ = std::exchange(o.link_, nullptr);
    }
    return *this;
  }
  BpfLink(const BpfLink&) = delete;
  BpfLink& operator=(const BpfLink&) = delete;

  bpf_link* get() const { return link_; }
  explicit operator bool() const { return link_ != nullptr; }
  void reset() {
    if (link_) bpf_link__destroy(link_);
    link_ = nullptr;
  }

 private:
  bpf_link* link_ = nullptr;
};

}  // namespace threadline
