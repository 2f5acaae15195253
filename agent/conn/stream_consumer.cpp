#include "agent/conn/stream_consumer.h"

namespace threadline {

std::string_view ToString(GapReason r) {
  switch (r) {
    case GapReason::kNotCaptured: return "not-captured";
    case GapReason::kLost: return "lost";
    case GapReason::kBufferLimit: return "buffer-limit";
  }
  return "?";
}

}  // namespace threadline
