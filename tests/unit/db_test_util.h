// Helpers for the database protocol tests: recorded conversations (tests/fixtures/db/*.txt, one
// chunk per line as a peer's recv() returned it), fed through the protocol dispatcher as a real
// connection would be (positions, timestamps, threads), optionally re-cut at a split point, and
// a sink that describes every record the way the span builder does.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <algorithm>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "agent/protocols/db/metrics.h"
#include "agent/protocols/describe.h"
#include "agent/protocols/dispatcher.h"

namespace threadline::db_test {

struct Chunk {
  bool from_client = true;  // 'c': client to server; 's': server to client
  std::string bytes;
};
using Conversation = std::vector<Chunk>;

inline std::string FromHex(std::string_view hex) {
  std::string out;
  auto nibble = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>((nibble(hex[i]) << 4) | nibble(hex[i + 1])));
  return out;
}

// The conversations of tests/fixtures/db/<name>.txt.
inline std::vector<Conversation> LoadRecording(const std::string& name) {
  std::ifstream in(std::string(THREADLINE_SOURCE_DIR) + "/tests/fixtures/db/" + name + ".txt");
  EXPECT_TRUE(in.good()) << "missing fixture " << name;
  std::vector<Conversation> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line == "--") {
      out.emplace_back();
      continue;
    }
    if (out.empty()) out.emplace_back();
    out.back().push_back(Chunk{line[0] == 'c', FromHex(std::string_view(line).substr(2))});
  }
  return out;
}

// One record as a user sees its span: name, status, attributes (strings and ints as text).
struct Described {
  std::string name;
  bool error = false;
  std::map<std::string, std::string> attrs;
  uint64_t request_first_pos = 0;
  uint64_t start_ts = 0;
  uint64_t end_ts = 0;
  Role role = Role::kUnknown;
  std::string Attr(const std::string& k) const {
    auto it = attrs.find(k);
    return it == attrs.end() ? std::string("<none>") : it->second;
  }
  bool Has(const std::string& k) const { return attrs.count(k) > 0; }
};

class DescribingSink : public RecordSink {
 public:
  DescribeOptions options;

  void OnRequest(const ConnectionInfo&, Role, const RequestView& v) override {
    announced.push_back(v.edge.first.pos);
  }
  void OnRecord(const ConnectionInfo& c, Role role, Record&& r) override {
    // Every record was announced first, with the same first byte.
    EXPECT_NE(std::find(announced.begin(), announced.end(), r.request.edge.first.pos), announced.end());
    ExchangeView view;
    Describe(r, role, c, options, view);
    Described d;
    d.name = view.name;
    d.error = view.status == StatusCode::kError;
    d.role = role;
    d.request_first_pos = r.request.edge.first.pos;
    d.start_ts = r.request.edge.first.ts_ns;
    d.end_ts = r.response.seen ? r.response.last.ts_ns : r.closed_ts_ns;
    for (const Attribute& a : view.attributes) {
      std::string v;
      if (auto* s = std::get_if<std::string>(&a.value)) v = *s;
      else if (auto* i = std::get_if<int64_t>(&a.value)) v = std::to_string(*i);
      else if (auto* b = std::get_if<bool>(&a.value)) v = *b ? "true" : "false";
      d.attrs[std::string(a.key.view())] = v;
    }
    records.push_back(std::move(d));
  }
  std::vector<uint64_t> announced;
  std::vector<Described> records;
};

// Feeds conversations to a dispatcher as connections of one process (a client of the database
// unless `role` says otherwise); every chunk is one syscall, 1 µs apart, thread 42.
class Feeder {
 public:
  explicit Feeder(RecordSink& sink, ProtocolOptions protocols = {}) : metrics_(), dispatcher_(Config(protocols), sink, metrics_) {}

  // `split`: cut chunk split->first at byte split->second into two syscalls.
  void Run(const Conversation& conv, Role role = Role::kClient,
           std::optional<std::pair<size_t, size_t>> split = std::nullopt, bool close = true) {
    ConnectionInfo c;
    if (!same_connection || conns_ == 0) ++conns_;
    c.id = ConnId{1000, static_cast<int32_t>(10 + conns_), static_cast<uint64_t>(conns_)};
    c.tls = tls;
    c.role = role;
    c.tuple_known = true;
    const uint8_t local[4] = {127, 0, 0, 1};
    const uint8_t remote[4] = {127, 0, 0, 2};
    c.tuple.local = IpAddress::V4(role == Role::kServer ? remote : local);
    c.tuple.remote = IpAddress::V4(role == Role::kServer ? local : remote);
    c.tuple.local_port = role == Role::kServer ? server_port : 40000;
    c.tuple.remote_port = role == Role::kServer ? 40000 : server_port;
    dispatcher_.OnConnectionOpened(c);
    uint64_t pos[2] = {0, 0};
    for (size_t i = 0; i < conv.size(); ++i) {
      const Chunk& ch = conv[i];
      // A server receives what the client sends.
      const bool egress = ch.from_client == (role != Role::kServer);
      const Direction dir = egress ? Direction::kEgress : Direction::kIngress;
      std::vector<std::string_view> pieces{ch.bytes};
      if (split && split->first == i && split->second > 0 && split->second < ch.bytes.size())
        pieces = {std::string_view(ch.bytes).substr(0, split->second), std::string_view(ch.bytes).substr(split->second)};
      for (std::string_view p : pieces) {
        ts_ += 1000;
        ChunkMeta meta{ts_, ts_ - 500, 42, 0, pos[static_cast<int>(dir)]};
        dispatcher_.OnStreamData(c, dir, meta.pos, {reinterpret_cast<const uint8_t*>(p.data()), p.size()}, meta);
        pos[static_cast<int>(dir)] += p.size();
      }
    }
    if (close) {
      ts_ += 1000;
      c.last_activity_ns = ts_;
      dispatcher_.OnConnectionClosed(c, CloseReason::kSyscall);
    }
  }

