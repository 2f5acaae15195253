// The real capture programs against real syscalls in this process and in children: every
// send-family x receive-family pair, IPv4/IPv6/v4-mapped, large payloads, fd reuse, sendfile,
// MSG_PEEK, processes exiting mid-connection, connections older than the agent.
#include <fcntl.h>
#include <sys/syscall.h>
#include <netinet/in.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "agent/discovery/process_info.h"
#include "capture_harness.h"
#include "socket_util.h"

namespace threadline::testing {
namespace {

enum class Send { kWrite, kSend, kSendto, kSendmsg, kWritev, kSendmmsg };
enum class Recv { kRead, kRecv, kRecvfrom, kRecvmsg, kReadv, kRecvmmsg };

const char* Name(Send s) {
  switch (s) {
    case Send::kWrite: return "write";
    case Send::kSend: return "send";
    case Send::kSendto: return "sendto";
    case Send::kSendmsg: return "sendmsg";
    case Send::kWritev: return "writev";
    case Send::kSendmmsg: return "sendmmsg";
  }
  return "?";
}
const char* Name(Recv r) {
  switch (r) {
    case Recv::kRead: return "read";
    case Recv::kRecv: return "recv";
    case Recv::kRecvfrom: return "recvfrom";
    case Recv::kRecvmsg: return "recvmsg";
    case Recv::kReadv: return "readv";
    case Recv::kRecvmmsg: return "recvmmsg";
  }
  return "?";
}
// send() is sendto() and recv() is recvfrom() in the kernel's syscall table on x86_64.
uint8_t Syscall(Send s) {
  switch (s) {
    case Send::kWrite: return TL_SYS_WRITE;
    case Send::kSend:
    case Send::kSendto: return TL_SYS_SENDTO;
    case Send::kSendmsg: return TL_SYS_SENDMSG;
    case Send::kWritev: return TL_SYS_WRITEV;
    case Send::kSendmmsg: return TL_SYS_SENDMMSG;
  }
  return 0;
}
uint8_t Syscall(Recv r) {
  switch (r) {
    case Recv::kRead: return TL_SYS_READ;
    case Recv::kRecv:
    case Recv::kRecvfrom: return TL_SYS_RECVFROM;
    case Recv::kRecvmsg: return TL_SYS_RECVMSG;
    case Recv::kReadv: return TL_SYS_READV;
    case Recv::kRecvmmsg: return TL_SYS_RECVMMSG;
  }
  return 0;
}

// Sends `msg` in one syscall of the given family (two iovecs / two messages where the family
// allows it, to exercise the gathering paths). Returns the bytes sent.
ssize_t DoSend(Send how, int fd, const std::string& msg) {
  size_t half = msg.size() / 2;
  iovec iov[2] = {{const_cast<char*>(msg.data()), half},
                  {const_cast<char*>(msg.data()) + half, msg.size() - half}};
  switch (how) {
    case Send::kWrite: return write(fd, msg.data(), msg.size());
    case Send::kSend: return send(fd, msg.data(), msg.size(), 0);
    case Send::kSendto: return sendto(fd, msg.data(), msg.size(), 0, nullptr, 0);
    case Send::kSendmsg: {
      msghdr m{};
      m.msg_iov = iov;
      m.msg_iovlen = 2;
      return sendmsg(fd, &m, 0);
    }
    case Send::kWritev: return writev(fd, iov, 2);
    case Send::kSendmmsg: {
      mmsghdr mm[2]{};
      mm[0].msg_hdr.msg_iov = &iov[0];
      mm[0].msg_hdr.msg_iovlen = 1;
      mm[1].msg_hdr.msg_iov = &iov[1];
      mm[1].msg_hdr.msg_iovlen = 1;
      int n = sendmmsg(fd, mm, 2, 0);
      return n == 2 ? static_cast<ssize_t>(mm[0].msg_len + mm[1].msg_len) : -1;
    }
  }
  return -1;
}

// Receives exactly `n` bytes with the given family (looping on short reads).
std::string DoRecv(Recv how, int fd, size_t n) {
  std::string out;
  char buf[8192];
  while (out.size() < n) {
    size_t want = std::min(sizeof(buf), n - out.size());
    ssize_t got = -1;
    iovec iov[2] = {{buf, want / 2}, {buf + want / 2, want - want / 2}};
    switch (how) {
      case Recv::kRead: got = read(fd, buf, want); break;
      case Recv::kRecv: got = recv(fd, buf, want, 0); break;
      case Recv::kRecvfrom: got = recvfrom(fd, buf, want, 0, nullptr, nullptr); break;
      case Recv::kRecvmsg: {
        msghdr m{};
        m.msg_iov = iov;
        m.msg_iovlen = 2;
        got = recvmsg(fd, &m, 0);
        break;
      }
      case Recv::kReadv: got = readv(fd, iov, 2); break;
      case Recv::kRecvmmsg: {
        mmsghdr mm[1]{};
        mm[0].msg_hdr.msg_iov = iov;
        mm[0].msg_hdr.msg_iovlen = 2;
        int m = recvmmsg(fd, mm, 1, 0, nullptr);
        got = m == 1 ? mm[0].msg_len : -1;
        break;
      }
    }
    if (got <= 0) break;
    // The two-iovec receivers fill buf contiguously, so buf[0..got) is the data either way.
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

// Non-empty (its /proc state line) when thread `tid` of this process sleeps inside syscall `nr`:
// /proc/self/task/<tid>/syscall starts with the number of the syscall a blocked thread is in
// ("running" otherwise), and stat's state is S (interruptible sleep).
std::string BlockedInSyscall(pid_t tid, long nr) {
  const std::string task = "/proc/self/task/" + std::to_string(tid);
  std::ifstream syscall_file(task + "/syscall");
  long current = -1;
  if (!(syscall_file >> current) || current != nr) return "";
  std::ifstream stat_file(task + "/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  const size_t close_paren = stat.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= stat.size() || stat[close_paren + 2] != 'S') return "";
  return "syscall " + std::to_string(current) + ", state S";
}

struct PairCase {
  Send send;
  Recv recv;
};

class SyscallPairTest : public CaptureTest, public ::testing::WithParamInterface<PairCase> {};

TEST_P(SyscallPairTest, BytesPositionsTuplesAndRoles) {
  Load();
  if (HasFatalFailure()) return;
  const auto [send_how, recv_how] = GetParam();
  SocketPair p;
  MakePair(p, Family::kV4);
  const std::string request = std::string("GET /") + Name(send_how) + "/" + Name(recv_how) +
                              " HTTP/1.1\r\nHost: test\r\n\r\n" + std::string(300, 'a');
  ASSERT_EQ(DoSend(send_how, p.client, request), static_cast<ssize_t>(request.size()));
  ASSERT_EQ(DoRecv(recv_how, p.server, request.size()), request);
  // And the reply the other way, to check both directions of both ends.
  const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  ASSERT_EQ(DoSend(send_how, p.server, reply), static_cast<ssize_t>(reply.size()));
  ASSERT_EQ(DoRecv(recv_how, p.client, reply.size()), reply);
  const int client_fd = p.client, server_fd = p.server;
  close(p.client);
  close(p.server);
  p.client = p.server = -1;
  Drain();

  const ConnOpenEvent* c = rec_.OpenFor(self(), client_fd);
  const ConnOpenEvent* s = rec_.OpenFor(self(), server_fd);
  ASSERT_NE(c, nullptr) << "no open event for the client socket";
  ASSERT_NE(s, nullptr) << "no open event for the accepted socket";
  EXPECT_EQ(c->role, Role::kClient);
  EXPECT_EQ(c->source, ConnSource::kConnect);
  EXPECT_EQ(s->role, Role::kServer);
  EXPECT_EQ(s->source, ConnSource::kAccept);
  EXPECT_NE(c->id.gen, s->id.gen);
  EXPECT_EQ(c->tuple.ToString(), "127.0.0.1:" + std::to_string(p.client_port) + " -> 127.0.0.1:" +
                                      std::to_string(p.server_port));
  EXPECT_EQ(s->tuple.ToString(), "127.0.0.1:" + std::to_string(p.server_port) + " -> 127.0.0.1:" +
                                      std::to_string(p.client_port));
  EXPECT_EQ(c->tid, static_cast<uint32_t>(gettid()));

  EXPECT_EQ(rec_.StreamFor(c->id, Direction::kEgress), request);
  EXPECT_EQ(rec_.StreamFor(s->id, Direction::kIngress), request);
  EXPECT_EQ(rec_.StreamFor(s->id, Direction::kEgress), reply);
  EXPECT_EQ(rec_.StreamFor(c->id, Direction::kIngress), reply);
  for (const auto& d : rec_.DataFor(c->id, Direction::kEgress)) {
    EXPECT_EQ(d.ev.syscall, Syscall(send_how));
    EXPECT_EQ(d.ev.size, d.payload.size());
    EXPECT_EQ(d.ev.role, Role::kClient);
    EXPECT_EQ(d.ev.tid, static_cast<uint32_t>(gettid()));
    EXPECT_LE(d.ev.enter_ts_ns, d.ev.ts_ns);
  }
  for (const auto& d : rec_.DataFor(s->id, Direction::kIngress)) {
    EXPECT_EQ(d.ev.syscall, Syscall(recv_how));
    EXPECT_EQ(d.ev.role, Role::kServer);
  }
  const ConnCloseEvent* cc = rec_.CloseFor(c->id);
  ASSERT_NE(cc, nullptr);
  EXPECT_EQ(cc->reason, CloseReason::kSyscall);
  EXPECT_EQ(cc->bytes[TL_DIR_EGRESS], request.size());
  EXPECT_EQ(cc->bytes[TL_DIR_INGRESS], reply.size());
  ASSERT_NE(rec_.CloseFor(s->id), nullptr);
}

std::vector<PairCase> AllPairs() {
  std::vector<PairCase> out;
  for (Send s : {Send::kWrite, Send::kSend, Send::kSendto, Send::kSendmsg, Send::kWritev, Send::kSendmmsg})
    for (Recv r : {Recv::kRead, Recv::kRecv, Recv::kRecvfrom, Recv::kRecvmsg, Recv::kReadv, Recv::kRecvmmsg})
      out.push_back({s, r});
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, SyscallPairTest, ::testing::ValuesIn(AllPairs()),
                         [](const auto& info) {
                           return std::string(Name(info.param.send)) + "_" + Name(info.param.recv);
                         });

class FamilyTest : public CaptureTest, public ::testing::WithParamInterface<Family> {};

TEST_P(FamilyTest, TupleNormalisedAndDataCaptured) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p, GetParam(), /*use_accept4=*/false);
  ASSERT_EQ(write(p.client, "ping", 4), 4);
  ASSERT_EQ(DoRecv(Recv::kRead, p.server, 4), "ping");
  Drain();
  const ConnOpenEvent* c = rec_.OpenFor(self(), p.client);
  const ConnOpenEvent* s = rec_.OpenFor(self(), p.server);
  ASSERT_NE(c, nullptr);
  ASSERT_NE(s, nullptr);
  const std::string host = GetParam() == Family::kV6 ? "[::1]" : "127.0.0.1";
  EXPECT_EQ(c->tuple.ToString(), host + ":" + std::to_string(p.client_port) + " -> " + host + ":" +
                                      std::to_string(p.server_port));
  EXPECT_EQ(c->tuple.family, GetParam() == Family::kV4 ? AF_INET : AF_INET6);
  EXPECT_EQ(s->source, ConnSource::kAccept);
  EXPECT_EQ(rec_.StreamFor(s->id, Direction::kIngress), "ping");
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyTest,
                         ::testing::Values(Family::kV4, Family::kV6, Family::kV4Mapped),
                         [](const auto& info) {
                           switch (info.param) {
                             case Family::kV4: return std::string("IPv4");
                             case Family::kV6: return std::string("IPv6");
                             default: return std::string("IPv4MappedIPv6");
                           }
                         });

TEST_F(CaptureTest, OneMebibyteWritePrefixCapturedFullSizeRight) {
  CaptureConfig config;
  config.capture_bytes = 4096;
  Load(config);
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);
  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('A' + i % 26);
  std::string received;
  std::thread reader([&] { received = DoRecv(Recv::kRead, p.server, big.size()); });
  size_t sent = 0;
  std::vector<size_t> write_sizes;  // what each write() returned: one data event each
  while (sent < big.size()) {
    ssize_t n = write(p.client, big.data() + sent, big.size() - sent);
    ASSERT_GT(n, 0);
    sent += static_cast<size_t>(n);
    write_sizes.push_back(static_cast<size_t>(n));
  }
  reader.join();
  ASSERT_EQ(received, big);
  Drain();
  const ConnOpenEvent* c = rec_.OpenFor(self(), p.client);
  ASSERT_NE(c, nullptr);
  auto sends = rec_.DataFor(c->id, Direction::kEgress);
  // One event per write(), each with the full size that write moved (a blocking write of 1 MiB
  // may return short: then several), positions contiguous, a 4096-byte prefix captured.
  ASSERT_EQ(sends.size(), write_sizes.size());
  uint64_t expect_pos = 0;
  for (size_t i = 0; i < sends.size(); ++i) {
    const auto& d = sends[i];
    EXPECT_EQ(d.ev.pos, expect_pos) << "positions must be contiguous";
    EXPECT_EQ(d.ev.size, write_sizes[i]) << "write " << i;
    EXPECT_EQ(d.payload.size(), std::min<size_t>(write_sizes[i], 4096u)) << "write " << i;
    EXPECT_EQ(d.payload, big.substr(d.ev.pos, d.payload.size()));
    expect_pos += d.ev.size;
  }
  EXPECT_EQ(expect_pos, big.size());
  // Reads on the other side add up to the same total.
  const ConnOpenEvent* s = rec_.OpenFor(self(), p.server);
  ASSERT_NE(s, nullptr);
  uint64_t total = 0;
  for (const auto& d : rec_.DataFor(s->id, Direction::kIngress)) total += d.ev.size;
  EXPECT_EQ(total, big.size());
}

// A send's event carries the time its syscall was entered, stashed by the entry program for the
// exit (a client span starts there): in task storage where the kernel has it, else in the
// pid_tgid hash. A write that blocks until the reader wakes 200 ms later must report an entry
// time at least that far before its exit; a stash lost between the two would give the exit
// time (the arguments are then rebuilt from the registers, with the exit as the entry).
class SendEntryTimeTest : public CaptureTest, public ::testing::WithParamInterface<bool> {};

TEST_P(SendEntryTimeTest, BlockedWriteKeepsItsEntryTime) {
  CaptureConfig config;
  config.args_task_storage = GetParam();
  Load(config);
  if (HasFatalFailure()) return;
  std::string why;
  const bool kernel_has_task_storage = TaskStorageForSyscallArgs(&why);
  EXPECT_EQ(capture_->args_task_storage(), GetParam() && kernel_has_task_storage);
  if (GetParam() && InCi()) {
    EXPECT_TRUE(kernel_has_task_storage) << why;
  }
  SocketPair p;
  MakePair(p);
  int small = 4096;
  ASSERT_EQ(setsockopt(p.client, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  ASSERT_EQ(setsockopt(p.server, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
  const std::string big(256 << 10, 'q');  // far more than both buffers: the write blocks
  std::string received;
  std::thread reader([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    received = DoRecv(Recv::kRead, p.server, big.size());
  });
  const ssize_t n = write(p.client, big.data(), big.size());
  ASSERT_GT(n, 0);
  shutdown(p.client, SHUT_WR);
  reader.join();
  Drain();
  const ConnOpenEvent* c = rec_.OpenFor(self(), p.client);
  ASSERT_NE(c, nullptr);
  auto sends = rec_.DataFor(c->id, Direction::kEgress);
  ASSERT_FALSE(sends.empty());
  const auto& first = sends.front();
  EXPECT_EQ(first.ev.size, static_cast<uint64_t>(n));
  EXPECT_GE(first.ev.ts_ns - first.ev.enter_ts_ns, 150'000'000u)
      << "the write blocked ~200 ms: its entry time must be from its entry";
}

INSTANTIATE_TEST_SUITE_P(ArgsStash, SendEntryTimeTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("TaskStorage") : std::string("Hash");
                         });

// The ring consumer maps the ring's data area once (not twice, as libbpf does, which doubled
// the agent's RSS for it): records that wrap past the end of the area are copied into one
// piece. A 64 KiB ring carrying ~1 MiB of records of every size wraps dozens of times; every
// byte must arrive, in order, with no hole.
TEST_F(CaptureTest, RecordsThatWrapAroundTheRingArriveWhole) {
  CaptureConfig config;
  config.ring_buffer_bytes = 64 * 1024;
  Load(config);
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);
  std::string sent;
  for (int i = 0; i < 3000; ++i) {
    std::string msg(1 + (i * 37) % 509, static_cast<char>('a' + i % 26));
    ASSERT_EQ(write(p.client, msg.data(), msg.size()), static_cast<ssize_t>(msg.size()));
    ASSERT_EQ(DoRecv(Recv::kRead, p.server, msg.size()), msg);
    sent += msg;
    if (i % 16 == 0) {
      ASSERT_TRUE(ring_->Poll(0).ok());  // well before the small ring fills
    }
  }
  Drain();
  const ConnOpenEvent* c = rec_.OpenFor(self(), p.client);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(rec_.StreamFor(c->id, Direction::kEgress), sent);
  const ConnOpenEvent* s = rec_.OpenFor(self(), p.server);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(rec_.StreamFor(s->id, Direction::kIngress), sent);
  EXPECT_GT(ring_->wrapped_records(), 10u);
}

// Writers that put every frame in its own iovec (Node's HTTP/2 answers many streams with one
// writev of hundreds of small entries): every entry is captured until the capture bound, not
// only the first few, on writev, readv, sendmsg and each message of sendmmsg.
TEST_F(CaptureTest, EveryIovecEntryIsCapturedUpToTheCaptureBound) {
  CaptureConfig config;
  config.capture_bytes = 4096;
  Load(config);
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);
  // 300 entries of 9..17 bytes (an HTTP/2 frame header and a small payload each): ~3.9 KiB.
  std::vector<std::string> parts;
  std::string small_total;
  for (int i = 0; i < 300; ++i) {
    parts.push_back(std::string(9 + i % 9, static_cast<char>('a' + i % 26)));
    small_total += parts.back();
  }
  ASSERT_LT(small_total.size(), 4096u);
  std::vector<iovec> iov;
  for (auto& s : parts) iov.push_back({s.data(), s.size()});
  ASSERT_EQ(writev(p.client, iov.data(), static_cast<int>(iov.size())),
            static_cast<ssize_t>(small_total.size()));
  // Received with readv into 200 entries of 20 bytes (the last ones stay empty).
  std::string in(200 * 20, '\0');
  std::vector<iovec> in_iov;
  for (int i = 0; i < 200; ++i) in_iov.push_back({in.data() + i * 20, 20});
  size_t got = 0;
  while (got < small_total.size()) {  // a stream socket may hand it over in pieces
    std::vector<iovec> rest;
    size_t skip = got;
    for (const auto& v : in_iov) {
      if (skip >= v.iov_len) { skip -= v.iov_len; continue; }
      rest.push_back({static_cast<char*>(v.iov_base) + skip, v.iov_len - skip});
      skip = 0;
    }
    ssize_t n = readv(p.server, rest.data(), static_cast<int>(rest.size()));
    ASSERT_GT(n, 0);
    got += static_cast<size_t>(n);
  }
  ASSERT_EQ(in.substr(0, got), small_total);
  // Past the bound: 400 entries of 25 bytes (10000), of which the first 4096 bytes are captured.
  std::string big;
  for (int i = 0; i < 400; ++i) big += std::string(25, static_cast<char>('A' + i % 26));
  std::vector<iovec> big_iov;
  for (int i = 0; i < 400; ++i) big_iov.push_back({big.data() + i * 25, 25});
  msghdr m{};
  m.msg_iov = big_iov.data();
  m.msg_iovlen = big_iov.size();
  ASSERT_EQ(sendmsg(p.client, &m, 0), static_cast<ssize_t>(big.size()));
  ASSERT_EQ(DoRecv(Recv::kRead, p.server, big.size()), big);
  // sendmmsg: two messages of 40 entries each (the old walk stopped at 4 per message).
  std::string mm_total;
  std::vector<std::string> mm_parts;
  for (int i = 0; i < 80; ++i) mm_parts.push_back(std::string(11, static_cast<char>('0' + i % 10)));
  std::vector<iovec> mm_iov;
  for (auto& s : mm_parts) {
    mm_iov.push_back({s.data(), s.size()});
    mm_total += s;
  }
  mmsghdr mm[2]{};
  mm[0].msg_hdr.msg_iov = &mm_iov[0];
  mm[0].msg_hdr.msg_iovlen = 40;
  mm[1].msg_hdr.msg_iov = &mm_iov[40];
  mm[1].msg_hdr.msg_iovlen = 40;
  ASSERT_EQ(sendmmsg(p.client, mm, 2, 0), 2);
  ASSERT_EQ(DoRecv(Recv::kRead, p.server, mm_total.size()), mm_total);
  Drain();

  const ConnOpenEvent* c = rec_.OpenFor(self(), p.client);
  const ConnOpenEvent* s = rec_.OpenFor(self(), p.server);
  ASSERT_NE(c, nullptr);
  ASSERT_NE(s, nullptr);
  const auto sends = rec_.DataFor(c->id, Direction::kEgress);
  ASSERT_EQ(sends.size(), 4u) << "writev, sendmsg, and one event per sendmmsg message";
  EXPECT_EQ(sends[0].payload, small_total) << "all 300 writev entries";
  EXPECT_EQ(sends[0].ev.flags & TL_DATA_F_IOV_LIMIT, 0);
  EXPECT_EQ(sends[1].ev.size, big.size());
  EXPECT_EQ(sends[1].payload, big.substr(0, 4096)) << "sendmsg entries up to the capture bound";
  EXPECT_EQ(sends[1].ev.flags & TL_DATA_F_IOV_LIMIT, 0);
  EXPECT_EQ(sends[2].payload, mm_total.substr(0, 440));
  EXPECT_EQ(sends[3].payload, mm_total.substr(440));
  // readv on the other side: each read whole, at its place in what writev sent.
  size_t readv_bytes = 0;
  for (const auto& d : rec_.DataFor(s->id, Direction::kIngress)) {
    if (d.ev.syscall != TL_SYS_READV) continue;
    EXPECT_EQ(d.payload, small_total.substr(d.ev.pos, d.ev.size));
    readv_bytes += d.payload.size();
  }
  EXPECT_EQ(readv_bytes, small_total.size());
}

TEST_F(CaptureTest, FdReuseGivesANewConnectionId) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair first;
  MakePair(first);
  ASSERT_EQ(write(first.client, "one", 3), 3);
  const int fd = first.client;
  close(first.client);
  first.client = -1;
  // The lowest free fd is reused by the next socket.
  int again = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(first.server_port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(again, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(write(again, "two", 3), 3);
  Drain();
  std::vector<ConnOpenEvent> on_fd;
  for (const auto& o : rec_.opens)
    if (o.id.tgid == self() && o.id.fd == fd) on_fd.push_back(o);
  ASSERT_EQ(again, fd) << "test premise: the fd number was reused";
  ASSERT_EQ(on_fd.size(), 2u);
  EXPECT_NE(on_fd[0].id.gen, on_fd[1].id.gen);
  EXPECT_EQ(rec_.StreamFor(on_fd[0].id, Direction::kEgress), "one");
  EXPECT_EQ(rec_.StreamFor(on_fd[1].id, Direction::kEgress), "two");
  ASSERT_NE(rec_.CloseFor(on_fd[0].id), nullptr);
  EXPECT_EQ(rec_.CloseFor(on_fd[0].id)->reason, CloseReason::kSyscall);
  EXPECT_EQ(rec_.CloseFor(on_fd[1].id), nullptr);
  close(again);
}

// TCP state changes are reported while the fd is open only: after close() the connection is
// gone for userspace, so the closing side's FIN_WAIT1/FIN_WAIT2/CLOSE and the other side's
// LAST_ACK/CLOSE would be ring records nobody reads (a connection per request made 4 of them).
TEST_F(CaptureTest, NoStateChangesAfterTheFdIsClosed) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);
  ASSERT_EQ(write(p.client, "x", 1), 1);
  char c;
  ASSERT_EQ(read(p.server, &c, 1), 1);
  Drain();
  ASSERT_NE(rec_.OpenFor(self(), p.client), nullptr);
  ASSERT_NE(rec_.OpenFor(self(), p.server), nullptr);
  const ConnId client = rec_.OpenFor(self(), p.client)->id;
  const ConnId server = rec_.OpenFor(self(), p.server)->id;
  close(p.server);  // the server closes first, as nginx does with Connection: close
  p.server = -1;
  ASSERT_EQ(read(p.client, &c, 1), 0);  // the FIN arrived: the client is in CLOSE_WAIT
  Drain();
  close(p.client);
  p.client = -1;
  Drain();
  ASSERT_NE(rec_.CloseFor(client), nullptr);
  ASSERT_NE(rec_.CloseFor(server), nullptr);
  constexpr int kTcpClose = 7, kTcpCloseWait = 8;
  std::vector<int> client_states;
  for (const ConnStateEvent& e : rec_.states) {
    EXPECT_NE(e.id, server) << "state " << e.new_state << " of the server socket after its close";
    if (e.id == client) client_states.push_back(e.new_state);
  }
  // Its last change while open; LAST_ACK and CLOSE came after its close.
  ASSERT_FALSE(client_states.empty());
  EXPECT_EQ(client_states.back(), kTcpCloseWait);
  for (int s : client_states) EXPECT_NE(s, kTcpClose);
}

TEST_F(CaptureTest, Dup2OverATrackedSocketEndsIt) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair a, b;
  MakePair(a);
  MakePair(b);
  ASSERT_EQ(write(a.client, "x", 1), 1);
  const ConnId before = [&] { Drain(); return rec_.OpenFor(self(), a.client)->id; }();
  ASSERT_EQ(dup2(b.client, a.client), a.client);
  ASSERT_EQ(write(a.client, "y", 1), 1);  // now goes to b's socket
  Drain();
  const ConnCloseEvent* closed = rec_.CloseFor(before);
  ASSERT_NE(closed, nullptr);
  EXPECT_EQ(closed->reason, CloseReason::kFdReplaced);
  const ConnOpenEvent* now = rec_.OpenFor(self(), a.client);
  ASSERT_NE(now, nullptr);
  EXPECT_NE(now->id.gen, before.gen);
  EXPECT_EQ(now->source, ConnSource::kFirstIo);
}

TEST_F(CaptureTest, ConnectionOpenedBeforeTheAgentIsPickedUpOnItsNextIo) {
  SocketPair p;
  MakePair(p);  // before Load(): no connect/accept was seen
  Load();
  if (HasFatalFailure()) return;
  ASSERT_EQ(write(p.client, "late", 4), 4);
  ASSERT_EQ(DoRecv(Recv::kRead, p.server, 4), "late");
  Drain();
  const ConnOpenEvent* c = rec_.OpenFor(self(), p.client);
  const ConnOpenEvent* s = rec_.OpenFor(self(), p.server);
  ASSERT_NE(c, nullptr);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(c->source, ConnSource::kFirstIo);
  EXPECT_EQ(c->role, Role::kUnknown);  // resolved in userspace from listening sockets
  EXPECT_EQ(c->tuple.local_port, p.client_port);
  EXPECT_EQ(c->tuple.remote_port, p.server_port);
  EXPECT_EQ(s->tuple.local_port, p.server_port);
  EXPECT_EQ(rec_.StreamFor(c->id, Direction::kEgress), "late");
  EXPECT_EQ(rec_.StreamFor(s->id, Direction::kIngress), "late");
}

// A thread already blocked in recvfrom() when the hooks attach: its entry was never seen, yet
// the bytes it returns are captured (arguments rebuilt from the saved user registers).
TEST_F(CaptureTest, ReadInFlightWhenTheAgentAttachesIsCaptured) {
  SocketPair p;
  MakePair(p);
  std::string got;
  std::atomic<pid_t> reader_tid{0};
  std::thread reader([&] {
    reader_tid = gettid();
    got = DoRecv(Recv::kRecvfrom, p.server, 9);
  });
  // The premise, confirmed rather than slept on: the reader sleeps inside recvfrom.
  std::string blocked_in;
  for (int i = 0; i < 500 && blocked_in.empty(); ++i) {
    if (reader_tid != 0) blocked_in = BlockedInSyscall(reader_tid, SYS_recvfrom);
    if (blocked_in.empty()) usleep(10 * 1000);
  }
  if (blocked_in.empty()) {
    (void)!write(p.client, "in-flight", 9);
    reader.join();
    FAIL() << "test premise: the reader never blocked in recvfrom";
  }
  Load();
  if (HasFatalFailure()) {
    (void)!write(p.client, "in-flight", 9);
    reader.join();
    return;
  }
  ASSERT_EQ(write(p.client, "in-flight", 9), 9);
  reader.join();
  ASSERT_EQ(got, "in-flight");
  Drain();
  const ConnOpenEvent* s = rec_.OpenFor(self(), p.server);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->source, ConnSource::kFirstIo);
  EXPECT_EQ(s->tuple.local_port, p.server_port);
  EXPECT_EQ(rec_.StreamFor(s->id, Direction::kIngress), "in-flight");
}

