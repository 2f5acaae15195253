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
  void Flush() { std::fflush(out_); }

  // "GET / HTTP/1.1\r\n" -> GET / HTTP/1.1\r\n (quotes, backslashes, non-printables escaped)
  static std::string Escape(std::span<const uint8_t> bytes, size_t max);

 private:
  std::string Stamp(uint64_t boot_ns) const;

  std::FILE* out_;
  const BootClock& clock_;
  uint32_t payload_bytes_;
  // Chunks of one syscall may arrive as data + gap; the gap line reuses the data's fields.
  std::string line_;
};

}  // namespace threadline
