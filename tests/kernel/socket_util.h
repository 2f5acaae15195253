// Real loopback TCP sockets for kernel tests: a listener, a connected client and the accepted
// server side, over IPv4, IPv6 or IPv4-mapped IPv6.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace threadline::testing {

enum class Family { kV4, kV6, kV4Mapped };

struct SocketPair {
  int listener = -1;
  int client = -1;
  int server = -1;
  uint16_t server_port = 0;
  uint16_t client_port = 0;
  ~SocketPair() {
    for (int fd : {listener, client, server})
      if (fd >= 0) ::close(fd);
  }
};

inline uint16_t LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return ss.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port)
                                 : ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

// Listens on loopback, connects, accepts. use_accept4 picks the accept flavour.
inline void MakePair(SocketPair& p, Family family = Family::kV4, bool use_accept4 = true) {
  bool v6 = family != Family::kV4;
  p.listener = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(p.listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss{};
  socklen_t len;
  if (!v6) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_any;  // dual-stack, so v4-mapped clients can reach it too
    if (family == Family::kV6) a->sin6_addr = in6addr_loopback;
    len = sizeof(*a);
  }
  if (bind(p.listener, reinterpret_cast<sockaddr*>(&ss), len) || listen(p.listener, 16))
    throw std::runtime_error(std::string("listen: ") + std::strerror(errno));
  p.server_port = LocalPort(p.listener);

  p.client = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  if (!v6) {
    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(p.server_port);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_port = htons(p.server_port);
    if (family == Family::kV4Mapped)
      inet_pton(AF_INET6, "::ffff:127.0.0.1", &a->sin6_addr);
    else
      a->sin6_addr = in6addr_loopback;
  }
  if (connect(p.client, reinterpret_cast<sockaddr*>(&ss), len))
    throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
  p.client_port = LocalPort(p.client);
  p.server = use_accept4 ? accept4(p.listener, nullptr, nullptr, 0) : accept(p.listener, nullptr, nullptr);
  if (p.server < 0) throw std::runtime_error(std::string("accept: ") + std::strerror(errno));
}

}  // namespace threadline::testing
