// ConnectionTable fed synthetic kernel events: lifecycle, per-direction reassembly, fd reuse,
// process exit, bounded memory (LRU, idle, held bytes) and the counters that report them.
#include "agent/conn/connection_table.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/unit/conn_test_util.h"

namespace threadline {
namespace {

using conn_test::EventGenerator;
using conn_test::FakeResolver;
using conn_test::kMs;
using conn_test::kSec;
using conn_test::MakeTuple;
using conn_test::MockClock;
using conn_test::RecordingConsumer;
using Rec = RecordingConsumer::Record;
using Strings = std::vector<std::string>;
constexpr Direction kOut = Direction::kEgress;
constexpr Direction kIn = Direction::kIngress;
constexpr uint64_t kCharge = StreamReassembler::kHeldSegmentCharge;

class ConnTableTest : public ::testing::Test {
 protected:
  void Make(ConnectionTableConfig config = {}, SocketResolver* resolver = nullptr) {
    table_ = std::make_unique<ConnectionTable>(config, out_, metrics_, resolver);
  }
  uint64_t Count(const std::string& name, const Labels& labels = {}) {
    return metrics_.GetCounter("threadline_conn_" + name + "_total", labels).Value();
  }
  int64_t GaugeValue(const std::string& name) {
    return metrics_.GetGauge("threadline_conn_" + name).Value();
  }

  MockClock clock_;
  EventGenerator gen_{clock_};
  MetricsRegistry metrics_;
  RecordingConsumer out_;
  std::unique_ptr<ConnectionTable> table_;
};

TEST_F(ConnTableTest, OpenDataCloseDeliversBothDirectionsInOrder) {
  Make();
  const ConnId id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(id, Role::kClient));
  table_->OnData(gen_.Data(id, kOut, "GET / HTTP/1.1\r\n\r\n"));
  table_->OnData(gen_.Data(id, kIn, "HTTP/1.1 200 OK\r\n"));
  table_->OnData(gen_.Data(id, kIn, "\r\n"));
  EXPECT_EQ(table_->size(), 1u);
  EXPECT_EQ(GaugeValue("tracked"), 1);
  table_->OnConnClose(gen_.Close(id));

  EXPECT_EQ(out_.Lifecycle(), (Strings{"opened 100/5#1", "closed 100/5#1 close"}));
  EXPECT_EQ(out_.Stream(id, kOut), "0:GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(out_.Stream(id, kIn), "0:HTTP/1.1 200 OK\r\n 17:\r\n");
  const Rec* opened = out_.Opened(id);
  ASSERT_NE(opened, nullptr);
  EXPECT_TRUE(opened->info.tuple_known);
  EXPECT_EQ(opened->info.tuple, MakeTuple(40005, 80));
  EXPECT_EQ(opened->info.role, Role::kClient);
  EXPECT_EQ(opened->info.source, ConnSource::kConnect);
  EXPECT_EQ(opened->info.comm, "curl");
  ASSERT_EQ(out_.records.back().kind, Rec::kClosed);
  EXPECT_EQ(out_.records.back().info.bytes[0], 18u);
  EXPECT_EQ(out_.records.back().info.bytes[1], 19u);
  EXPECT_EQ(table_->size(), 0u);
  EXPECT_EQ(Count("opened", {{"source", "connect"}}), 1u);
  EXPECT_EQ(Count("closed", {{"reason", "close"}}), 1u);
  EXPECT_EQ(GaugeValue("tracked"), 0);
  EXPECT_EQ(out_.contract_violations, 0);
}

TEST_F(ConnTableTest, ReorderedEventsAreDeliveredByteExactInStreamOrder) {
  Make();
  const ConnId id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(id));
  DataEvent a = gen_.Data(id, kOut, "POST /x ");
  DataEvent b = gen_.Data(id, kOut, "HTTP/1.1\r\n");
  DataEvent c = gen_.Data(id, kOut, "\r\n");
  table_->OnData(c);
  table_->OnData(b);
  EXPECT_EQ(out_.Stream(id, kOut), "");
  EXPECT_EQ(table_->Find(id)->held_charge[0], 2 * kCharge + 12);
  EXPECT_EQ(GaugeValue("held_bytes"), static_cast<int64_t>(2 * kCharge + 12));
  table_->OnData(a);
  EXPECT_EQ(out_.Stream(id, kOut), "0:POST /x  8:HTTP/1.1\r\n 18:\r\n");
  EXPECT_EQ(GaugeValue("held_bytes"), 0);
  EXPECT_EQ(Count("gap_bytes", {{"reason", "lost"}}), 0u);
}

TEST_F(ConnTableTest, LostEventBecomesAGapWhenTickPassesTheReorderWindow) {
  Make();
  const ConnId id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(id));
  table_->OnData(gen_.Data(id, kIn, "HTTP/1.1 200 OK\r\n"));
  gen_.Data(id, kIn, "Content-Length: 2\r\n");  // never delivered
  const DataEvent tail = gen_.Data(id, kIn, "\r\nok");
  table_->OnData(tail);
  table_->Tick(tail.ts_ns + 50 * kMs);
  EXPECT_EQ(out_.Stream(id, kIn), "0:HTTP/1.1 200 OK\r\n");
  table_->Tick(tail.ts_ns + 51 * kMs);
  EXPECT_EQ(out_.Stream(id, kIn), "0:HTTP/1.1 200 OK\r\n 17:[lost 19] 36:\r\nok");
  EXPECT_EQ(Count("gap_bytes", {{"reason", "lost"}}), 19u);
  EXPECT_EQ(table_->Find(id)->next_pos[1], 40u);
}

