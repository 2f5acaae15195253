// Decoding of raw kernel records into typed events: every field of every event type, and
// malformed records rejected without reading past their end.
#include "agent/ingest/decoder.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace threadline {
namespace {

struct Recorder : EventSink {
  std::optional<ConnOpenEvent> open;
  std::string open_comm;
  std::optional<ConnCloseEvent> close;
  std::optional<DataEvent> data;
  std::string data_payload;
  std::optional<ConnStateEvent> state;
  std::optional<ProcExecEvent> exec;
  std::string exec_file;
  std::optional<ProcExitEvent> exit;
  std::optional<ProcForkEvent> fork;

  void OnConnOpen(const ConnOpenEvent& e) override { open = e; open_comm = std::string(e.comm); }
  void OnConnClose(const ConnCloseEvent& e) override { close = e; }
  void OnData(const DataEvent& e) override {
    data = e;
    data_payload.assign(e.payload.begin(), e.payload.end());
  }
  void OnConnState(const ConnStateEvent& e) override { state = e; }
  void OnProcExec(const ProcExecEvent& e) override { exec = e; exec_file = std::string(e.filename); }
  void OnProcExit(const ProcExitEvent& e) override { exit = e; }
  void OnProcFork(const ProcForkEvent& e) override { fork = e; }
};

template <typename T>
std::vector<uint8_t> Bytes(const T& v, std::string_view tail = {}) {
  std::vector<uint8_t> out(sizeof(T) + tail.size());
  std::memcpy(out.data(), &v, sizeof(T));
  std::memcpy(out.data() + sizeof(T), tail.data(), tail.size());
  return out;
}

tl_conn_event MakeConnEvent(uint32_t type) {
  tl_conn_event e{};
  e.hdr = {type, 1, 123456789, 42, 43};
  e.id = {42, 7, 99};
  e.tuple.family = AF_INET;
  inet_pton(AF_INET, "10.0.0.1", e.tuple.saddr);
  inet_pton(AF_INET, "10.0.0.2", e.tuple.daddr);
  e.tuple.sport = 43210;
  e.tuple.dport = 80;
  e.bytes[0] = 11;
  e.bytes[1] = 22;
  e.role = TL_ROLE_CLIENT;
  e.source = TL_SRC_CONNECT;
  e.close_reason = TL_CLOSE_SYSCALL;
  std::strcpy(e.comm, "curl");
  return e;
}

// IPv4 is formatted by hand (it runs for several attributes of every span): the same text as
// inet_ntop for every value of each byte, and IPv6 still through inet_ntop.
TEST(IpAddressTest, FormatsLikeInetNtop) {
  auto expect_same = [](const IpAddress& a) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(a.is_v4 ? AF_INET : AF_INET6, a.bytes.data(), buf, sizeof(buf));
    EXPECT_EQ(a.ToString(), buf);
  };
  IpAddress a;
  for (unsigned v = 0; v < 256; ++v) {
    for (int pos = 0; pos < 4; ++pos) {
      a.bytes = {};
      a.bytes[pos] = static_cast<uint8_t>(v);
      a.bytes[(pos + 1) % 4] = static_cast<uint8_t>(255 - v);
      expect_same(a);
    }
  }
  a.bytes = {127, 0, 0, 1};
  EXPECT_EQ(a.ToString(), "127.0.0.1");
  a.bytes = {255, 255, 255, 255};
  EXPECT_EQ(a.ToString(), "255.255.255.255");
  a.is_v4 = false;
  a.bytes = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  EXPECT_EQ(a.ToString(), "2001:db8::1");
  expect_same(a);
}

TEST(DecoderTest, ConnOpenAllFields) {
  Recorder r;
  auto raw = Bytes(MakeConnEvent(TL_EV_CONN_OPEN));
  ASSERT_EQ(DecodeEvent(raw, r), DecodeStatus::kOk);
  ASSERT_TRUE(r.open);
  EXPECT_EQ(r.open->id, (ConnId{42, 7, 99}));
  EXPECT_EQ(r.open->ts_ns, 123456789u);
  EXPECT_EQ(r.open->tid, 43u);
  EXPECT_EQ(r.open->role, Role::kClient);
  EXPECT_EQ(r.open->source, ConnSource::kConnect);
  EXPECT_FALSE(r.open->ignored);
  EXPECT_EQ(r.open_comm, "curl");
  EXPECT_EQ(r.open->tuple.ToString(), "10.0.0.1:43210 -> 10.0.0.2:80");
}

TEST(DecoderTest, ConnCloseCarriesByteCountsAndReason) {
  Recorder r;
  auto e = MakeConnEvent(TL_EV_CONN_CLOSE);
  e.close_reason = TL_CLOSE_FD_REPLACED;
  ASSERT_EQ(DecodeEvent(Bytes(e), r), DecodeStatus::kOk);
  ASSERT_TRUE(r.close);
  EXPECT_EQ(r.close->bytes[0], 11u);
  EXPECT_EQ(r.close->bytes[1], 22u);
  EXPECT_EQ(r.close->reason, CloseReason::kFdReplaced);
}

TEST(DecoderTest, Ipv6AndV4MappedAddresses) {
  Recorder r;
  auto e = MakeConnEvent(TL_EV_CONN_OPEN);
  e.tuple.family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:127.0.0.1", e.tuple.saddr);
  inet_pton(AF_INET6, "2001:db8::1", e.tuple.daddr);
  ASSERT_EQ(DecodeEvent(Bytes(e), r), DecodeStatus::kOk);
  EXPECT_TRUE(r.open->tuple.local.is_v4);
  EXPECT_FALSE(r.open->tuple.remote.is_v4);
  EXPECT_EQ(r.open->tuple.ToString(), "127.0.0.1:43210 -> [2001:db8::1]:80");
  EXPECT_EQ(r.open->tuple.family, AF_INET6);
}

