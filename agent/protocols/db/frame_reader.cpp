#include "agent/protocols/db/frame_reader.h"

#include <algorithm>
#include <cstring>

namespace threadline::db {

void FrameReader::Feed(std::span<const uint8_t> bytes, const ChunkMeta& meta) {
  size_t i = 0;
  while (i < bytes.size()) {
    switch (state_) {
      case State::kStopped:
        return;
      case State::kResync: {
        const size_t at = rules_.FindFrameStart(bytes.subspan(i));
        if (at == std::string::npos || at >= bytes.size() - i) return;
        i += at;
        state_ = State::kHeader;
        header_len_ = 0;
        break;
      }
      case State::kHeader: {
        if (header_len_ == 0) {
          frame_ = Frame{};
          frame_.first = meta;
          frame_.first.pos = meta.pos + i;
        }
        const size_t size = std::min(rules_.HeaderSize(), FrameRules::kMaxHeader);
        const size_t n = std::min(size - header_len_, bytes.size() - i);
        std::memcpy(header_.data() + header_len_, bytes.data() + i, n);
        header_len_ += n;
        i += n;
        if (header_len_ < size) return;
        if (!rules_.ParseHeader({header_.data(), size}, frame_)) {
          listener_.OnFramingLost(meta, false);
          if (state_ == State::kStopped) return;
          EnterResync();
          break;
        }
        keep_ = static_cast<size_t>(std::min<uint64_t>(rules_.KeepBytes(frame_), frame_.length));
        remaining_ = frame_.length;
        body_.clear();
        state_ = State::kBody;
        if (remaining_ == 0) Emit(meta);
        break;
      }
      case State::kBody: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, bytes.size() - i));
        if (!frame_.missing && body_.size() < keep_) {
          const size_t k = std::min(keep_ - body_.size(), n);
          body_.append(reinterpret_cast<const char*>(bytes.data() + i), k);
        }
        remaining_ -= n;
        i += n;
        if (remaining_ == 0) Emit(meta);
        break;
      }
    }
  }
}

void FrameReader::Gap(uint64_t len, const ChunkMeta& meta) {
  if (len == 0) return;
  switch (state_) {
    case State::kStopped:
    case State::kResync:
      return;
    case State::kHeader:
      // The gap covers (part of) a header: where the next frame starts is unknown.
      listener_.OnFramingLost(meta, true);
      if (state_ != State::kStopped) EnterResync();
      return;
    case State::kBody:
      frame_.missing = true;
      if (len < remaining_) {
        remaining_ -= len;
        return;
      }
      len -= remaining_;
      remaining_ = 0;
      Emit(meta);  // the frame ended inside the gap
      if (len > 0 && state_ == State::kHeader) {
        listener_.OnFramingLost(meta, true);
        if (state_ != State::kStopped) EnterResync();
      }
      return;
  }
}

void FrameReader::Emit(const ChunkMeta& last) {
  frame_.last = last;
  frame_.body = {reinterpret_cast<const uint8_t*>(body_.data()), body_.size()};
  state_ = State::kHeader;
  header_len_ = 0;
  listener_.OnFrame(frame_);  // may Stop() or Resync() the reader
}

void FrameReader::EnterResync() {
  state_ = State::kResync;
  header_len_ = 0;
  remaining_ = 0;
  body_.clear();
}

}  // namespace threadline::db