TEST_F(ConnTableTest, TruncatedCaptureBecomesANotCapturedGap) {
  Make();
  const ConnId id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(id));
  table_->OnData(gen_.Data(id, kIn, "HTTP/1.1 200 OK", /*size=*/4096));
  table_->OnData(gen_.Data(id, kIn, "next"));
  EXPECT_EQ(out_.Stream(id, kIn), "0:HTTP/1.1 200 OK 15:[not-captured 4081] 4096:next");
  EXPECT_EQ(Count("gap_bytes", {{"reason", "not-captured"}}), 4081u);
}

TEST_F(ConnTableTest, FaultedReadIsAGapNeverData) {
  Make();
  const ConnId id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(id));
  DataEvent ev = gen_.Data(id, kOut, std::string(6, '\0'));
  ev.flags = TL_DATA_F_READ_FAULT;
  table_->OnData(ev);
  EXPECT_EQ(out_.Stream(id, kOut), "0:[not-captured 6]");
}

TEST_F(ConnTableTest, DuplicateEventIsCountedAndNotDeliveredTwice) {
  Make();
  const ConnId id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(id));
  const DataEvent ev = gen_.Data(id, kOut, "hello");
  table_->OnData(ev);
  table_->OnData(ev);
  EXPECT_EQ(out_.Stream(id, kOut), "0:hello");
  EXPECT_EQ(Count("duplicate_bytes"), 5u);
}

TEST_F(ConnTableTest, CloseReportsTrailingBytesWhoseEventsWereLost) {
  Make();
  const ConnId id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(id));
  table_->OnData(gen_.Data(id, kOut, "abc"));
  gen_.Data(id, kOut, "defg");  // lost
  table_->OnConnClose(gen_.Close(id));
  EXPECT_EQ(out_.Stream(id, kOut), "0:abc 3:[lost 4]");
  EXPECT_EQ(out_.Stream(id, kIn), "");
  EXPECT_EQ(out_.records.back().kind, Rec::kClosed);  // the gap comes before the close
  EXPECT_EQ(out_.contract_violations, 0);
}

TEST_F(ConnTableTest, FdReuseMakesTwoConnectionsAndNeverMixesTheirBytes) {
  Make();
  const ConnId old_id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(old_id));
  table_->OnData(gen_.Data(old_id, kOut, "old request"));
  const DataEvent old_late = gen_.Data(old_id, kOut, " tail");
  const ConnId new_id = gen_.NewId(100, 5);  // close of the old socket lost, fd reused
  table_->OnConnOpen(gen_.Open(new_id));
  table_->OnData(gen_.Data(new_id, kOut, "new"));
  table_->OnData(old_late);  // stale: must not touch the new connection
  EXPECT_EQ(out_.Lifecycle(),
            (Strings{"opened 100/5#1", "closed 100/5#1 fd-replaced", "opened 100/5#2"}));
  EXPECT_EQ(out_.Stream(old_id, kOut), "0:old request");
  EXPECT_EQ(out_.Stream(new_id, kOut), "0:new");
  EXPECT_EQ(table_->size(), 1u);
  EXPECT_FALSE(table_->Find(old_id).has_value());
  ASSERT_TRUE(table_->Find(new_id).has_value());
  EXPECT_EQ(Count("closed", {{"reason", "fd-replaced"}}), 1u);
  EXPECT_EQ(Count("stale_events"), 1u);
  EXPECT_EQ(out_.contract_violations, 0);
}

