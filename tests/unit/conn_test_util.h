// Test helpers for the conn stage: a fake clock, an event generator that numbers stream
// positions and generations the way the kernel does, a consumer that records what the stage
// delivers (and checks the in-order contract), and a fake socket resolver.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "agent/conn/socket_resolver.h"
#include "agent/conn/stream_consumer.h"
#include "agent/conn/stream_reassembler.h"
#include "agent/ingest/event_types.h"

namespace threadline::conn_test {

inline constexpr uint64_t kMs = 1'000'000;
inline constexpr uint64_t kSec = 1'000'000'000;

class MockClock {
 public:
  explicit MockClock(uint64_t start_ns = 1000 * kSec) : now_(start_ns) {}
  uint64_t now() const { return now_; }
  void Advance(uint64_t ns) { now_ += ns; }

 private:
  uint64_t now_;
};

inline Tuple MakeTuple(uint16_t local_port, uint16_t remote_port) {
  const uint8_t local[4] = {10, 0, 0, 1};
  const uint8_t remote[4] = {10, 0, 0, 2};
  Tuple t;
  t.local = IpAddress::V4(local);
  t.remote = IpAddress::V4(remote);
  t.local_port = local_port;
  t.remote_port = remote_port;
  t.family = 2;  // AF_INET
  return t;
}

// Every event is stamped with the clock's time, which then moves on by `step_ns`, so events
// are ordered in time the way they were generated, whatever order a test feeds them in.
class EventGenerator {
 public:
  explicit EventGenerator(MockClock& clock, uint64_t step_ns = 1000)
      : clock_(clock), step_ns_(step_ns) {}

  // A new socket on (tgid, fd): a fresh generation, as the kernel assigns them.
  ConnId NewId(uint32_t tgid, int32_t fd) { return ConnId{tgid, fd, next_gen_++}; }

  ConnOpenEvent Open(const ConnId& id, Role role = Role::kClient,
                     ConnSource source = ConnSource::kConnect) {
    ConnOpenEvent e;
    e.id = id;
    e.ts_ns = Tick();
    e.tid = id.tgid;
    e.tuple = MakeTuple(static_cast<uint16_t>(40000 + id.fd), 80);
    e.role = role;
    e.source = source;
    e.comm = "curl";
    return e;
  }

  // The next `bytes` of the stream; `size` > bytes.size() models a truncated capture.
  DataEvent Data(const ConnId& id, Direction dir, std::string_view bytes,
                 std::optional<uint32_t> size = std::nullopt) {
    const std::string& stored = payloads_.emplace_back(bytes);
    DataEvent e;
    e.id = id;
    e.enter_ts_ns = clock_.now();
    e.ts_ns = Tick();
    e.tid = id.tgid;
    e.direction = dir;
    e.syscall = dir == Direction::kEgress ? TL_SYS_WRITE : TL_SYS_READ;
    e.size = size.value_or(static_cast<uint32_t>(bytes.size()));
    uint64_t& pos = pos_[Key(id, dir)];
    e.pos = pos;
    pos += e.size;
    e.payload = {reinterpret_cast<const uint8_t*>(stored.data()), stored.size()};
    return e;
  }

  // Moves the stream on as if bytes were sent before the agent saw the connection.
  void SkipAhead(const ConnId& id, Direction dir, uint64_t n) { pos_[Key(id, dir)] += n; }
  uint64_t PosOf(const ConnId& id, Direction dir) { return pos_[Key(id, dir)]; }

  ConnCloseEvent Close(const ConnId& id, CloseReason reason = CloseReason::kSyscall) {
    ConnCloseEvent e;
    e.id = id;
    e.ts_ns = Tick();
    e.tid = id.tgid;
    e.bytes[0] = PosOf(id, Direction::kEgress);
    e.bytes[1] = PosOf(id, Direction::kIngress);
    e.reason = reason;
    return e;
  }

  ConnStateEvent State(const ConnId& id, int32_t old_state, int32_t new_state) {
    return ConnStateEvent{id, Tick(), old_state, new_state};
  }

  ProcExitEvent Exit(uint32_t pid) {
    ProcExitEvent e;
    e.pid = pid;
    e.ts_ns = Tick();
    e.comm = "curl";
    return e;
  }

 private:
  using PosKey = std::tuple<uint32_t, int32_t, uint64_t, int>;
  static PosKey Key(const ConnId& id, Direction d) {
    return {id.tgid, id.fd, id.gen, static_cast<int>(d)};
  }
  uint64_t Tick() {
    const uint64_t t = clock_.now();
    clock_.Advance(step_ns_);
    return t;
  }

