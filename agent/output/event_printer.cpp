#include "agent/output/event_printer.h"

#include <time.h>

#include <cinttypes>

namespace threadline {

namespace {
std::string_view Comm(const ConnectionInfo& c) {
  return c.comm.empty() ? std::string_view("?") : std::string_view(c.comm);
}

std::string Endpoint(const IpAddress& a, uint16_t port) {
  return a.is_v4 ? a.ToString() + ":" + std::to_string(port)
                 : "[" + a.ToString() + "]:" + std::to_string(port);
}
}  // namespace

std::string EventPrinter::Escape(std::span<const uint8_t> bytes, size_t max) {
  std::string out;
  size_t n = std::min(bytes.size(), max);
  out.reserve(n + 16);
  for (size_t i = 0; i < n; ++i) {
    uint8_t c = bytes[i];
    switch (c) {
      case '\r': out += "\\r"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out += static_cast<char>(c);
        } else {
          char hex[5];
          std::snprintf(hex, sizeof(hex), "\\x%02x", c);
          out += hex;
        }
    }
  }
  return out;
}

std::string EventPrinter::Stamp(uint64_t boot_ns) const {
  uint64_t epoch = clock_.ToEpochNs(boot_ns);
  time_t secs = static_cast<time_t>(epoch / 1'000'000'000ull);
  tm local{};
  localtime_r(&secs, &local);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%02d:%02d:%02d.%06" PRIu64, local.tm_hour, local.tm_min,
                local.tm_sec, static_cast<uint64_t>((epoch % 1'000'000'000ull) / 1000));
  return buf;
}

void EventPrinter::OnConnectionOpened(const ConnectionInfo& c) {
  FlushPending();
  std::string local = c.tuple_known ? Endpoint(c.tuple.local, c.tuple.local_port) : "?";
  std::string remote = c.tuple_known ? Endpoint(c.tuple.remote, c.tuple.remote_port) : "?";
  std::fprintf(out_, "%s OPEN  pid=%u comm=%.*s conn=%s role=%.*s src=%.*s local=%s remote=%s\n",
               Stamp(c.open_ts_ns).c_str(), c.id.tgid, static_cast<int>(Comm(c).size()),
               Comm(c).data(), c.id.ToString().c_str(), static_cast<int>(ToString(c.role).size()),
               ToString(c.role).data(), static_cast<int>(ToString(c.source).size()),
               ToString(c.source).data(), local.c_str(), remote.c_str());
}

void EventPrinter::OnStreamData(const ConnectionInfo& c, Direction dir, uint64_t pos,
                                std::span<const uint8_t> bytes, const ChunkMeta& meta) {
  FlushPending();
  pending_.active = true;
  pending_.conn = c.id;
  pending_.dir = dir;
  pending_.pos = pos;
  pending_.captured = bytes.size();
  pending_.meta = meta;
  pending_.prefix = Stamp(meta.ts_ns) + " DATA  pid=" + std::to_string(c.id.tgid) +
                    " tid=" + std::to_string(meta.tid) + " comm=" + std::string(Comm(c)) +
                    " conn=" + c.id.ToString() + " dir=" + std::string(ToString(dir)) +
                    " pos=" + std::to_string(pos);
  pending_.suffix = " syscall=" + std::string(SyscallName(meta.syscall));
  if (meta.ctx_tag != 0)  // the kernel's context verdict on the request these bytes start
    pending_.suffix += " ctx=" + std::string(CtxTagKindName(TL_CTX_TAG_KIND(meta.ctx_tag))) + ":" +
                       std::to_string(TL_CTX_TAG_SEQ(meta.ctx_tag));
  pending_.suffix += " data=\"" + Escape(bytes, payload_bytes_) + "\"";
}

void EventPrinter::FlushPending(uint64_t not_captured) {
  if (!pending_.active) return;
  pending_.active = false;
  std::fprintf(out_, "%s size=%" PRIu64 " captured=%" PRIu64 "%s\n", pending_.prefix.c_str(),
               pending_.captured + not_captured, pending_.captured, pending_.suffix.c_str());
}

void EventPrinter::OnStreamGap(const ConnectionInfo& c, Direction dir, uint64_t pos, uint64_t len,
                               GapReason reason, const ChunkMeta& meta) {
  // The uncaptured tail of the syscall just printed: one DATA line with size > captured.
  if (reason == GapReason::kNotCaptured && pending_.active && pending_.conn == c.id &&
      pending_.dir == dir && pending_.pos + pending_.captured == pos &&
      pending_.meta.ts_ns == meta.ts_ns && pending_.meta.tid == meta.tid) {
    FlushPending(len);
    return;
  }
  FlushPending();
  std::fprintf(out_,
               "%s GAP   pid=%u comm=%.*s conn=%s dir=%.*s pos=%" PRIu64 " len=%" PRIu64
               " reason=%.*s\n",
               Stamp(meta.ts_ns ? meta.ts_ns : c.last_activity_ns).c_str(), c.id.tgid,
               static_cast<int>(Comm(c).size()), Comm(c).data(), c.id.ToString().c_str(),
               static_cast<int>(ToString(dir).size()), ToString(dir).data(), pos, len,
               static_cast<int>(ToString(reason).size()), ToString(reason).data());
}

void EventPrinter::OnConnectionClosed(const ConnectionInfo& c, CloseReason reason) {
  FlushPending();
  std::fprintf(out_, "%s CLOSE pid=%u comm=%.*s conn=%s reason=%.*s sent=%" PRIu64 " recv=%" PRIu64 "\n",
               Stamp(c.last_activity_ns).c_str(), c.id.tgid, static_cast<int>(Comm(c).size()),
               Comm(c).data(), c.id.ToString().c_str(), static_cast<int>(ToString(reason).size()),
               ToString(reason).data(), static_cast<uint64_t>(c.bytes[0]), static_cast<uint64_t>(c.bytes[1]));
}

void EventPrinter::PrintExec(const ProcExecEvent& e) {
  FlushPending();
  std::fprintf(out_, "%s EXEC  pid=%u ppid=%u comm=%.*s file=%.*s\n", Stamp(e.ts_ns).c_str(),
               e.pid, e.ppid, static_cast<int>(e.comm.size()), e.comm.data(),
               static_cast<int>(e.filename.size()), e.filename.data());
}

void EventPrinter::PrintExit(const ProcExitEvent& e) {
  FlushPending();
  std::fprintf(out_, "%s EXIT  pid=%u comm=%.*s status=%d\n", Stamp(e.ts_ns).c_str(), e.pid,
               static_cast<int>(e.comm.size()), e.comm.data(), e.exit_code);
}

}  // namespace threadline