TEST_F(ConnTableTest, DataWithANewerGenerationReplacesTheOldConnection) {
  Make();
  const ConnId old_id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(old_id));
  const ConnId new_id = gen_.NewId(100, 5);  // its open was lost
  table_->OnData(gen_.Data(new_id, kIn, "x"));
  EXPECT_EQ(out_.Lifecycle(),
            (Strings{"opened 100/5#1", "closed 100/5#1 fd-replaced", "opened 100/5#2"}));
  EXPECT_TRUE(table_->Find(new_id)->provisional);
  table_->OnConnOpen(gen_.Open(old_id));  // a stale open cannot bring the old one back
  EXPECT_EQ(table_->size(), 1u);
  EXPECT_EQ(Count("stale_events"), 1u);
}

TEST_F(ConnTableTest, ProcessExitClosesEveryConnectionOfThatProcessOnly) {
  Make();
  std::vector<ConnId> mine;
  for (int32_t fd : {3, 4, 9}) {
    mine.push_back(gen_.NewId(100, fd));
    table_->OnConnOpen(gen_.Open(mine.back()));
  }
  const ConnId other = gen_.NewId(200, 4);
  const ConnId neighbour = gen_.NewId(101, 3);
  table_->OnConnOpen(gen_.Open(other));
  table_->OnConnOpen(gen_.Open(neighbour));
  table_->OnData(gen_.Data(mine[1], kOut, "bye"));
  table_->OnProcExit(gen_.Exit(100));

  EXPECT_EQ(table_->size(), 2u);
  EXPECT_TRUE(table_->Find(other).has_value());
  EXPECT_TRUE(table_->Find(neighbour).has_value());
  Strings closes;
  for (const Rec& r : out_.records) {
    if (r.kind == Rec::kClosed) {
      closes.push_back(r.info.id.ToString() + " " + std::string(ToString(r.reason)));
    }
  }
  EXPECT_EQ(closes, (Strings{"100/3#1 process-exit", "100/4#2 process-exit",
                             "100/9#3 process-exit"}));
  EXPECT_EQ(out_.Stream(mine[1], kOut), "0:bye");
  EXPECT_EQ(Count("closed", {{"reason", "process-exit"}}), 3u);
}

TEST_F(ConnTableTest, FullTableEvictsTheLeastRecentlyActiveConnection) {
  ConnectionTableConfig config;
  config.max_connections = 3;
  Make(config);
  const ConnId a = gen_.NewId(100, 3), b = gen_.NewId(100, 4), c = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(a));
  table_->OnConnOpen(gen_.Open(b));
  table_->OnConnOpen(gen_.Open(c));
  table_->OnData(gen_.Data(a, kOut, "still here"));  // b is now the least recently active
  const ConnId d = gen_.NewId(100, 6);
  table_->OnConnOpen(gen_.Open(d));
  EXPECT_EQ(table_->size(), 3u);
  EXPECT_FALSE(table_->Find(b).has_value());
  EXPECT_TRUE(table_->Find(a).has_value());
  EXPECT_EQ(out_.Lifecycle()[3], "closed 100/4#2 evicted");
  EXPECT_EQ(Count("evicted", {{"reason", "lru"}}), 1u);
  EXPECT_EQ(Count("closed", {{"reason", "evicted"}}), 1u);

  Strings order;
  table_->ForEach([&](const ConnectionStatus& s) { order.push_back(s.info->id.ToString()); });
  EXPECT_EQ(order, (Strings{"100/6#4", "100/3#1", "100/5#3"}));
}

