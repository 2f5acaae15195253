// --output=events: one line per connection opened/closed, per chunk of stream bytes (one
// syscall's worth, after reassembly), per gap, and per process exec/exit. Meant for people
// (a first look at what the agent sees) and for tests: every field is key=value, the payload
// comes last as a C-escaped quoted string.
#pragma once

#include <cstdio>
#include <string>

#include "agent/common/clock.h"
#include "agent/conn/stream_consumer.h"

namespace threadline {

class EventPrinter : public StreamConsumer {
 public:
  EventPrinter(std::FILE* out, const BootClock& clock, uint32_t payload_bytes)
      : out_(out), clock_(clock), payload_bytes_(payload_bytes) {}

  void OnConnectionOpened(const ConnectionInfo& c) override;
  void OnStreamData(const ConnectionInfo& c, Direction dir, uint64_t pos,
                    std::span<const uint8_t> bytes, const ChunkMeta& meta) override;
  void OnStreamGap(const ConnectionInfo& c, Direction dir, uint64_t pos, uint64_t len,
                   GapReason reason, const ChunkMeta& meta) override;
  void OnConnectionClosed(const ConnectionInfo& c, CloseReason reason) override;

  void PrintExec(const ProcExecEvent& e);
  void PrintExit(const ProcExitEvent& e);
  void Flush() {
    FlushPending();
    std::fflush(out_);
  }

  // The first `max` bytes C-escaped: "GET / HTTP/1.1\r\n" -> GET / HTTP/1.1\\r\\n. No truncation
  // marker: DATA lines say size= and captured=, and data= is min(captured, max) bytes.
  static std::string Escape(std::span<const uint8_t> bytes, size_t max);

 private:
  std::string Stamp(uint64_t boot_ns) const;

  std::FILE* out_;
  const BootClock& clock_;
  uint32_t payload_bytes_;
  // Prints the held DATA line; `not_captured` bytes of the same syscall followed it as a gap.
  void FlushPending(uint64_t not_captured = 0);

  // One syscall that moved more bytes than were captured arrives as data + a not_captured gap;
  // the DATA line is held until we know, so it can say size (moved) and captured (kept).
  struct PendingData {
    bool active = false;
    ConnId conn;
    Direction dir = Direction::kEgress;
    uint64_t pos = 0;
    uint64_t captured = 0;
    ChunkMeta meta;
    std::string prefix;  // up to pos=
    std::string suffix;  // syscall= and data=
  } pending_;
};

}  // namespace threadline
