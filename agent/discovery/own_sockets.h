// The TCP endpoints of the agent's own sockets (its OTLP exports, /metrics scrapes), so that a
// traced process talking to the agent — a collector on this node receiving our exports — is not
// turned into spans: those spans would be exported, received, traced and exported again, a loop
// that never ends. The kernel cannot tell (the agent's side is excluded there, so its sockets
// are unknown to the capture), so userspace asks inet_diag which endpoints are ours.
#pragma once

#include <array>
#include <cstdint>
#include <set>
#include <utility>

#include "agent/common/metrics.h"
#include "agent/ingest/event_types.h"

namespace threadline {

class OwnSockets {
 public:
  explicit OwnSockets(MetricsRegistry& metrics, uint64_t min_refresh_interval_ns = 100'000'000);

  // True when the peer of `t` (t.remote) is a socket of this process. Only same-host peers are
  // looked up; the listing is refreshed when the endpoint is not known yet, at most every
  // min_refresh_interval_ns unless our HTTP clients opened a socket since the last one
  // (OwnClientSocketsOpened, agent/common/curl.h).
  bool IsPeerOfAgent(const Tuple& t);

 private:
  using Endpoint = std::pair<std::array<uint8_t, 16>, uint16_t>;
  static Endpoint Key(const IpAddress& a, uint16_t port);
  void Refresh(uint64_t now_ns);
  // Loopback, or an address of one of this host's interfaces (re-read every 10 s).
  bool SameHost(const IpAddress& a, uint64_t now_ns);

  uint64_t min_refresh_interval_ns_;
  uint64_t last_refresh_ns_ = 0;
  uint64_t client_sockets_listed_ = 0;  // OwnClientSocketsOpened() before the last listing
  std::set<Endpoint> ours_;
  std::set<std::array<uint8_t, 16>> local_addresses_;
  uint64_t addresses_read_ns_ = 0;
  Counter& refreshes_;
};

}  // namespace threadline