TEST_F(ConnTableTest, TickEvictsConnectionsIdleLongerThanTheTimeout) {
  ConnectionTableConfig config;
  config.idle_timeout_ns = 10 * kSec;
  Make(config);
  const ConnId quiet = gen_.NewId(100, 3);
  const uint64_t t0 = clock_.now();
  table_->OnConnOpen(gen_.Open(quiet));  // stamped t0
  clock_.Advance(8 * kSec);
  const ConnId busy = gen_.NewId(100, 4);
  table_->OnConnOpen(gen_.Open(busy));
  table_->Tick(t0 + 10 * kSec);
  EXPECT_EQ(table_->size(), 2u);
  table_->Tick(t0 + 11 * kSec);
  EXPECT_EQ(table_->size(), 1u);
  EXPECT_TRUE(table_->Find(busy).has_value());
  EXPECT_EQ(out_.Lifecycle().back(), "closed 100/3#1 evicted");
  EXPECT_EQ(Count("evicted", {{"reason", "idle"}}), 1u);
  EXPECT_EQ(Count("evicted", {{"reason", "lru"}}), 0u);
}

TEST_F(ConnTableTest, GlobalHeldBudgetIsSharedAcrossConnections) {
  ConnectionTableConfig config;
  config.max_total_held_bytes = 2 * (kCharge + 4);
  Make(config);
  const ConnId a = gen_.NewId(100, 3), b = gen_.NewId(100, 4);
  table_->OnConnOpen(gen_.Open(a));
  table_->OnConnOpen(gen_.Open(b));
  gen_.Data(a, kIn, "lost");
  table_->OnData(gen_.Data(a, kIn, "aaaa"));
  gen_.Data(b, kIn, "lost");
  table_->OnData(gen_.Data(b, kIn, "bbbb"));
  EXPECT_EQ(table_->held_charge(), 2 * (kCharge + 4));
  table_->OnData(gen_.Data(b, kIn, "cccc"));  // over budget: b gives up its own hole
  EXPECT_EQ(out_.Stream(b, kIn), "0:[buffer-limit 4] 4:bbbb 8:cccc");
  EXPECT_EQ(out_.Stream(a, kIn), "");
  EXPECT_EQ(Count("hold_limit_hits", {{"limit", "total-bytes"}}), 1u);
  EXPECT_EQ(Count("gap_bytes", {{"reason", "buffer-limit"}}), 4u);
  EXPECT_EQ(GaugeValue("held_bytes"), static_cast<int64_t>(kCharge + 4));
  table_->OnConnClose(gen_.Close(a));
  EXPECT_EQ(out_.Stream(a, kIn), "0:[lost 4] 4:aaaa");
  EXPECT_EQ(table_->held_charge(), 0u);
  EXPECT_EQ(GaugeValue("held_bytes"), 0);
}

TEST_F(ConnTableTest, DataOfAnUnknownConnectionCreatesAProvisionalEntry) {
  FakeResolver resolver;
  resolver.tuples[{100, 7}] = MakeTuple(8080, 51000);
  resolver.listening.insert({100, 8080});
  Make({}, &resolver);
  const ConnId id = gen_.NewId(100, 7);
  gen_.SkipAhead(id, kIn, 5000);  // the connection predates the agent
  table_->OnData(gen_.Data(id, kIn, "GET /health"));
  table_->OnData(gen_.Data(id, kIn, " HTTP/1.1"));

  const Rec* opened = out_.Opened(id);
  ASSERT_NE(opened, nullptr);
  EXPECT_TRUE(opened->info.tuple_known);
  EXPECT_EQ(opened->info.tuple, MakeTuple(8080, 51000));
  EXPECT_EQ(opened->info.role, Role::kServer);
  EXPECT_EQ(opened->info.source, ConnSource::kFirstIo);
  EXPECT_EQ(out_.Stream(id, kIn), "5000:GET /health 5011: HTTP/1.1");
  EXPECT_TRUE(table_->Find(id)->provisional);
  EXPECT_EQ(Count("provisional"), 1u);
  EXPECT_EQ(Count("opened", {{"source", "first-io"}}), 1u);
  EXPECT_EQ(resolver.tuple_calls, 1);
  EXPECT_EQ(resolver.role_calls, 1);
  EXPECT_EQ(out_.contract_violations, 0);
}

