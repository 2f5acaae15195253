#include "exporter/protobuf_writer.h"

#include <algorithm>

namespace threadline::protobuf {

Writer::Writer(ByteBuffer& out)
    : out_(out),
      base_(out.data_.get()),
      pos_(base_ + out.size_),
      end_(base_ + out.capacity_) {}

Writer::~Writer() { out_.size_ = static_cast<size_t>(pos_ - base_); }

void Writer::Grow(size_t n) {
  const size_t used = static_cast<size_t>(pos_ - base_);
  const size_t capacity = std::max({out_.capacity_ * 2, used + n, size_t{4096}});
  auto grown = std::make_unique_for_overwrite<char[]>(capacity);
  if (used > 0) std::memcpy(grown.get(), base_, used);
  out_.data_ = std::move(grown);
  out_.capacity_ = capacity;
  base_ = out_.data_.get();
  pos_ = base_ + used;
  end_ = base_ + capacity;
}

void Writer::EndMessage(size_t mark) {
  const size_t reserved = mark >> kReservedShift;
  const size_t at = mark & ((size_t{1} << kReservedShift) - 1);
  const size_t length = static_cast<size_t>(pos_ - base_) - at - reserved;
  const size_t needed = VarintSize(length);
  if (needed != reserved) {
    if (needed > reserved) Ensure(needed - reserved);
    std::memmove(base_ + at + needed, base_ + at + reserved, length);
    pos_ = base_ + at + needed + length;
  }
  char* p = base_ + at;
  uint64_t v = length;
  while (v >= 0x80) {
    *p++ = static_cast<char>(static_cast<uint8_t>(v) | 0x80);
    v >>= 7;
  }
  *p = static_cast<char>(v);
}

}  // namespace threadline::protobuf