TEST_F(CaptureTest, SendfileCountsBytesWithoutPayload) {
  Load();
  if (HasFatalFailure()) return;
  char path[] = "/tmp/threadline-sendfile-XXXXXX";
  int file = mkstemp(path);
  ASSERT_GE(file, 0);
  unlink(path);
  std::string content(10000, 'f');
  ASSERT_EQ(write(file, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  lseek(file, 0, SEEK_SET);
  SocketPair p;
  MakePair(p);
  ASSERT_EQ(write(p.client, "HDR", 3), 3);
  off_t off = 0;
  ASSERT_EQ(sendfile(p.client, file, &off, content.size()), static_cast<ssize_t>(content.size()));
  close(file);
  ASSERT_EQ(DoRecv(Recv::kRead, p.server, 3 + content.size()).size(), 3 + content.size());
  Drain();
  const ConnOpenEvent* c = rec_.OpenFor(self(), p.client);
  ASSERT_NE(c, nullptr);
  auto sends = rec_.DataFor(c->id, Direction::kEgress);
  ASSERT_EQ(sends.size(), 2u);
  EXPECT_EQ(sends[1].ev.syscall, TL_SYS_SENDFILE);
  EXPECT_EQ(sends[1].ev.pos, 3u);
  EXPECT_EQ(sends[1].ev.size, content.size());
  EXPECT_TRUE(sends[1].payload.empty());
  EXPECT_TRUE(sends[1].ev.flags & TL_DATA_F_NO_PAYLOAD);
}

TEST_F(CaptureTest, PeekedBytesAreReportedOnce) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);
  ASSERT_EQ(write(p.client, "peekaboo", 8), 8);
  char buf[16];
  ASSERT_EQ(recv(p.server, buf, sizeof(buf), MSG_PEEK), 8);
  ASSERT_EQ(read(p.server, buf, sizeof(buf)), 8);
  Drain();
  const ConnOpenEvent* s = rec_.OpenFor(self(), p.server);
  ASSERT_NE(s, nullptr);
  auto reads = rec_.DataFor(s->id, Direction::kIngress);
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].ev.syscall, TL_SYS_READ);
  EXPECT_EQ(reads[0].payload, "peekaboo");
}

