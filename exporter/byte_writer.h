// A growable byte buffer, and a writer that appends to it through a raw pointer: the encoders
// (OTLP protobuf, OTLP JSON lines) check for room once per field and then store bytes, instead
// of a std::string::append per piece. The buffer is kept and reused between messages (clear()
// keeps the storage; growth doubles and is never zero-filled), so encoding allocates only until
// it has grown to the largest message.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>

namespace threadline {

class ByteBuffer {
 public:
  std::string_view view() const { return {data_.get(), size_}; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear() { size_ = 0; }

 private:
  friend class ByteWriter;
  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// Appends to a ByteBuffer it does not own, from its current end; the buffer's size follows
// when the writer goes away.
class ByteWriter {
 public:
  explicit ByteWriter(ByteBuffer& out)
      : out_(out), base_(out.data_.get()), pos_(base_ + out.size_), end_(base_ + out.capacity_) {}
  ~ByteWriter() { out_.size_ = offset(); }
  ByteWriter(const ByteWriter&) = delete;
  ByteWriter& operator=(const ByteWriter&) = delete;

  // Room for `n` more bytes; the Unchecked puts may then write up to `n` bytes.
  void Ensure(size_t n) {
    if (static_cast<size_t>(end_ - pos_) < n) Grow(n);
  }
  void Put(char c) {
    Ensure(1);
    *pos_++ = c;
  }
  void Put(std::string_view s) {
    Ensure(s.size());
    PutUnchecked(s);
  }
  void PutUnchecked(char c) { *pos_++ = c; }
  void PutUnchecked(std::string_view s) {
    std::memcpy(pos_, s.data(), s.size());
    pos_ += s.size();
  }

  // The end as a raw pointer, for an encoder that writes a run of bytes it has ensured room for
  // through a local pointer and then moves the end there (set_pos). Stores through a `char*`
  // may alias anything, so each Put*Unchecked reloads and stores pos_; a local pointer stays in
  // a register.
  char* pos() { return pos_; }
  void set_pos(char* p) { pos_ = p; }

  // Bytes written so far (from the buffer's start), and direct access for encoders that patch
  // what they wrote (valid until the next Ensure/Put).
  size_t offset() const { return static_cast<size_t>(pos_ - base_); }
  char* at(size_t offset) { return base_ + offset; }
  // Moves the end to `offset` (at most what was ensured).
  void set_offset(size_t offset) { pos_ = base_ + offset; }

 private:
  void Grow(size_t n);

  ByteBuffer& out_;
  char* base_;  // out_'s storage; changes when it grows
  char* pos_;
  char* end_;
};

}  // namespace threadline