  uint16_t server_port = 5432;  // the database's port in the connections' tuples
  // The next Run's connection: TLS plaintext; the same id as the last Run's (as the connection
  // table restarts a connection whose clear text turned to TLS).
  bool tls = false;
  bool same_connection = false;

  MetricsRegistry& metrics() { return metrics_; }
  ProtocolDispatcher& dispatcher() { return dispatcher_; }
  uint64_t Counter(const std::string& name, const Labels& labels) { return metrics_.GetCounter(name, labels).Value(); }
  // threadline_parse_failures_total of `protocol`, all reasons.
  uint64_t ParseFailures(const std::string& protocol) {
    uint64_t n = 0;
    for (size_t i = 0; i < db::kFailureCount; ++i)
      n += Counter("threadline_parse_failures_total",
                   {{"protocol", protocol}, {"reason", std::string(db::ToString(static_cast<db::Failure>(i)))}});
    return n;
  }

 private:
  static DispatcherConfig Config(const ProtocolOptions& protocols) {
    DispatcherConfig c;
    c.protocols = protocols;
    return c;
  }
  MetricsRegistry metrics_;
  ProtocolDispatcher dispatcher_;
  uint64_t ts_ = 1'000'000;
  uint32_t conns_ = 0;
};

// One client connection fed by hand, chunk by chunk, with gaps where bytes were never captured
// (for tests that lose bytes in the middle of a conversation).
class LiveConnection {
 public:
  explicit LiveConnection(RecordSink& sink) : dispatcher_(DispatcherConfig{}, sink, metrics_) {
    conn_.id = ConnId{9, 4, 1};
    conn_.role = Role::kClient;
    dispatcher_.OnConnectionOpened(conn_);
  }
  void Client(std::string_view bytes) { Feed(Direction::kEgress, bytes); }
  void Server(std::string_view bytes) { Feed(Direction::kIngress, bytes); }
  void ServerGap(uint64_t len) {
    const ChunkMeta m = Next(Direction::kIngress);
    dispatcher_.OnStreamGap(conn_, Direction::kIngress, m.pos, len, GapReason::kNotCaptured, m);
    pos_[static_cast<int>(Direction::kIngress)] += len;
  }
  MetricsRegistry& metrics() { return metrics_; }

 private:
  ChunkMeta Next(Direction d) {
    ts_ += 10;
    return ChunkMeta{ts_, ts_ - 5, 1, 0, pos_[static_cast<int>(d)]};
  }
  void Feed(Direction d, std::string_view b) {
    const ChunkMeta m = Next(d);
    dispatcher_.OnStreamData(conn_, d, m.pos, {reinterpret_cast<const uint8_t*>(b.data()), b.size()}, m);
    pos_[static_cast<int>(d)] += b.size();
  }

  MetricsRegistry metrics_;
  ProtocolDispatcher dispatcher_;
  ConnectionInfo conn_;
  uint64_t pos_[2] = {0, 0};
  uint64_t ts_ = 1000;
};

// Names, errors and attributes of the records: equal for every split point of a conversation.
inline std::string Summary(const std::vector<Described>& records) {
  std::ostringstream out;
  for (const Described& d : records) {
    out << d.name << (d.error ? " ERROR" : "") << " @" << d.request_first_pos;
    for (const auto& [k, v] : d.attrs) out << " " << k << "=" << v;
    out << "\n";
  }
  return out.str();
}

// Every recorded conversation of `recording`, fed with each chunk cut in two at every byte (the
// first chunk only from `first_chunk_from`: detection needs that much, and a client writes its
// first message whole), gives the spans it gives fed whole, and those are not none.
inline void ExpectSameSpansAtEverySplit(const std::string& recording, size_t first_chunk_from) {
  for (const Conversation& conv : LoadRecording(recording)) {
    DescribingSink whole;
    Feeder(whole).Run(conv);
    const std::string expected = Summary(whole.records);
    ASSERT_FALSE(whole.records.empty()) << recording;
    for (size_t i = 0; i < conv.size(); ++i) {
      for (size_t k = i == 0 ? first_chunk_from : 1; k < conv[i].bytes.size(); ++k) {
        DescribingSink split;
        Feeder(split).Run(conv, Role::kClient, std::make_pair(i, k));
        ASSERT_EQ(Summary(split.records), expected) << recording << " chunk " << i << " split at " << k;
      }
    }
  }
}

}  // namespace threadline::db_test