TEST(DecoderTest, DataWithPayload) {
  Recorder r;
  tl_data_event e{};
  e.hdr = {TL_EV_DATA, 0, 2000, 42, 44};
  e.id = {42, 7, 99};
  e.pos = 4096;
  e.enter_ts_ns = 1500;
  e.size = 100;
  e.captured = 5;
  e.direction = TL_DIR_INGRESS;
  e.syscall = TL_SYS_RECVMSG;
  e.role = TL_ROLE_SERVER;
  e.flags = TL_DATA_F_IOV_LIMIT;
  ASSERT_EQ(DecodeEvent(Bytes(e, "HELLO"), r), DecodeStatus::kOk);
  ASSERT_TRUE(r.data);
  EXPECT_EQ(r.data->pos, 4096u);
  EXPECT_EQ(r.data->size, 100u);
  EXPECT_EQ(r.data->payload.size(), 5u);
  EXPECT_EQ(r.data_payload, "HELLO");
  EXPECT_EQ(r.data->direction, Direction::kIngress);
  EXPECT_EQ(r.data->role, Role::kServer);
  EXPECT_EQ(r.data->syscall, TL_SYS_RECVMSG);
  EXPECT_EQ(r.data->flags, TL_DATA_F_IOV_LIMIT);
  EXPECT_EQ(r.data->ts_ns, 2000u);
  EXPECT_EQ(r.data->enter_ts_ns, 1500u);
  EXPECT_EQ(r.data->tid, 44u);
  EXPECT_EQ(SyscallName(r.data->syscall), "recvmsg");
}

TEST(DecoderTest, DataClaimingMoreCapturedBytesThanPresentIsRejected) {
  Recorder r;
  tl_data_event e{};
  e.hdr.type = TL_EV_DATA;
  e.size = 100;
  e.captured = 50;
  EXPECT_EQ(DecodeEvent(Bytes(e, "short"), r), DecodeStatus::kBadLength);
  e.captured = 200;  // more captured than moved
  EXPECT_EQ(DecodeEvent(Bytes(e, std::string(200, 'x')), r), DecodeStatus::kBadLength);
  EXPECT_FALSE(r.data);
}

TEST(DecoderTest, ShortAndUnknownRecords) {
  Recorder r;
  std::vector<uint8_t> tiny(10, 0);
  EXPECT_EQ(DecodeEvent(tiny, r), DecodeStatus::kTooShort);
  tl_event_header h{999, 0, 0, 0, 0};
  EXPECT_EQ(DecodeEvent(Bytes(h), r), DecodeStatus::kUnknownType);
  h.type = TL_EV_CONN_OPEN;  // header only, body missing
  EXPECT_EQ(DecodeEvent(Bytes(h), r), DecodeStatus::kTooShort);
  EXPECT_FALSE(r.open);
}

TEST(DecoderTest, ProcessEvents) {
  Recorder r;
  tl_proc_event e{};
  e.hdr = {TL_EV_PROC_EXEC, 0, 5, 300, 300};
  e.ppid = 1;
  std::strcpy(e.comm, "python3");
  std::strcpy(e.filename, "/usr/bin/python3");
  ASSERT_EQ(DecodeEvent(Bytes(e), r), DecodeStatus::kOk);
  ASSERT_TRUE(r.exec);
  EXPECT_EQ(r.exec->pid, 300u);
  EXPECT_EQ(r.exec->ppid, 1u);
  EXPECT_EQ(r.exec_file, "/usr/bin/python3");

  e.hdr.type = TL_EV_PROC_EXIT;
  e.exit_code = 256;
  ASSERT_EQ(DecodeEvent(Bytes(e), r), DecodeStatus::kOk);
  ASSERT_TRUE(r.exit);
  EXPECT_EQ(r.exit->exit_code, 256);

  e.hdr.type = TL_EV_PROC_FORK;
  e.hdr.tgid = 301;
  e.ppid = 300;
  ASSERT_EQ(DecodeEvent(Bytes(e), r), DecodeStatus::kOk);
  ASSERT_TRUE(r.fork);
  EXPECT_EQ(r.fork->pid, 301u);
  EXPECT_EQ(r.fork->ppid, 300u);
}

TEST(DecoderTest, StateEvent) {
  Recorder r;
  tl_state_event e{};
  e.hdr = {TL_EV_CONN_STATE, 0, 5, 42, 0};
  e.id = {42, 3, 8};
  e.old_state = 1;
  e.new_state = 7;
  ASSERT_EQ(DecodeEvent(Bytes(e), r), DecodeStatus::kOk);
  ASSERT_TRUE(r.state);
  EXPECT_EQ(r.state->id, (ConnId{42, 3, 8}));
  EXPECT_EQ(r.state->new_state, 7);
}

TEST(DecoderTest, ConnIdStringAndHashDistinguishGenerations) {
  ConnId a{10, 3, 1}, b{10, 3, 2};
  EXPECT_EQ(a.ToString(), "10/3#1");
  EXPECT_NE(a, b);
  EXPECT_NE(ConnIdHash{}(a), ConnIdHash{}(b));
}

}  // namespace
}  // namespace threadline