TEST_F(CaptureTest, NonBlockingConnectReportsTheTuple) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);  // for the listener
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(p.server_port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ASSERT_TRUE(rc == 0 || errno == EINPROGRESS);
  Drain();
  const ConnOpenEvent* c = rec_.OpenFor(self(), fd);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->role, Role::kClient);
  EXPECT_EQ(c->tuple.local_port, LocalPort(fd));
  EXPECT_EQ(c->tuple.remote_port, p.server_port);
  close(fd);
}

TEST_F(CaptureTest, ChildExitingMidConnectionIsReported) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);  // listener for the child
  pid_t child = fork();
  if (child == 0) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(p.server_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0)
      (void)!write(fd, "GET /half", 9);  // half a request, then die without close()
    _exit(3);
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  Drain();
  const uint32_t cpid = static_cast<uint32_t>(child);
  const ConnOpenEvent* open = nullptr;
  for (const auto& o : rec_.opens)
    if (o.id.tgid == cpid) open = &o;
  ASSERT_NE(open, nullptr) << "the forked child inherits the selection";
  EXPECT_EQ(open->role, Role::kClient);
  EXPECT_EQ(rec_.StreamFor(open->id, Direction::kEgress), "GET /half");
  bool forked = false, exited = false;
  for (const auto& f : rec_.forks) forked |= f.pid == cpid && f.ppid == self();
  for (const auto& e : rec_.exits)
    if (e.pid == cpid) {
      exited = true;
      EXPECT_EQ(e.exit_code, 3 << 8);
    }
  EXPECT_TRUE(forked);
  EXPECT_TRUE(exited);
}

