// OwnSockets against real sockets of this process: the peer of a connection is the agent's when
// one of our fds is bound to that endpoint, whatever else the fd table holds (files, pipes).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "agent/common/curl.h"
#include "agent/common/metrics.h"
#include "agent/discovery/own_sockets.h"

namespace threadline {
namespace {

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

uint16_t LocalPort(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  return ntohs(a.sin_port);
}

Tuple ServerSideOf(uint16_t peer_port) {
  const uint8_t loopback[4] = {127, 0, 0, 1};
  Tuple t;
  t.family = AF_INET;
  t.local = IpAddress::V4(loopback);
  t.remote = IpAddress::V4(loopback);
  t.local_port = 1;  // the traced server's side: not looked at
  t.remote_port = peer_port;
  return t;
}

TEST(OwnSockets, PeerIsOursOnlyWhenOneOfOurSocketsHasThatEndpoint) {
  MetricsRegistry metrics;
  OwnSockets own(metrics, /*min_refresh_interval_ns=*/0);
  // Non-socket fds in the table (as the agent's BPF maps and links are): skipped.
  Fd file(::open("/proc/self/stat", O_RDONLY));
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  Fd p0(pipe_fds[0]), p1(pipe_fds[1]);

  Fd listener(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.fd, 4), 0);
  addr.sin_port = htons(LocalPort(listener.fd));
  Fd client(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_EQ(::connect(client.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);

  const uint16_t ours = LocalPort(client.fd);
  EXPECT_TRUE(own.IsPeerOfAgent(ServerSideOf(ours)));

  // A loopback port none of our sockets has: not ours.
  Fd other(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(other.fd, reinterpret_cast<sockaddr*>(&any), sizeof(any)), 0);
  const uint16_t closed_port = LocalPort(other.fd);
  ::close(other.fd);
  other.fd = -1;
  EXPECT_FALSE(own.IsPeerOfAgent(ServerSideOf(closed_port)));

  // A socket opened after the last listing is found by the next one.
  Fd late(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_EQ(::connect(late.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_TRUE(own.IsPeerOfAgent(ServerSideOf(LocalPort(late.fd))));
  EXPECT_GE(metrics.GetCounter("threadline_own_socket_listings_total").Value(), 2u);
}

// Between listings (rate-limited) an unknown peer is not ours, unless one of our HTTP clients
// opened a socket since the last listing: then it is listed again at once.
TEST(OwnSockets, ASocketOurClientsOpenedIsFoundWithinTheRateLimit) {
  MetricsRegistry metrics;
  OwnSockets own(metrics, /*min_refresh_interval_ns=*/3600'000'000'000ull);
  Fd listener(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.fd, 4), 0);
  addr.sin_port = htons(LocalPort(listener.fd));
  Fd first(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_EQ(::connect(first.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_TRUE(own.IsPeerOfAgent(ServerSideOf(LocalPort(first.fd))));  // the first listing

  Fd unannounced(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_EQ(::connect(unannounced.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_FALSE(own.IsPeerOfAgent(ServerSideOf(LocalPort(unannounced.fd))));  // within the limit

  NoteOwnClientSocketOpened();  // what curl's socket callback does for the exporter's sockets
  Fd announced(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_EQ(::connect(announced.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_TRUE(own.IsPeerOfAgent(ServerSideOf(LocalPort(announced.fd))));
  EXPECT_EQ(metrics.GetCounter("threadline_own_socket_listings_total").Value(), 2u);
}

TEST(OwnSockets, PeersOnOtherHostsAreNeverOurs) {
  MetricsRegistry metrics;
  OwnSockets own(metrics, 0);
  const uint8_t remote[4] = {192, 0, 2, 7};  // TEST-NET-1: no interface of this host
  Tuple t;
  t.family = AF_INET;
  t.remote = IpAddress::V4(remote);
  t.remote_port = 4318;
  EXPECT_FALSE(own.IsPeerOfAgent(t));
  EXPECT_EQ(metrics.GetCounter("threadline_own_socket_listings_total").Value(), 0u);
}

}  // namespace
}  // namespace threadline
