// SocketResolver over procfs and netlink inet_diag: the tuple and role of TCP connections the
// kernel capture never saw opened (opened before the agent started, or whose open event was
// lost). Used only on that slow path, never per data event.
//
// How a lookup works: /proc/<pid>/fd/<fd> names the socket inode; the process's network
// namespace is read from /proc/<pid>/ns/net; the TCP sockets of that namespace are listed once
// (inet_diag when it is the agent's own namespace, where one netlink dump is far cheaper than
// formatting /proc/net/tcp; /proc/<pid>/net/tcp{,6} otherwise, since a netlink socket only sees
// the namespace it was opened in and entering another would need setns on a thread) and kept
// for a short time, so a burst of pick-ups at start costs one listing per namespace, not one
// per connection. A listing that lacks the inode is refreshed once before giving up: the
// connection may be younger than the listing.
//
// Role: a socket whose local port is a port its namespace listens on (TCP_LISTEN) is the
// server side, every other established socket the client side.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/common/result.h"
#include "agent/conn/socket_resolver.h"

namespace threadline {

// One TCP socket of a namespace listing.
struct TcpSocketEntry {
  uint64_t inode = 0;
  Tuple tuple;
  uint8_t state = 0;  // TCP_* (1 established ... 10 listen)
};

namespace discovery {
// Parses /proc/<pid>/net/tcp (family AF_INET) or tcp6 (AF_INET6) text. Malformed lines are
// skipped. Exposed for tests.
std::vector<TcpSocketEntry> ParseProcNetTcp(std::string_view text, uint16_t family);
// Dumps every TCP socket of the caller's network namespace of `family` over NETLINK_SOCK_DIAG.
Result<std::vector<TcpSocketEntry>> DumpInetDiag(uint16_t family);
}  // namespace discovery

class ProcSocketResolver : public SocketResolver {
 public:
  // kAuto: inet_diag for the agent's own namespace, procfs for others. kProcOnly: always procfs
  // (tests; hosts where NETLINK_SOCK_DIAG is filtered).
  enum class Source { kAuto, kProcOnly };
  explicit ProcSocketResolver(MetricsRegistry& metrics, std::string proc_root = "/proc",
                              uint64_t cache_ttl_ns = 1'000'000'000ull, Source source = Source::kAuto);

  std::optional<Role> RoleOf(uint32_t tgid, const Tuple& tuple) override;
  std::optional<Tuple> TupleOf(uint32_t tgid, int32_t fd) override;

 private:
  struct Listing {
    uint64_t fetched_ns = 0;
    std::unordered_map<uint64_t, Tuple> by_inode;
    std::unordered_set<uint16_t> listening_ports;
  };
  // The namespace listing for `tgid`, fetched when missing, older than the TTL, or `refresh`.
  const Listing* ListingFor(uint32_t tgid, bool refresh);
  Result<Listing> Fetch(uint32_t tgid, uint64_t netns);

  std::string proc_root_;
  uint64_t cache_ttl_ns_;
  uint64_t own_netns_ = 0;
  std::unordered_map<uint64_t, Listing> by_netns_;
  Listing scratch_;  // the last listing of an unnamed namespace (never reused)
  Counter& resolved_;
  Counter& unresolved_;
  Counter& listings_;
  Counter& listing_errors_;
};

}  // namespace threadline