TEST_F(CaptureTest, PortFilterKeepsOtherConnectionsQuiet) {
  SocketPair wanted, other;
  MakePair(wanted);
  MakePair(other);
  CaptureConfig config;
  config.ports = {wanted.server_port};
  Load(config);
  if (HasFatalFailure()) return;
  ASSERT_EQ(write(wanted.client, "in", 2), 2);
  ASSERT_EQ(write(other.client, "out", 3), 3);
  Drain();
  const ConnOpenEvent* w = rec_.OpenFor(self(), wanted.client);
  ASSERT_NE(w, nullptr);
  EXPECT_FALSE(w->ignored);
  EXPECT_EQ(rec_.StreamFor(w->id, Direction::kEgress), "in");
  const ConnOpenEvent* o = rec_.OpenFor(self(), other.client);
  ASSERT_NE(o, nullptr) << "ignored connections are announced once, for cleanup";
  EXPECT_TRUE(o->ignored);
  EXPECT_TRUE(rec_.DataFor(o->id, Direction::kEgress).empty());
}

TEST_F(CaptureTest, UnselectedProcessesProduceNothing) {
  Load();
  if (HasFatalFailure()) return;
  ASSERT_TRUE(capture_->Unselect(self()).ok());
  SocketPair p;
  MakePair(p);
  ASSERT_EQ(write(p.client, "quiet", 5), 5);
  Drain();
  EXPECT_EQ(rec_.OpenFor(self(), p.client), nullptr);
  EXPECT_TRUE(rec_.data.empty());
}

