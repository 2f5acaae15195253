#include "agent/discovery/own_sockets.h"

#include <dirent.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "agent/common/clock.h"
#include "agent/common/curl.h"

namespace threadline {

bool OwnSockets::SameHost(const IpAddress& a, uint64_t now_ns) {
  if (a.is_v4 && a.bytes[0] == 127) return true;
  static constexpr std::array<uint8_t, 16> kV6Loopback = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (!a.is_v4 && a.bytes == kV6Loopback) return true;
  if (now_ns - addresses_read_ns_ > 10'000'000'000ull || addresses_read_ns_ == 0) {
    addresses_read_ns_ = now_ns;
    local_addresses_.clear();
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) == 0) {
      for (ifaddrs* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr) continue;
        if (i->ifa_addr->sa_family == AF_INET) {
          auto* in = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
          local_addresses_.insert(IpAddress::V4(reinterpret_cast<const uint8_t*>(&in->sin_addr)).bytes);
        } else if (i->ifa_addr->sa_family == AF_INET6) {
          auto* in6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
          local_addresses_.insert(IpAddress::V6(reinterpret_cast<const uint8_t*>(&in6->sin6_addr)).bytes);
        }
      }
      ::freeifaddrs(list);
    }
  }
  return local_addresses_.count(a.bytes) > 0;
}

OwnSockets::OwnSockets(MetricsRegistry& metrics, uint64_t min_refresh_interval_ns)
    : min_refresh_interval_ns_(min_refresh_interval_ns),
      refreshes_(metrics.GetCounter("threadline_own_socket_listings_total", {},
                                    "Listings of the agent's own sockets (to skip its exports)")) {}

OwnSockets::Endpoint OwnSockets::Key(const IpAddress& a, uint16_t port) {
  return {a.bytes, port};
}

// Our sockets' local endpoints, asked of each fd of this process (getsockname): never a
// listing of every TCP socket of the host (inet_diag), whose cost grows with the host's sockets
// (tens of thousands in TIME_WAIT under a connection-per-request load: a listing per 100 ms was
// most of the agent's CPU) while ours stay a handful. getsockname answers ENOTSOCK for the rest
// (the BPF maps, programs and links: most of our fds), so no fd is resolved as a path: a
// readlink of each /proc/self/fd entry was 70% of a listing's cost, and under nginx connection
// per request over loopback (a listing per 100 ms) the listing was a fifth of the agent's CPU.
// An fd closed or reused meanwhile names at worst another socket of ours.
void OwnSockets::Refresh(uint64_t now_ns) {
  last_refresh_ns_ = now_ns;
  client_sockets_listed_ = OwnClientSocketsOpened();  // before the listing: a later one lists again
  refreshes_.Add(1);
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir("/proc/self/fd"), &::closedir);
  if (!dir) return;
  const int dir_fd = ::dirfd(dir.get());
  std::set<Endpoint> found;
  while (dirent* e = ::readdir(dir.get())) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::atoi(e->d_name);
    if (fd == dir_fd) continue;
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) continue;  // ENOTSOCK mostly
    if (ss.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
      found.insert(Key(IpAddress::V4(reinterpret_cast<const uint8_t*>(&in->sin_addr)), ntohs(in->sin_port)));
    } else if (ss.ss_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
      found.insert(Key(IpAddress::V6(reinterpret_cast<const uint8_t*>(&in6->sin6_addr)), ntohs(in6->sin6_port)));
    }
  }
  ours_ = std::move(found);
}

bool OwnSockets::IsPeerOfAgent(const Tuple& t) {
  uint64_t now = BootClock::NowBootNs();
  if (!SameHost(t.remote, now)) return false;
  Endpoint k = Key(t.remote, t.remote_port);
  if (ours_.count(k)) return true;
  // The rate limit alone would miss an export connection opened within 100 ms of the last
  // listing (a busy loopback workload lists every 100 ms), and a keep-alive export
  // connection to a traced collector would then be traced for its whole life.
  if (now - last_refresh_ns_ < min_refresh_interval_ns_ && OwnClientSocketsOpened() == client_sockets_listed_)
    return false;
  Refresh(now);
  return ours_.count(k) > 0;
}

}  // namespace threadline
