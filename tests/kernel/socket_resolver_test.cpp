// The late-seen-socket resolver against real sockets of this process: the tuple of an fd and the
// role of a connection, through inet_diag (our own namespace) and through /proc/<pid>/net/tcp*.
// Needs no BPF, only a kernel with TCP (and IPv6 for the v6 cases).
#include <gtest/gtest.h>
#include <unistd.h>

#include "agent/common/metrics.h"
#include "agent/discovery/proc_socket_resolver.h"
#include "tests/kernel/socket_util.h"

namespace threadline {
namespace {

using testing::Family;
using testing::MakePair;
using testing::SocketPair;

struct Case {
  Family family;
  ProcSocketResolver::Source source;
  const char* name;
};

class SocketResolverTest : public ::testing::TestWithParam<Case> {};

TEST_P(SocketResolverTest, TupleAndRoleOfBothEnds) {
  SocketPair p;
  MakePair(p, GetParam().family);
  MetricsRegistry metrics;
  ProcSocketResolver resolver(metrics, "/proc", 1'000'000'000ull, GetParam().source);
  const uint32_t self = static_cast<uint32_t>(getpid());
  const char* loopback = GetParam().family == Family::kV6 ? "::1" : "127.0.0.1";
  const uint16_t family = GetParam().family == Family::kV4 ? AF_INET : AF_INET6;

  auto client = resolver.TupleOf(self, p.client);
  ASSERT_TRUE(client.has_value());
  EXPECT_EQ(client->family, family);
  EXPECT_EQ(client->local.ToString(), loopback);  // v4-mapped is normalised to IPv4
  EXPECT_EQ(client->remote.ToString(), loopback);
  EXPECT_EQ(client->local_port, p.client_port);
  EXPECT_EQ(client->remote_port, p.server_port);
  EXPECT_EQ(resolver.RoleOf(self, *client), Role::kClient);

  auto server = resolver.TupleOf(self, p.server);
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ(server->local_port, p.server_port);
  EXPECT_EQ(server->remote_port, p.client_port);
  EXPECT_EQ(resolver.RoleOf(self, *server), Role::kServer);

  EXPECT_EQ(metrics.CounterTotal("threadline_socket_lookups_total"), 2u);
}

TEST_P(SocketResolverTest, NonSocketsAndClosedFdsAreUnresolved) {
  MetricsRegistry metrics;
  ProcSocketResolver resolver(metrics, "/proc", 1'000'000'000ull, GetParam().source);
  const uint32_t self = static_cast<uint32_t>(getpid());
  int pipes[2];
  ASSERT_EQ(pipe(pipes), 0);
  EXPECT_FALSE(resolver.TupleOf(self, pipes[0]).has_value());
  close(pipes[0]);
  close(pipes[1]);
  EXPECT_FALSE(resolver.TupleOf(self, pipes[0]).has_value());
  int udp = socket(AF_INET, SOCK_DGRAM, 0);
  EXPECT_FALSE(resolver.TupleOf(self, udp).has_value());
  close(udp);
}

TEST_P(SocketResolverTest, ConnectionYoungerThanTheCachedListingIsFound) {
  MetricsRegistry metrics;
  ProcSocketResolver resolver(metrics, "/proc", 60'000'000'000ull, GetParam().source);
  const uint32_t self = static_cast<uint32_t>(getpid());
  SocketPair first;
  MakePair(first, GetParam().family);
  ASSERT_TRUE(resolver.TupleOf(self, first.client).has_value());
  SocketPair second;  // after the listing was cached for a minute
  MakePair(second, GetParam().family);
  auto t = resolver.TupleOf(self, second.client);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->local_port, second.client_port);
}

INSTANTIATE_TEST_SUITE_P(
    Sources, SocketResolverTest,
    ::testing::Values(Case{Family::kV4, ProcSocketResolver::Source::kAuto, "V4InetDiag"},
                      Case{Family::kV6, ProcSocketResolver::Source::kAuto, "V6InetDiag"},
                      Case{Family::kV4Mapped, ProcSocketResolver::Source::kAuto, "V4MappedInetDiag"},
                      Case{Family::kV4, ProcSocketResolver::Source::kProcOnly, "V4Procfs"},
                      Case{Family::kV6, ProcSocketResolver::Source::kProcOnly, "V6Procfs"},
                      Case{Family::kV4Mapped, ProcSocketResolver::Source::kProcOnly, "V4MappedProcfs"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace threadline