// Selection goes through a bitmap in front of the "selected" map (shared.bpf.h): Unselect clears
// this process's bit, Select sets it again, and the programs must follow both.
TEST_F(CaptureTest, ReselectedProcessIsTracedAgain) {
  Load();
  if (HasFatalFailure()) return;
  ASSERT_TRUE(capture_->Unselect(self()).ok());
  SocketPair quiet;
  MakePair(quiet);
  ASSERT_EQ(write(quiet.client, "quiet", 5), 5);
  ASSERT_TRUE(capture_->Select(self()).ok());
  SocketPair loud;
  MakePair(loud);
  ASSERT_EQ(write(loud.client, "loud", 4), 4);
  Drain();
  const ConnOpenEvent* o = rec_.OpenFor(self(), loud.client);
  ASSERT_NE(o, nullptr) << "selected again: traced again";
  EXPECT_EQ(rec_.StreamFor(o->id, Direction::kEgress), "loud");
  for (const auto& d : rec_.data)
    EXPECT_NE(d.payload, "quiet") << "written while unselected";
}

TEST_F(CaptureTest, NoDropsInNormalOperation) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(write(p.client, "0123456789", 10), 10);
  ASSERT_EQ(DoRecv(Recv::kRead, p.server, 2000).size(), 2000u);
  Drain();
  KernelDrops drops = capture_->ReadDrops();
  for (int r = 0; r < TL_DROP__COUNT; ++r) EXPECT_EQ(drops.Total(r), 0u) << DropReasonName(r);
  EXPECT_GE(metrics_.CounterTotal("threadline_kernel_events_received_total"), 202u);
}

