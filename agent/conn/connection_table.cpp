#include "agent/conn/connection_table.h"

#include <algorithm>
#include <climits>
#include <iterator>
#include <string>

namespace threadline {
namespace {

constexpr size_t Index(Direction d) { return static_cast<size_t>(d); }
constexpr Direction kDirections[] = {Direction::kEgress, Direction::kIngress};

ChunkMeta MetaAt(uint64_t ts_ns, uint32_t tid = 0, uint8_t syscall = 0) {
  ChunkMeta m;
  m.ts_ns = ts_ns;
  m.enter_ts_ns = ts_ns;
  m.tid = tid;
  m.syscall = syscall;
  return m;
}

// threadline_conn_<name>_total: counters end in _total, as OpenMetrics requires of their samples
// (so the text and OpenMetrics expositions name them alike).
Counter& Named(MetricsRegistry& m, const char* name, const char* help, Labels labels = {}) {
  return m.GetCounter(std::string("threadline_conn_") + name + "_total", labels, help);
}

}  // namespace

// Adapts one stream's reassembler output to the consumer, keeping byte totals and counters.
class ConnectionTable::StreamOutput final : public ReassemblyOutput {
 public:
  StreamOutput(ConnectionTable& table, Entry& entry, Direction dir)
      : table_(table), entry_(entry), dir_(dir) {}

  void OnData(uint64_t pos, std::span<const uint8_t> bytes, const ChunkMeta& meta) override {
    entry_.info.bytes[Index(dir_)] += bytes.size();
    table_.out_.OnStreamData(entry_.info, dir_, pos, bytes, At(meta, pos));
  }
  void OnGap(uint64_t pos, uint64_t len, GapReason reason, const ChunkMeta& meta) override {
    entry_.info.bytes[Index(dir_)] += len;
    table_.gap_bytes_[static_cast<size_t>(reason)]->Add(len);
    table_.out_.OnStreamGap(entry_.info, dir_, pos, len, reason, At(meta, pos));
  }
  void OnDuplicate(uint64_t len) override { table_.duplicate_bytes_.Add(len); }
  void OnHoldLimit(HoldLimit limit) override {
    table_.hold_limit_hits_[static_cast<size_t>(limit)]->Add();
  }

 private:
  // The syscall's metadata with the position of the bytes delivered (a held segment can be
  // delivered from its middle when an overlapping one came first).
  static ChunkMeta At(ChunkMeta meta, uint64_t pos) {
    meta.pos = pos;
    return meta;
  }