TEST_F(ConnTableTest, ProvisionalEntryWithoutAResolverHasNoTuple) {
  Make();
  const ConnId id = gen_.NewId(100, 7);
  DataEvent ev = gen_.Data(id, kOut, "x");
  ev.role = Role::kClient;
  table_->OnData(ev);
  const Rec* opened = out_.Opened(id);
  ASSERT_NE(opened, nullptr);
  EXPECT_FALSE(opened->info.tuple_known);
  EXPECT_EQ(opened->info.role, Role::kClient);
}

TEST_F(ConnTableTest, LateOpenCompletesTheProvisionalEntryWithoutReopening) {
  Make();
  const ConnId id = gen_.NewId(100, 7);
  const ConnOpenEvent open = gen_.Open(id, Role::kServer, ConnSource::kAccept);
  table_->OnData(gen_.Data(id, kIn, "GET /"));
  table_->OnConnOpen(open);
  EXPECT_EQ(out_.Lifecycle(), (Strings{"opened 100/7#1"}));
  const auto status = table_->Find(id);
  ASSERT_TRUE(status.has_value());
  EXPECT_FALSE(status->provisional);
  EXPECT_TRUE(status->info->tuple_known);
  EXPECT_EQ(status->info->role, Role::kServer);
  EXPECT_EQ(status->info->source, ConnSource::kAccept);
  EXPECT_EQ(status->info->open_ts_ns, open.ts_ns);
}

TEST_F(ConnTableTest, DataRacingItsCloseDoesNotResurrectTheConnection) {
  Make();
  const ConnId id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(id));
  const DataEvent late = gen_.Data(id, kIn, "late");
  table_->OnConnClose(gen_.Close(id));
  table_->OnData(late);
  EXPECT_EQ(table_->size(), 0u);
  EXPECT_EQ(out_.Lifecycle(), (Strings{"opened 100/5#1", "closed 100/5#1 close"}));
  EXPECT_EQ(Count("late_data_events"), 1u);
  EXPECT_EQ(Count("provisional"), 0u);
}

TEST_F(ConnTableTest, OpenWithUnknownRoleAsksTheResolver) {
  FakeResolver resolver;
  resolver.listening.insert({100, 40005});
  Make({}, &resolver);
  const ConnId id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(id, Role::kUnknown, ConnSource::kFirstIo));
  EXPECT_EQ(table_->Find(id)->info->role, Role::kServer);
  EXPECT_EQ(resolver.role_calls, 1);
  table_->OnConnOpen(gen_.Open(gen_.NewId(100, 6), Role::kClient));
  EXPECT_EQ(resolver.role_calls, 1);  // a known role is not second-guessed
}

TEST_F(ConnTableTest, OpensOutsideThePortSelectionAreNotTracked) {
  Make();
  ConnOpenEvent ev = gen_.Open(gen_.NewId(100, 5));
  ev.ignored = true;
  table_->OnConnOpen(ev);
  EXPECT_EQ(table_->size(), 0u);
  EXPECT_TRUE(out_.records.empty());
  EXPECT_EQ(Count("ignored_opens"), 1u);
}

TEST_F(ConnTableTest, TcpStateIsKeptAndCloseOfUnknownIsCounted) {
  Make();
  const ConnId id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(id));
  table_->OnConnState(gen_.State(id, 1, 8));  // ESTABLISHED -> CLOSE_WAIT
  EXPECT_EQ(table_->Find(id)->tcp_state, 8);
  table_->OnConnClose(gen_.Close(gen_.NewId(300, 1)));
  EXPECT_EQ(Count("close_unmatched"), 1u);
  EXPECT_EQ(table_->size(), 1u);
}

TEST_F(ConnTableTest, CloseAllFlushesHeldDataAndClosesEverything) {
  Make();
  const ConnId id = gen_.NewId(100, 5);
  table_->OnConnOpen(gen_.Open(id));
  gen_.Data(id, kOut, "ab");
  table_->OnData(gen_.Data(id, kOut, "cd"));
  table_->CloseAll(CloseReason::kEvicted);
  EXPECT_EQ(out_.Stream(id, kOut), "0:[lost 2] 2:cd");
  EXPECT_EQ(out_.Lifecycle().back(), "closed 100/5#1 evicted");
  EXPECT_EQ(table_->size(), 0u);
  EXPECT_EQ(table_->held_charge(), 0u);
}

}  // namespace
}  // namespace threadline
