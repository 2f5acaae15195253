// The conn stage: tracks every connection the kernel reports and turns its data events into
// two in-order byte streams (one per direction) with explicit gaps, for a StreamConsumer.
//
// Identity is (tgid, fd, gen): a new gen on a live (tgid, fd) means the fd now holds another
// socket, so the old connection is closed first and bytes of the two never mix. Gens only grow
// (one kernel counter), so an event carrying an older gen than the live entry is stale and is
// dropped rather than allowed to close the newer connection.
//
// Memory is bounded everywhere and every bound that bites is counted: at most
// max_connections entries (least recently active evicted), idle ones evicted by Tick(), and
// out-of-order bytes held per stream and overall (see StreamReassembler).
//
// Single-threaded: call from the ring-buffer consumer thread only.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/common/node_recycler.h"
#include "agent/conn/socket_resolver.h"
#include "agent/conn/stream_consumer.h"
#include "agent/conn/stream_reassembler.h"
#include "agent/ingest/event_types.h"

namespace threadline {

struct ConnectionTableConfig {
  size_t max_connections = 16384;
  uint64_t max_held_bytes_per_stream = 256 * 1024;
  uint32_t max_held_segments_per_stream = 256;
  uint64_t max_total_held_bytes = 64ull * 1024 * 1024;
  uint64_t reorder_window_ns = 50'000'000;        // 50 ms of event time
  uint64_t idle_timeout_ns = 300'000'000'000ull;  // 300 s
};

// A read-only look at one entry; the pointer is valid until the table is next changed.
struct ConnectionStatus {
  const ConnectionInfo* info = nullptr;
  bool provisional = false;  // created from data: its open event was never seen
  int32_t tcp_state = 0;     // last TCP_* state reported, 0 if none
  uint64_t next_pos[2] = {0, 0};      // by Direction
  uint64_t held_charge[2] = {0, 0};   // by Direction
};

class ConnectionTable : public EventSink {
 public:
  // `resolver` may be null; `out`, `metrics` and `resolver` must outlive the table.
  ConnectionTable(const ConnectionTableConfig& config, StreamConsumer& out,
                  MetricsRegistry& metrics, SocketResolver* resolver);
  // Drops the remaining entries without telling the consumer; call CloseAll() first to deliver
  // what they still hold.
  ~ConnectionTable() override;
  ConnectionTable(const ConnectionTable&) = delete;
  ConnectionTable& operator=(const ConnectionTable&) = delete;

  void OnConnOpen(const ConnOpenEvent& ev) override;
  void OnConnClose(const ConnCloseEvent& ev) override;
  void OnData(const DataEvent& ev) override;
  void OnConnState(const ConnStateEvent& ev) override;
  void OnProcExit(const ProcExitEvent& ev) override;

  // `now_ns` on the events' clock (boot time). Gives up reorder holes older than the window
  // and evicts connections idle for longer than idle_timeout_ns.
  void Tick(uint64_t now_ns);
  // Flushes and closes every connection (shutdown).
  void CloseAll(CloseReason reason);

  size_t size() const { return lru_.size(); }
  uint64_t held_charge() const { return budget_.used(); }
  std::optional<ConnectionStatus> Find(const ConnId& id) const;
  // Most recently active first.
  void ForEach(const std::function<void(const ConnectionStatus&)>& fn) const;

 private:
  struct FdKey {
    uint32_t tgid;
    int32_t fd;
    auto operator<=>(const FdKey&) const = default;
  };
  struct FdKeyHash {
    size_t operator()(const FdKey& k) const noexcept {
      return std::hash<uint64_t>{}((static_cast<uint64_t>(k.tgid) << 32) |
                                   static_cast<uint32_t>(k.fd));
    }
  };
  struct Entry {
    Entry(const ReassemblerLimits& limits, HeldBudget* budget, StreamReassembler::Origin origin)
        : egress(limits, budget, origin), ingress(limits, budget, origin) {}
    StreamReassembler& stream(Direction d) { return d == Direction::kEgress ? egress : ingress; }
    const StreamReassembler& stream(Direction d) const {
      return d == Direction::kEgress ? egress : ingress;
    }

    ConnectionInfo info;
    StreamReassembler egress;
    StreamReassembler ingress;
    bool provisional = false;
    bool in_holding = false;
    int32_t tcp_state = 0;
  };
  // front: most recently active. Its nodes, and the two indexes', come from recyclers: with a
  // new connection per request an entry is made and dropped per request, which cost three
  // allocations (pipeline_bench --workload close).
  using Lru = std::list<Entry, RecyclingAllocator<Entry>>;
  class StreamOutput;

  // An entry for data of an id we never saw opened (open lost, or opened before the agent).
  Lru::iterator CreateProvisional(const DataEvent& ev, const ChunkMeta& meta);
  // First TLS plaintext of a connection: marks it TLS, restarting it if non-TLS bytes of it
  // were already delivered. Returns the (possibly new) entry.
  Lru::iterator SwitchToTls(Lru::iterator it, const ChunkMeta& meta);
  // Makes room (evicting the least recently active) and adds a blank entry at the front.
  Lru::iterator Insert(const ConnId& id, StreamReassembler::Origin origin, const ChunkMeta& meta);
  void Touch(Lru::iterator it, uint64_t ts_ns);
  void UpdateHolding(Entry& e);
  // Flushes, tells the consumer, counts, forgets. `final_bytes` (the kernel's end positions)
  // lets a close report trailing bytes whose events were lost.
  void Close(Lru::iterator it, CloseReason reason, const uint64_t* final_bytes,
             const ChunkMeta& meta);
  void RememberClosed(const ConnId& id);
  bool RecentlyClosed(const ConnId& id) const;
  void PublishGauges();
  ConnectionStatus StatusOf(const Entry& e) const;

  ConnectionTableConfig config_;
  ReassemblerLimits limits_;
  StreamConsumer& out_;
  SocketResolver* resolver_;
  HeldBudget budget_;

  // One recycler per node size, each declared before its container (it must outlive it).
  NodeRecycler entry_nodes_;
  NodeRecycler fd_nodes_;
  NodeRecycler tgid_nodes_;
  Lru lru_;
  RecyclingMap<FdKey, Lru::iterator, FdKeyHash> by_fd_;
  // Ordered by (tgid, fd): one process's entries are one range.
  std::set<FdKey, std::less<FdKey>, RecyclingAllocator<FdKey>> by_tgid_;
  std::vector<Entry*> holding_;  // entries with held out-of-order bytes, for Tick()
  std::vector<Entry*> tick_scratch_;
  // Data racing its connection's close (another thread) must not resurrect it as provisional.
  std::array<ConnId, 256> recently_closed_{};
  size_t recently_closed_next_ = 0;

  // Indexed by the enum's value.
  std::array<Counter*, 4> opened_{};
  std::array<Counter*, 6> closed_{};
  std::array<Counter*, 3> gap_bytes_{};
  std::array<Counter*, kHoldLimitCount> hold_limit_hits_{};
  Counter& evicted_lru_;
  Counter& evicted_idle_;
  Counter& provisional_;
  Counter& duplicate_bytes_;
  Counter& ignored_opens_;
  Counter& stale_events_;
  Counter& unmatched_closes_;
  Counter& late_data_;
  Counter& tls_restarts_;
  Gauge& held_bytes_;
  Gauge& tracked_;

  friend class StreamOutput;
};

}  // namespace threadline