  ConnectionTable& table_;
  Entry& entry_;
  Direction dir_;
};

ConnectionTable::ConnectionTable(const ConnectionTableConfig& config, StreamConsumer& out,
                                 MetricsRegistry& metrics, SocketResolver* resolver)
    : config_(config),
      limits_{config.max_held_bytes_per_stream, config.max_held_segments_per_stream,
              config.reorder_window_ns},
      out_(out),
      resolver_(resolver),
      budget_(config.max_total_held_bytes),
      lru_(RecyclingAllocator<Entry>(&entry_nodes_)),
      by_fd_(0, FdKeyHash{}, std::equal_to<FdKey>{},
             RecyclingAllocatorFor<FdKey, Lru::iterator>(&fd_nodes_)),
      by_tgid_(std::less<FdKey>{}, RecyclingAllocator<FdKey>(&tgid_nodes_)),
      evicted_lru_(Named(metrics, "evicted", "Connections evicted from the table",
                         {{"reason", "lru"}})),
      evicted_idle_(Named(metrics, "evicted", "Connections evicted from the table",
                          {{"reason", "idle"}})),
      provisional_(Named(metrics, "provisional",
                         "Connections first seen through data (open event missing)")),
      duplicate_bytes_(Named(metrics, "duplicate_bytes",
                             "Stream bytes received again after being delivered or given up")),
      ignored_opens_(Named(metrics, "ignored_opens",
                           "Opens of connections outside the port selection (not tracked)")),
      stale_events_(Named(metrics, "stale_events",
                          "Events for an older generation than the live connection on the fd")),
      unmatched_closes_(Named(metrics, "close_unmatched",
                              "Closes of connections not in the table (evicted, ignored)")),
      late_data_(Named(metrics, "late_data_events",
                       "Data events that arrived after their connection was closed")),
      tls_restarts_(Named(metrics, "tls_restarts",
                          "Connections restarted as TLS after bytes of them were delivered")),
      held_bytes_(metrics.GetGauge("threadline_conn_held_bytes", {},
                                   "Out-of-order bytes held for reassembly, with overhead")),
      tracked_(metrics.GetGauge("threadline_conn_tracked", {}, "Connections in the table")) {
  for (ConnSource s : {ConnSource::kConnect, ConnSource::kAccept, ConnSource::kFirstIo}) {
    opened_[static_cast<size_t>(s)] = &Named(metrics, "opened", "Connections opened",
                                             {{"source", std::string(ToString(s))}});
  }
  for (CloseReason r : {CloseReason::kSyscall, CloseReason::kFdReplaced,
                        CloseReason::kProcessExit, CloseReason::kEvicted, CloseReason::kShed}) {
    closed_[static_cast<size_t>(r)] = &Named(metrics, "closed", "Connections closed",
                                             {{"reason", std::string(ToString(r))}});
  }
  for (GapReason r : {GapReason::kNotCaptured, GapReason::kLost, GapReason::kBufferLimit}) {
    gap_bytes_[static_cast<size_t>(r)] =
        &Named(metrics, "gap_bytes", "Stream bytes reported as gaps",
               {{"reason", std::string(ToString(r))}});
  }
  for (HoldLimit l : {HoldLimit::kStreamBytes, HoldLimit::kStreamSegments,
                      HoldLimit::kTotalBytes}) {
    hold_limit_hits_[static_cast<size_t>(l)] =
        &Named(metrics, "hold_limit_hits", "Out-of-order holds refused by a memory bound",
               {{"limit", std::string(ToString(l))}});
  }
  PublishGauges();
}

ConnectionTable::~ConnectionTable() {
  lru_.clear();  // releases held bytes from budget_ while it still exists
  PublishGauges();
}

void ConnectionTable::OnConnOpen(const ConnOpenEvent& ev) {
  const ChunkMeta meta = MetaAt(ev.ts_ns, ev.tid);
  if (auto f = by_fd_.find({ev.id.tgid, ev.id.fd}); f != by_fd_.end()) {
    Entry& e = *f->second;
    if (e.info.id.gen == ev.id.gen) {
      // Data from another thread beat the open here: complete what the entry was missing.
      if (e.provisional) {
        e.provisional = false;
        e.info.tuple = ev.tuple;
        e.info.tuple_known = true;
        if (e.info.role == Role::kUnknown) e.info.role = ev.role;
        e.info.source = ev.source;
        e.info.comm = std::string(ev.comm);
        e.info.open_ts_ns = std::min(e.info.open_ts_ns, ev.ts_ns);
      }
      Touch(f->second, ev.ts_ns);
      return;
    }
    if (e.info.id.gen > ev.id.gen) {
      stale_events_.Add();
      return;
    }
    Close(f->second, CloseReason::kFdReplaced, nullptr, meta);
  }
  if (ev.ignored) {
    ignored_opens_.Add();
    return;
  }
  auto it = Insert(ev.id, StreamReassembler::Origin::kZero, meta);
  ConnectionInfo& info = it->info;
  info.tuple = ev.tuple;
  info.tuple_known = true;
  info.role = ev.role;
  if (info.role == Role::kUnknown && resolver_ != nullptr) {
    info.role = resolver_->RoleOf(ev.id.tgid, ev.tuple).value_or(Role::kUnknown);
  }
  info.source = ev.source;
  info.comm = std::string(ev.comm);
  info.open_ts_ns = ev.ts_ns;
  info.last_activity_ns = ev.ts_ns;
  const size_t src = static_cast<size_t>(ev.source);
  (src < opened_.size() && opened_[src] != nullptr ? opened_[src]
                                                   : opened_[static_cast<size_t>(ConnSource::kFirstIo)])
      ->Add();
  out_.OnConnectionOpened(info);
}

void ConnectionTable::OnConnClose(const ConnCloseEvent& ev) {
  const ChunkMeta meta = MetaAt(ev.ts_ns, ev.tid, TL_SYS_CLOSE);
  auto f = by_fd_.find({ev.id.tgid, ev.id.fd});
  if (f != by_fd_.end() && f->second->info.id.gen == ev.id.gen) {
    Close(f->second, ev.reason, ev.bytes, meta);
    return;
  }
  if (f != by_fd_.end() && f->second->info.id.gen > ev.id.gen) {
    stale_events_.Add();
    return;
  }
  // A newer socket on the fd than the one we track: ours is certainly gone.
  if (f != by_fd_.end()) Close(f->second, CloseReason::kFdReplaced, nullptr, meta);
  unmatched_closes_.Add();
  RememberClosed(ev.id);
}

void ConnectionTable::OnData(const DataEvent& ev) {
  const ChunkMeta meta{.ts_ns = ev.ts_ns, .enter_ts_ns = ev.enter_ts_ns, .tid = ev.tid,
                       .syscall = ev.syscall, .ctx_tag = ev.ctx_tag};
  Lru::iterator it = lru_.end();
  if (auto f = by_fd_.find({ev.id.tgid, ev.id.fd}); f != by_fd_.end()) {
    const uint64_t live_gen = f->second->info.id.gen;
    if (live_gen == ev.id.gen) {
      it = f->second;
    } else if (live_gen > ev.id.gen) {
      stale_events_.Add();
      return;
    } else {
      Close(f->second, CloseReason::kFdReplaced, nullptr, meta);
    }
  }
  if (it == lru_.end()) {
    if (RecentlyClosed(ev.id)) {
      late_data_.Add();
      return;
    }
    it = CreateProvisional(ev, meta);
  }
  if ((ev.flags & TL_DATA_F_TLS) != 0 && !it->info.tls) it = SwitchToTls(it, meta);
  Touch(it, ev.ts_ns);
  // A faulted read leaves zeros in the payload: those must become a gap, never data.
  const bool payload_valid = (ev.flags & TL_DATA_F_READ_FAULT) == 0;
  StreamSegment seg{ev.pos, ev.size,
                    payload_valid ? ev.payload : std::span<const uint8_t>{}, meta};
  Entry& e = *it;
  StreamOutput o(*this, e, ev.direction);
  e.stream(ev.direction).Push(seg, o);
  UpdateHolding(e);
  held_bytes_.Set(static_cast<int64_t>(budget_.used()));
}

void ConnectionTable::OnConnState(const ConnStateEvent& ev) {
  // Not acted on yet; kept so that close/half-close handling can build on it. State changes
  // for connections we do not track (already closed, ignored) are normal and not counted.
  auto f = by_fd_.find({ev.id.tgid, ev.id.fd});
  if (f == by_fd_.end() || f->second->info.id.gen != ev.id.gen) return;
  f->second->tcp_state = ev.new_state;
  Touch(f->second, ev.ts_ns);
}

void ConnectionTable::OnProcExit(const ProcExitEvent& ev) {
  const ChunkMeta meta = MetaAt(ev.ts_ns);
  auto k = by_tgid_.lower_bound(FdKey{ev.pid, INT32_MIN});
  while (k != by_tgid_.end() && k->tgid == ev.pid) {
    const FdKey key = *k++;  // Close() erases *k
    Close(by_fd_.at(key), CloseReason::kProcessExit, nullptr, meta);
  }
}

void ConnectionTable::Tick(uint64_t now_ns) {
  // Copied: expiring changes holding_.
  tick_scratch_.assign(holding_.begin(), holding_.end());
  for (Entry* e : tick_scratch_) {
    for (Direction d : kDirections) {
      StreamOutput o(*this, *e, d);
      e->stream(d).Expire(now_ns, o);
    }
    UpdateHolding(*e);
  }
  const ChunkMeta meta = MetaAt(now_ns);
  while (!lru_.empty()) {
    auto oldest = std::prev(lru_.end());
    const uint64_t last = oldest->info.last_activity_ns;
    if (now_ns <= last || now_ns - last <= config_.idle_timeout_ns) break;
    evicted_idle_.Add();
    Close(oldest, CloseReason::kEvicted, nullptr, meta);
  }
  PublishGauges();
}

void ConnectionTable::CloseAll(CloseReason reason) {
  while (!lru_.empty()) {
    Close(lru_.begin(), reason, nullptr, MetaAt(lru_.begin()->info.last_activity_ns));
  }
}

std::optional<ConnectionStatus> ConnectionTable::Find(const ConnId& id) const {
  auto f = by_fd_.find({id.tgid, id.fd});
  if (f == by_fd_.end() || f->second->info.id.gen != id.gen) return std::nullopt;
  return StatusOf(*f->second);
}

void ConnectionTable::ForEach(const std::function<void(const ConnectionStatus&)>& fn) const {
  for (const Entry& e : lru_) fn(StatusOf(e));
}

ConnectionTable::Lru::iterator ConnectionTable::CreateProvisional(const DataEvent& ev,
                                                                  const ChunkMeta& meta) {
  // The open was lost or predates the agent: we do not know where the stream started.
  auto it = Insert(ev.id, StreamReassembler::Origin::kFirstSegment, meta);
  ConnectionInfo& info = it->info;
  it->provisional = true;
  info.role = ev.role;
  info.source = ConnSource::kFirstIo;
  info.open_ts_ns = ev.ts_ns;
  info.last_activity_ns = ev.ts_ns;
  if (resolver_ != nullptr) {
    if (auto tuple = resolver_->TupleOf(ev.id.tgid, ev.id.fd)) {
      info.tuple = *tuple;
      info.tuple_known = true;
      if (info.role == Role::kUnknown) {
        info.role = resolver_->RoleOf(ev.id.tgid, info.tuple).value_or(Role::kUnknown);
      }
    }
  }
  provisional_.Add();
  opened_[static_cast<size_t>(ConnSource::kFirstIo)]->Add();
  out_.OnConnectionOpened(info);
  return it;
}

ConnectionTable::Lru::iterator ConnectionTable::SwitchToTls(Lru::iterator it, const ChunkMeta& meta) {
  Entry& e = *it;
  if (e.info.bytes[0] == 0 && e.info.bytes[1] == 0 && !e.egress.holding() && !e.ingress.holding()) {
    e.info.tls = true;  // the usual case: the kernel never sent this connection's ciphertext
    return it;
  }
  // Bytes of it went out as plain data before the kernel knew it was TLS (a handshake it could
  // not recognise, data racing the first SSL_* call). Those streams and the plaintext streams
  // have different positions and contents: end the first as a connection of its own and start
  // the plaintext one from position 0, so nothing downstream ever joins the two.
  ConnectionInfo info = e.info;
  const bool provisional = e.provisional;
  Close(it, CloseReason::kFdReplaced, nullptr, meta);
  std::replace(recently_closed_.begin(), recently_closed_.end(), info.id, ConnId{});
  auto fresh = Insert(info.id, StreamReassembler::Origin::kZero, meta);
  fresh->provisional = provisional;
  info.bytes[0] = info.bytes[1] = 0;
  info.tls = true;
  fresh->info = std::move(info);
  tls_restarts_.Add();
  out_.OnConnectionOpened(fresh->info);
  return fresh;
}

ConnectionTable::Lru::iterator ConnectionTable::Insert(const ConnId& id,
                                                       StreamReassembler::Origin origin,
                                                       const ChunkMeta& meta) {
  while (!lru_.empty() && lru_.size() >= config_.max_connections) {
    evicted_lru_.Add();
    Close(std::prev(lru_.end()), CloseReason::kEvicted, nullptr, meta);
  }
  lru_.emplace_front(limits_, &budget_, origin);
  auto it = lru_.begin();
  it->info.id = id;
  const FdKey key{id.tgid, id.fd};
  by_fd_.emplace(key, it);
  by_tgid_.insert(key);
  tracked_.Set(static_cast<int64_t>(lru_.size()));
  return it;
}

void ConnectionTable::Touch(Lru::iterator it, uint64_t ts_ns) {
  it->info.last_activity_ns = std::max(it->info.last_activity_ns, ts_ns);
  if (it != lru_.begin()) lru_.splice(lru_.begin(), lru_, it);
}

void ConnectionTable::UpdateHolding(Entry& e) {
  const bool holding = e.egress.holding() || e.ingress.holding();
  if (holding == e.in_holding) return;
  e.in_holding = holding;
  if (holding) {
    holding_.push_back(&e);
  } else {
    auto pos = std::find(holding_.begin(), holding_.end(), &e);
    *pos = holding_.back();
    holding_.pop_back();
  }
}

void ConnectionTable::Close(Lru::iterator it, CloseReason reason, const uint64_t* final_bytes,
                            const ChunkMeta& meta) {
  Entry& e = *it;
  for (Direction d : kDirections) {
    StreamOutput o(*this, e, d);
    if (final_bytes != nullptr) {
      e.stream(d).Finish(final_bytes[Index(d)], meta, o);
    } else {
      e.stream(d).Flush(o);
    }
  }
  out_.OnConnectionClosed(e.info, reason);
  const size_t r = static_cast<size_t>(reason);
  (r < closed_.size() && closed_[r] != nullptr ? closed_[r]
                                               : closed_[static_cast<size_t>(CloseReason::kSyscall)])
      ->Add();
  RememberClosed(e.info.id);
  UpdateHolding(e);  // both streams were flushed: leaves holding_
  const FdKey key{e.info.id.tgid, e.info.id.fd};
  by_fd_.erase(key);
  by_tgid_.erase(key);
  lru_.erase(it);
  PublishGauges();
}

void ConnectionTable::RememberClosed(const ConnId& id) {
  recently_closed_[recently_closed_next_] = id;
  recently_closed_next_ = (recently_closed_next_ + 1) % recently_closed_.size();
}

bool ConnectionTable::RecentlyClosed(const ConnId& id) const {
  // Scanned only for data of an unknown connection, which is rare.
  return std::find(recently_closed_.begin(), recently_closed_.end(), id) != recently_closed_.end();
}

void ConnectionTable::PublishGauges() {
  held_bytes_.Set(static_cast<int64_t>(budget_.used()));
  tracked_.Set(static_cast<int64_t>(lru_.size()));
}

ConnectionStatus ConnectionTable::StatusOf(const Entry& e) const {
  ConnectionStatus s;
  s.info = &e.info;
  s.provisional = e.provisional;
  s.tcp_state = e.tcp_state;
  for (Direction d : kDirections) {
    s.next_pos[Index(d)] = e.stream(d).next_pos();
    s.held_charge[Index(d)] = e.stream(d).held_charge();
  }
  return s;
}

}  // namespace threadline