// A second reader of the capture ring (libbpf's own, so the test sees whether epoll was woken:
// ring_buffer__poll returns 0 on a timeout without consuming). It shares the consumer position
// with the harness's reader, which is not polled while this one is used. Notes the exec events
// it reads: every exec on the machine wakes the reader, and other tests run beside this one.
struct RingReader {
  static int OnRecord(void* ctx, void* data, size_t size) {
    auto* self = static_cast<RingReader*>(ctx);
    if (size >= sizeof(tl_event_header)) {
      const auto* h = static_cast<const tl_event_header*>(data);
      if (h->type == TL_EV_PROC_EXEC) self->exec_tgids.push_back(h->tgid);
    }
    return 0;
  }
  explicit RingReader(int fd) : rb(ring_buffer__new(fd, &OnRecord, this, nullptr)) {}
  ~RingReader() { ring_buffer__free(rb); }
  ring_buffer* rb;
  std::vector<uint32_t> exec_tgids;
};

// The agent's default (CaptureConfig::batch_wakeups): events go into the ring without waking
// the reader until it holds 1/16 of its size; the reader finds them on its timer. With the
// kernel's default flags the small write below would wake it at once.
TEST_F(CaptureTest, ReaderIsWokenOnlyPastTheBatchThreshold) {
  CaptureConfig config;
  config.ring_buffer_bytes = 256u << 10;  // wake-ups from 16 KiB held
  Load(config);
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);
  Drain();  // the connection's open events
  RingReader reader(capture_->ring_buffer_fd());
  ASSERT_NE(reader.rb, nullptr);
  bool quiet = false;
  // Attempts: a build on the machine execs compilers many times a second.
  for (int attempt = 0; attempt < 30 && !quiet; ++attempt) {
    // Empty the ring first with a poll that finds it empty: epoll is level-triggered, so after
    // a wake-up (an exec elsewhere) the ring stays on epoll's ready list until a poll sees it
    // empty, and the next write would be reported at once although it woke nobody.
    while (ring_buffer__poll(reader.rb, 0) > 0) {
    }
    reader.exec_tgids.clear();
    ASSERT_EQ(write(p.client, "ping", 4), 4);
    const int n = ring_buffer__poll(reader.rb, 150);
    ASSERT_GE(n, 0);
    if (n == 0) {
      quiet = true;
      EXPECT_GE(ring_buffer__consume(reader.rb), 1) << "its data event is not in the ring";
    } else {
      // Woken: only an exec elsewhere on the machine may have done that; then try again.
      ASSERT_FALSE(reader.exec_tgids.empty()) << "a 4-byte write woke the reader";
    }
  }
  ASSERT_TRUE(quiet) << "every attempt was woken by some other process's exec";
  // Eight 4 KiB writes: each data event carries 4 KiB of payload, so the ring passes 16 KiB.
  const std::string chunk(4096, 'x');
  for (int i = 0; i < 8; ++i)
    ASSERT_EQ(write(p.client, chunk.data(), chunk.size()), static_cast<ssize_t>(chunk.size()));
  EXPECT_GE(ring_buffer__poll(reader.rb, 3000), 4) << "a ring past its threshold did not wake the reader";
  ring_buffer__consume(reader.rb);
  Drain();
  EXPECT_EQ(capture_->ReadDrops().Total(TL_DROP_DATA_RING_FULL), 0u);
}

