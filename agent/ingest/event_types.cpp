#include "agent/ingest/event_types.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

namespace threadline {

IpAddress IpAddress::V4(const uint8_t* b) {
  IpAddress a;
  std::memcpy(a.bytes.data(), b, 4);
  a.is_v4 = true;
  return a;
}

IpAddress IpAddress::V6(const uint8_t* b) {
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(b, kMappedPrefix, sizeof(kMappedPrefix)) == 0) return V4(b + 12);
  IpAddress a;
  std::memcpy(a.bytes.data(), b, 16);
  a.is_v4 = false;
  return a;
}

IpAddress IpAddress::FromKernel(uint16_t family, const uint8_t* b) {
  return family == AF_INET6 ? V6(b) : V4(b);
}

std::string_view IpAddress::Format(char (&buf)[kTextSize]) const {
  if (is_v4) {
    // Digits by hand (inet_ntop formats IPv4 with sprintf).
    char* p = buf;
    for (int i = 0; i < 4; ++i) {
      if (i) *p++ = '.';
      const unsigned v = bytes[i];
      if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
      if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
      *p++ = static_cast<char>('0' + v % 10);
    }
    return std::string_view(buf, static_cast<size_t>(p - buf));
  }
  static_assert(kTextSize >= INET6_ADDRSTRLEN);
  if (inet_ntop(AF_INET6, bytes.data(), buf, kTextSize) == nullptr) return {};
  return std::string_view(buf);
}

namespace {
std::string Endpoint(const IpAddress& a, uint16_t port) {
  return a.is_v4 ? a.ToString() + ":" + std::to_string(port)
                 : "[" + a.ToString() + "]:" + std::to_string(port);
}
}  // namespace

std::string Tuple::ToString() const {
  return Endpoint(local, local_port) + " -> " + Endpoint(remote, remote_port);
}

std::string ConnId::ToString() const {
  return std::to_string(tgid) + "/" + std::to_string(fd) + "#" + std::to_string(gen);
}

std::string_view ToString(Direction d) { return d == Direction::kEgress ? "egress" : "ingress"; }

std::string_view ToString(Role r) {
  switch (r) {
    case Role::kClient: return "client";
    case Role::kServer: return "server";
    default: return "unknown";
  }
}

std::string_view ToString(ConnSource s) {
  switch (s) {
    case ConnSource::kConnect: return "connect";
    case ConnSource::kAccept: return "accept";
    case ConnSource::kFirstIo: return "first-io";
  }
  return "?";
}

std::string_view ToString(CloseReason r) {
  switch (r) {
    case CloseReason::kSyscall: return "close";
    case CloseReason::kFdReplaced: return "fd-replaced";
    case CloseReason::kProcessExit: return "process-exit";
    case CloseReason::kEvicted: return "evicted";
    case CloseReason::kShed: return "shed";
  }
  return "?";
}

std::string_view CtxTagKindName(uint32_t kind) {
  switch (kind) {
    case TL_CTAG_SERVER: return "server";
    case TL_CTAG_ROOT: return "root";
    case TL_CTAG_AMBIGUOUS: return "ambiguous";
    case TL_CTAG_THREAD: return "thread";
    case TL_CTAG_GOROUTINE: return "goroutine";
    case TL_CTAG_NODE_ASYNC: return "node_async";
    case TL_CTAG_ENDED: return "ended";
    case TL_CTAG_UNTRACKED: return "untracked";
    default: return "";
  }
}

std::string_view SyscallName(uint8_t s) {
  switch (s) {
    case TL_SYS_READ: return "read";
    case TL_SYS_WRITE: return "write";
    case TL_SYS_READV: return "readv";
    case TL_SYS_WRITEV: return "writev";
    case TL_SYS_SENDTO: return "sendto";
    case TL_SYS_RECVFROM: return "recvfrom";
    case TL_SYS_SENDMSG: return "sendmsg";
    case TL_SYS_RECVMSG: return "recvmsg";
    case TL_SYS_SENDMMSG: return "sendmmsg";
    case TL_SYS_RECVMMSG: return "recvmmsg";
    case TL_SYS_SENDFILE: return "sendfile";
    case TL_SYS_CONNECT: return "connect";
    case TL_SYS_ACCEPT: return "accept";
    case TL_SYS_ACCEPT4: return "accept4";
    case TL_SYS_CLOSE: return "close";
    case TL_SYS_SSL_READ: return "SSL_read";
    case TL_SYS_SSL_WRITE: return "SSL_write";
    case TL_SYS_GO_TLS_READ: return "go_tls_read";
    case TL_SYS_GO_TLS_WRITE: return "go_tls_write";
    default: return "?";
  }
}

}  // namespace threadline
