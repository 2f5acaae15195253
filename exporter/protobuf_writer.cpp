#include "exporter/protobuf_writer.h"

namespace threadline::protobuf {

void Writer::EndMessage(size_t mark) {
  const size_t reserved = mark >> kReservedShift;
  const size_t at = mark & ((size_t{1} << kReservedShift) - 1);
  const size_t length = w_.offset() - at - reserved;
  const size_t needed = VarintSize(length);
  if (needed != reserved) {
    if (needed > reserved) w_.Ensure(needed - reserved);
    std::memmove(w_.at(at + needed), w_.at(at + reserved), length);
    w_.set_offset(at + needed + length);
  }
  char* p = w_.at(at);
  uint64_t v = length;
  while (v >= 0x80) {
    *p++ = static_cast<char>(static_cast<uint8_t>(v) | 0x80);
    v >>= 7;
  }
  *p = static_cast<char>(v);
}

}  // namespace threadline::protobuf