  MockClock& clock_;
  uint64_t step_ns_;
  uint64_t next_gen_ = 1;
  std::map<PosKey, uint64_t> pos_;
  std::deque<std::string> payloads_;  // deque: spans into earlier payloads stay valid
};

// "pos:bytes" for data and "pos:[reason len]" for gaps, space separated: byte- and
// position-exact in one string comparison.
inline std::string RenderData(uint64_t pos, std::span<const uint8_t> bytes) {
  return std::to_string(pos) + ":" + std::string(bytes.begin(), bytes.end());
}
inline std::string RenderGap(uint64_t pos, uint64_t len, GapReason r) {
  return std::to_string(pos) + ":[" + std::string(ToString(r)) + " " + std::to_string(len) + "]";
}
inline void Append(std::string& s, const std::string& piece) {
  if (!s.empty()) s += ' ';
  s += piece;
}

// Records one reassembler's output.
struct RecordingOutput : ReassemblyOutput {
  void OnData(uint64_t pos, std::span<const uint8_t> bytes, const ChunkMeta& meta) override {
    Check(pos, bytes.size());
    Append(rendered, RenderData(pos, bytes));
    last_data = bytes.data();
    metas.push_back(meta);
  }
  void OnGap(uint64_t pos, uint64_t len, GapReason r, const ChunkMeta& meta) override {
    Check(pos, len);
    Append(rendered, RenderGap(pos, len, r));
    metas.push_back(meta);
  }
  void OnDuplicate(uint64_t len) override { duplicate_bytes += len; }
  void OnHoldLimit(HoldLimit l) override { limits.push_back(l); }

  // The contract: each piece starts where the previous one ended.
  void Check(uint64_t pos, uint64_t len) {
    if (end && *end != pos) ++contract_violations;
    end = pos + len;
  }

  std::string rendered;
  std::vector<ChunkMeta> metas;
  const uint8_t* last_data = nullptr;
  uint64_t duplicate_bytes = 0;
  std::vector<HoldLimit> limits;
  std::optional<uint64_t> end;
  int contract_violations = 0;
};

// Records everything a ConnectionTable delivers.
struct RecordingConsumer : StreamConsumer {
  struct Record {
    enum Kind { kOpened, kData, kGap, kClosed } kind;
    ConnectionInfo info;  // as it was at the call
    Direction dir = Direction::kEgress;
    std::string text;  // rendered piece for data/gap
    CloseReason reason = CloseReason::kSyscall;
  };

  void OnConnectionOpened(const ConnectionInfo& info) override {
    if (!open_ids.insert(info.id.ToString()).second) ++contract_violations;  // opened twice
    records.push_back({Record::kOpened, info, {}, {}, {}});
  }
  void OnStreamData(const ConnectionInfo& info, Direction d, uint64_t pos,
                    std::span<const uint8_t> bytes, const ChunkMeta&) override {
    Check(info.id, d, pos, bytes.size());
    records.push_back({Record::kData, info, d, RenderData(pos, bytes), {}});
  }
  void OnStreamGap(const ConnectionInfo& info, Direction d, uint64_t pos, uint64_t len,
                   GapReason r, const ChunkMeta&) override {
    Check(info.id, d, pos, len);
    records.push_back({Record::kGap, info, d, RenderGap(pos, len, r), {}});
  }
  void OnConnectionClosed(const ConnectionInfo& info, CloseReason r) override {
    if (!open_ids.contains(info.id.ToString())) ++contract_violations;  // closed, never opened
    records.push_back({Record::kClosed, info, {}, {}, r});
  }

  // Everything delivered for one direction of one connection, in delivery order.
  std::string Stream(const ConnId& id, Direction d) const {
    std::string s;
    for (const Record& r : records) {
      if ((r.kind == Record::kData || r.kind == Record::kGap) && r.info.id == id && r.dir == d) {
        Append(s, r.text);
      }
    }
    return s;
  }
  // "opened 100/5#1", "closed 100/5#1 fd-replaced": the lifecycle in order.
  std::vector<std::string> Lifecycle() const {
    std::vector<std::string> out;
    for (const Record& r : records) {
      if (r.kind == Record::kOpened) out.push_back("opened " + r.info.id.ToString());
      if (r.kind == Record::kClosed) {
        out.push_back("closed " + r.info.id.ToString() + " " + std::string(ToString(r.reason)));
      }
    }
    return out;
  }
  const Record* Opened(const ConnId& id) const {
    for (const Record& r : records) {
      if (r.kind == Record::kOpened && r.info.id == id) return &r;
    }
    return nullptr;
  }

  void Check(const ConnId& id, Direction d, uint64_t pos, uint64_t len) {
    if (!open_ids.contains(id.ToString())) ++contract_violations;  // bytes before the open
    auto key = std::make_pair(id.ToString(), static_cast<int>(d));
    auto it = ends.find(key);
    if (it != ends.end() && it->second != pos) ++contract_violations;
    ends[key] = pos + len;
  }

  std::vector<Record> records;
  std::map<std::pair<std::string, int>, uint64_t> ends;
  std::set<std::string> open_ids;
  int contract_violations = 0;
};

class FakeResolver : public SocketResolver {
 public:
  std::optional<Role> RoleOf(uint32_t tgid, const Tuple& tuple) override {
    ++role_calls;
    if (!listening.contains({tgid, tuple.local_port})) return Role::kClient;
    return Role::kServer;
  }
  std::optional<Tuple> TupleOf(uint32_t tgid, int32_t fd) override {
    ++tuple_calls;
    auto it = tuples.find({tgid, fd});
    if (it == tuples.end()) return std::nullopt;
    return it->second;
  }

  std::map<std::pair<uint32_t, int32_t>, Tuple> tuples;
  std::set<std::pair<uint32_t, uint16_t>> listening;  // (tgid, local port)
  int role_calls = 0;
  int tuple_calls = 0;
};

}  // namespace threadline::conn_test
