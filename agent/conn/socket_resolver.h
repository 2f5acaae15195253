// What the connection table asks the rest of the agent about sockets it learned of late
// (opened before the agent started, or whose open event was lost). Implemented over /proc and
// netlink inet_diag in agent/discovery/proc_socket_resolver.h; faked in unit tests.
#pragma once

#include <cstdint>
#include <optional>

#include "agent/ingest/event_types.h"

namespace threadline {

class SocketResolver {
 public:
  virtual ~SocketResolver() = default;
  // The role of a connection of process `tgid` with this tuple: kServer when its local port is
  // a port that process's network namespace listens on, else kClient. nullopt if unknown.
  virtual std::optional<Role> RoleOf(uint32_t tgid, const Tuple& tuple) = 0;
  // The tuple of the TCP socket behind fd `fd` of process `tgid`, if it still exists.
  virtual std::optional<Tuple> TupleOf(uint32_t tgid, int32_t fd) = 0;
};

}  // namespace threadline
