#include "exporter/byte_writer.h"

#include <algorithm>

namespace threadline {

void ByteWriter::Grow(size_t n) {
  const size_t used = offset();
  const size_t capacity = std::max({out_.capacity_ * 2, used + n, size_t{4096}});
  auto grown = std::make_unique_for_overwrite<char[]>(capacity);
  if (used > 0) std::memcpy(grown.get(), base_, used);
  out_.data_ = std::move(grown);
  out_.capacity_ = capacity;
  base_ = out_.data_.get();
  pos_ = base_ + used;
  end_ = base_ + capacity;
}

}  // namespace threadline