// Execs wake the reader at once even with batching (selection by executable and the uprobe
// attach wait for them: a 3 s poll that returns the child's exec within a second was woken),
// and carry what names a process that is gone before userspace reads /proc (a short-lived
// client): its start time as /proc/<pid>/stat counts it, the executable's name, and argv, cut
// at the event's bound. One test, one load of the programs.
TEST_F(CaptureTest, ExecWakesTheReaderAtOnceAndCarriesWhatNamesTheProcess) {
  Load();
  if (HasFatalFailure()) return;
  Drain();
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(go[1]);
    char c;
    (void)!read(go[0], &c, 1);  // exec only once the parent has read our start time
    // /usr/bin/env, not /bin/...: on merged-/usr systems /bin is a symlink, and the path passed
    // to exec would not be the one /proc/<pid>/exe shows.
    execl("/usr/bin/env", "env", "sleep", "1", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(go[0]);
  auto stat = ReadProcessInfo(static_cast<uint32_t>(child));
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(write(go[1], "x", 1), 1);
  close(go[1]);
  const RecordedExec* exec = nullptr;
  while (!exec && std::chrono::steady_clock::now() - start < std::chrono::seconds(1)) {
    ASSERT_TRUE(ring_->Poll(3000).ok());
    for (const auto& e : rec_.execs)
      if (e.pid == static_cast<uint32_t>(child) && e.exe_name == "env") exec = &e;
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_TRUE(stat.ok()) << stat.error().message;
  ASSERT_NE(exec, nullptr) << "the child's exec did not wake the reader within 1 s";
  EXPECT_EQ(exec->ppid, self());
  EXPECT_EQ(exec->filename, "/usr/bin/env");
  EXPECT_EQ(exec->args, std::string("env\0sleep\0" "1\0", 12));
  EXPECT_EQ(discovery::BootNsToClockTicks(exec->start_boottime_ns), stat->start_time_ticks);

  // An argv longer than the event holds is cut, never overflows: the first TL_ARGS_LEN - 1 bytes.
  const std::string long_arg(1000, 'a');
  pid_t second = fork();
  ASSERT_GE(second, 0);
  if (second == 0) {
    execl("/usr/bin/true", "true", long_arg.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  waitpid(second, nullptr, 0);
  Drain();
  exec = nullptr;
  for (const auto& e : rec_.execs)
    if (e.pid == static_cast<uint32_t>(second)) exec = &e;
  ASSERT_NE(exec, nullptr);
  EXPECT_EQ(exec->exe_name, "true");
  EXPECT_EQ(exec->args, std::string("true\0", 5) + long_arg.substr(0, TL_ARGS_LEN - 1 - 5));
}

TEST_F(CaptureTest, WithoutBatchingEveryEventWakesTheReader) {
  CaptureConfig config;
  config.batch_wakeups = false;
  Load(config);
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);
  Drain();
  RingReader reader(capture_->ring_buffer_fd());
  ASSERT_NE(reader.rb, nullptr);
  ASSERT_EQ(write(p.client, "ping", 4), 4);
  EXPECT_GE(ring_buffer__poll(reader.rb, 3000), 1) << "the kernel's default commit did not wake the reader";
}

}  // namespace
}  // namespace threadline::testing
