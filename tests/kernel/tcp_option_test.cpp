// Trace context in a TCP header option (bpf/tcp_option.bpf.c, bpf/capture/tcp_option.bpf.h):
// the real capture and tcp_option objects in this kernel, real loopback TCP. The client and
// server ends are both this process (selected), so each test sees both sides of the wire:
// the ids the sender's kernel chose for a request (TL_CTX_CLIENT) must arrive with exactly that
// request on the receiving end (TL_CTX_REMOTE at its stream position, and the server request's
// kernel ids continuing it), the bytes must be the bytes sent, and every case where no option
// could go out must be counted.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "agent/kernel/bpf_env.h"
#include "agent/kernel/tcp_option_program.h"
#include "capture_harness.h"
#include "socket_util.h"

namespace threadline::testing {
namespace {

std::string Request(const std::string& path, const std::string& body = "") {
  std::string r = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
                  std::to_string(body.size()) + "\r\n\r\n";
  return r + body;
}

void Bound(int fd) {  // a stalled read fails the test instead of hanging it
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    ASSERT_GT(n, 0) << std::strerror(errno);
    off += static_cast<size_t>(n);
  }
}

std::string ReadN(int fd, size_t n) {
  std::string out;
  std::vector<char> buf(65536);
  while (out.size() < n) {
    ssize_t got = ::read(fd, buf.data(), std::min(buf.size(), n - out.size()));
    if (got <= 0) break;
    out.append(buf.data(), static_cast<size_t>(got));
  }
  return out;
}

void NoDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// A loopback pair whose client end is set up by `before_connect` (MSS, MD5 keys, ...).
template <typename F>
void MakePairWith(SocketPair& p, F before_connect) {
  p.listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(p.listener, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(p.listener, 4), 0);
  p.server_port = LocalPort(p.listener);
  p.client = ::socket(AF_INET, SOCK_STREAM, 0);
  before_connect(p.listener, p.client);
  a.sin_port = htons(p.server_port);
  ASSERT_EQ(::connect(p.client, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
  p.server = ::accept(p.listener, nullptr, nullptr);
  ASSERT_GE(p.server, 0);
}

class TcpOptionTest : public CaptureTest {
 protected:
  void LoadWithOption() {
    Load();
    if (HasFatalFailure()) return;
    auto root = CgroupV2Root();
    ASSERT_TRUE(root) << "no cgroup v2 hierarchy";
    TcpOptionConfig config;
    config.trace_all = false;  // as the harness: only this process
    config.cgroup2_root = *root;
    auto program = TcpOptionProgram::Create(*capture_, config);
    ASSERT_TRUE(program.ok()) << program.error().message;
    option_ = std::move(program).value();
    option_->SetOn(true);
    before_ = option_->ReadStats();
  }

  // Counts since LoadWithOption.
  uint64_t Count(int stat) const { return option_->ReadStats()[stat] - before_[stat]; }

  std::vector<TraceCtxEvent> Contexts(uint8_t kind, int fd) const {
    std::vector<TraceCtxEvent> out;
    for (const auto& e : rec_.contexts)
      if (e.id.tgid == self() && e.id.fd == fd && e.kind == kind) out.push_back(e);
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.pos < b.pos; });
    return out;
  }

  // Every request the client sent (CLIENT contexts at `starts`) arrived on the server with its
  // ids (a REMOTE context whose range holds the same stream position, and a SERVER context
  // continuing it when the request is HTTP).
  void ExpectEachRequestContinued(const SocketPair& p, const std::vector<uint64_t>& starts,
                                  bool http = true) {
    auto client = Contexts(TL_CTX_CLIENT, p.client);
    auto remote = Contexts(TL_CTX_REMOTE, p.server);
    auto server = Contexts(TL_CTX_SERVER, p.server);
    ASSERT_EQ(client.size(), starts.size());
    ASSERT_EQ(remote.size(), starts.size()) << "options tied to a read";
    for (size_t i = 0; i < starts.size(); ++i) {
      SCOPED_TRACE("request " + std::to_string(i) + " at " + std::to_string(starts[i]));
      EXPECT_EQ(client[i].pos, starts[i]);
      EXPECT_TRUE(client[i].flags & TL_CTX_F_TCP_OPTION);
      EXPECT_FALSE(client[i].flags & TL_CTX_F_INJECTED);
      EXPECT_LE(remote[i].pos, starts[i]);
      EXPECT_GT(remote[i].pos + remote[i].range_len, starts[i]);
      EXPECT_EQ(remote[i].span_id, client[i].span_id);
      EXPECT_EQ(remote[i].trace_id, client[i].trace_id);
      EXPECT_EQ(remote[i].trace_flags, client[i].trace_flags);
      EXPECT_TRUE(remote[i].flags & TL_CTX_F_TCP_OPTION);
      if (!http) continue;
      auto s = std::find_if(server.begin(), server.end(), [&](const auto& e) { return e.pos == starts[i]; });
      ASSERT_NE(s, server.end()) << "no server ids for the request";
      EXPECT_EQ(s->flags & (TL_CTX_F_TCP_OPTION | TL_CTX_F_HAS_PARENT), TL_CTX_F_TCP_OPTION | TL_CTX_F_HAS_PARENT);
      EXPECT_EQ(s->trace_id, client[i].trace_id);
      EXPECT_EQ(s->parent_span_id, client[i].span_id);
    }
  }

  std::unique_ptr<TcpOptionProgram> option_;
  TcpOptionStats before_{};
};

TEST_F(TcpOptionTest, RequestsOnAKeepAliveConnectionEachCarryTheirContext) {
  LoadWithOption();
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);
  Bound(p.server);
  Bound(p.client);
  std::vector<uint64_t> starts;
  uint64_t pos = 0;
  for (int i = 0; i < 20; ++i) {
    const std::string req = Request("/k" + std::to_string(i), std::string(i * 10, 'b'));
    starts.push_back(pos);
    pos += req.size();
    WriteAll(p.client, req);
    ASSERT_EQ(ReadN(p.server, req.size()), req);
    const std::string resp = "HTTP/1.1 204 No Content\r\n\r\n";
    WriteAll(p.server, resp);
    ASSERT_EQ(ReadN(p.client, resp.size()), resp);
  }
  Drain();
  ExpectEachRequestContinued(p, starts);
  EXPECT_EQ(Count(TL_OPT_ARMED), 1u);
  EXPECT_EQ(Count(TL_OPT_STARTS), 20u);
  EXPECT_EQ(Count(TL_OPT_WRITTEN), 20u);
  EXPECT_EQ(Count(TL_OPT_READ), 20u);
  EXPECT_EQ(Count(TL_OPT_NO_ROOM), 0u);
}

TEST_F(TcpOptionTest, PipelinedRequestsWrittenSeparatelyEachCarryTheirContext) {
  LoadWithOption();
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);
  Bound(p.server);
  NoDelay(p.client);
  std::vector<uint64_t> starts;
  std::string all;
  for (int i = 0; i < 3; ++i) {
    const std::string req = Request("/p" + std::to_string(i));
    starts.push_back(all.size());
    all += req;
    WriteAll(p.client, req);  // no read in between: the method marks each start
  }
  ASSERT_EQ(ReadN(p.server, all.size()), all);
  Drain();
  auto client = Contexts(TL_CTX_CLIENT, p.client);
  ASSERT_EQ(client.size(), 3u);
  // Each went out in its own segment (TCP_NODELAY, an idle connection): each carried its option.
  EXPECT_EQ(Count(TL_OPT_WRITTEN), 3u);
  auto remote = Contexts(TL_CTX_REMOTE, p.server);
  ASSERT_EQ(remote.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_LE(remote[i].pos, starts[i]);
    EXPECT_GT(remote[i].pos + remote[i].range_len, starts[i]);
    EXPECT_EQ(remote[i].span_id, client[i].span_id) << i;
  }
}

TEST_F(TcpOptionTest, LargeBodiesSegmentRightAndOnlyTheirStartCarriesTheOption) {
  LoadWithOption();
  if (HasFatalFailure()) return;
  SocketPair p;
  // A small MSS: the 300 KB body leaves in hundreds of segments, and the one carrying the option
  // must still fit (the MSS calculation reserved its room).
  MakePairWith(p, [](int, int client) {
    int mss = 1200;
    ::setsockopt(client, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss));
  });
  if (HasFatalFailure()) return;
  Bound(p.server);
  Bound(p.client);
  std::string body(300 * 1024, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  const std::string big = Request("/big", body);
  const std::string small = Request("/after");
  std::string received;
  std::thread reader([&] { received = ReadN(p.server, big.size() + small.size()); });
  WriteAll(p.client, big);
  WriteAll(p.client, small);
  reader.join();
  ASSERT_EQ(received.size(), big.size() + small.size());
  EXPECT_TRUE(received == big + small) << "bytes changed on the way";
  Drain();
  auto client = Contexts(TL_CTX_CLIENT, p.client);
  ASSERT_EQ(client.size(), 2u) << "the second write starts a request (its method), the body does not";
  auto remote = Contexts(TL_CTX_REMOTE, p.server);
  ASSERT_EQ(remote.size(), 2u);
  EXPECT_EQ(remote[0].pos, 0u);
  EXPECT_EQ(remote[0].span_id, client[0].span_id);
  EXPECT_LE(remote[1].pos, big.size());
  EXPECT_GT(remote[1].pos + remote[1].range_len, big.size());
  EXPECT_EQ(remote[1].span_id, client[1].span_id);
  EXPECT_EQ(Count(TL_OPT_WRITTEN), 2u);
  EXPECT_EQ(Count(TL_OPT_NO_ROOM), 0u);
}

TEST_F(TcpOptionTest, AnyProtocolAWriteAfterAReadStartsARequest) {
  LoadWithOption();
  if (HasFatalFailure()) return;
  SocketPair p;
  MakePair(p);
  Bound(p.server);
  Bound(p.client);
  // A binary request/response protocol: no method, the direction decides.
  const std::string q1("\x01\x00\x05query", 8), q2("\x01\x00\x06query2", 9);
  WriteAll(p.client, q1);
  ASSERT_EQ(ReadN(p.server, q1.size()), q1);
  WriteAll(p.server, "ok");
  ASSERT_EQ(ReadN(p.client, 2), "ok");
  WriteAll(p.client, q2.substr(0, 4));  // one request in two writes: one start
  WriteAll(p.client, q2.substr(4));
  ASSERT_EQ(ReadN(p.server, q2.size()), q2);
  Drain();
  auto client = Contexts(TL_CTX_CLIENT, p.client);
  ASSERT_EQ(client.size(), 2u);
  EXPECT_EQ(client[1].pos, q1.size());
  auto remote = Contexts(TL_CTX_REMOTE, p.server);
  ASSERT_EQ(remote.size(), 2u);
  EXPECT_EQ(remote[1].span_id, client[1].span_id);
  // The receiving kernel took each as the start of a server request continuing the sender's.
  ExpectEachRequestContinued(p, {0, q1.size()}, /*http=*/true);
}

TEST_F(TcpOptionTest, NoRoomLeftByTcpMd5IsSkippedAndCounted) {
  LoadWithOption();
  if (HasFatalFailure()) return;
  // TCP-MD5 (RFC 2385) signs every segment with an 18-byte option: with timestamps, 8 of the 40
  // bytes remain, too few for the context. Both ends share the key.
  auto md5 = [](int fd) {
    tcp_md5sig sig{};
    auto* a = reinterpret_cast<sockaddr_in*>(&sig.tcpm_addr);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sig.tcpm_keylen = 16;
    std::memcpy(sig.tcpm_key, "threadline-md5-k", 16);
    return ::setsockopt(fd, IPPROTO_TCP, TCP_MD5SIG, &sig, sizeof(sig));
  };
  SocketPair p;
  MakePairWith(p, [&](int listener, int client) {
    ASSERT_EQ(md5(listener), 0) << std::strerror(errno);
    ASSERT_EQ(md5(client), 0) << std::strerror(errno);
  });
  if (HasFatalFailure()) return;
  Bound(p.server);
  const std::string req = Request("/md5", std::string(5000, 'm'));
  WriteAll(p.client, req);
  ASSERT_EQ(ReadN(p.server, req.size()), req) << "the connection must work as without the agent";
  Drain();
  EXPECT_EQ(Count(TL_OPT_STARTS), 1u);
  EXPECT_EQ(Count(TL_OPT_WRITTEN), 0u);
  EXPECT_GE(Count(TL_OPT_NO_ROOM), 1u);
  EXPECT_TRUE(Contexts(TL_CTX_REMOTE, p.server).empty());
  // The client span still has its kernel ids (its context just could not travel).
  EXPECT_EQ(Contexts(TL_CTX_CLIENT, p.client).size(), 1u);
}

TEST_F(TcpOptionTest, ConnectionsOfUntracedProcessesAreNeverArmed) {
  LoadWithOption();
  if (HasFatalFailure()) return;
  ASSERT_TRUE(capture_->Unselect(self()).ok());
  SocketPair p;
  MakePair(p);  // connect() by a process the agent does not trace
  ASSERT_TRUE(capture_->Select(self()).ok());
  Bound(p.server);
  const std::string req = Request("/untraced");
  WriteAll(p.client, req);
  ASSERT_EQ(ReadN(p.server, req.size()), req);
  Drain();
  EXPECT_EQ(Count(TL_OPT_ARMED), 0u);
  EXPECT_EQ(Count(TL_OPT_STARTS), 0u);
  EXPECT_EQ(Count(TL_OPT_WRITTEN), 0u);
  EXPECT_TRUE(Contexts(TL_CTX_REMOTE, p.server).empty());
}

// Two agents on one node both tracing the client (a restart overlapping the old agent): the
// kernel lets only one option of a kind on a segment, so exactly one agent writes it and the
// other counts why it did not; both derive the same ids for the request (ids__derive), so both
// agents' receiving sides read ids that are their own client span's.
TEST_F(TcpOptionTest, TwoAgentsTracingOneClientWriteOneOption) {
  LoadWithOption();
  if (HasFatalFailure()) return;
  CaptureConfig second_config;
  second_config.trace_all = false;
  auto second = CaptureProgram::Create(second_config);
  ASSERT_TRUE(second.ok()) << second.error().message;
  ASSERT_TRUE((*second)->Select(self()).ok());
  Recorder second_rec;
  auto second_ring = RingConsumer::Create((*second)->ring_buffer_fd(), second_rec, metrics_);
  ASSERT_TRUE(second_ring.ok());
  TcpOptionConfig config;
  config.trace_all = false;
  config.cgroup2_root = *CgroupV2Root();
  auto second_option = TcpOptionProgram::Create(**second, config);
  ASSERT_TRUE(second_option.ok()) << second_option.error().message;
  (*second_option)->SetOn(true);
  const TcpOptionStats second_before = (*second_option)->ReadStats();

  SocketPair p;
  MakePair(p);
  Bound(p.server);
  const std::string req = Request("/two");
  WriteAll(p.client, req);
  ASSERT_EQ(ReadN(p.server, req.size()), req);
  Drain();
  for (int i = 0; i < 20; ++i) (void)(*second_ring)->Poll(20);

  auto first_client = Contexts(TL_CTX_CLIENT, p.client);
  ASSERT_EQ(first_client.size(), 1u);
  std::vector<TraceCtxEvent> second_client, second_remote;
  for (const auto& e : second_rec.contexts) {
    if (e.id.tgid != self()) continue;
    if (e.kind == TL_CTX_CLIENT && e.id.fd == p.client) second_client.push_back(e);
    if (e.kind == TL_CTX_REMOTE && e.id.fd == p.server) second_remote.push_back(e);
  }
  ASSERT_EQ(second_client.size(), 1u);
  auto first_remote = Contexts(TL_CTX_REMOTE, p.server);
  ASSERT_EQ(first_remote.size(), 1u);
  ASSERT_EQ(second_remote.size(), 1u);
  // Both agents chose the same ids, and that is what both receivers read.
  EXPECT_EQ(first_client[0].span_id, second_client[0].span_id);
  EXPECT_EQ(first_client[0].trace_id, second_client[0].trace_id);
  EXPECT_EQ(first_remote[0].span_id, first_client[0].span_id);
  EXPECT_EQ(second_remote[0].span_id, second_client[0].span_id);
  EXPECT_EQ(second_remote[0].trace_id, second_client[0].trace_id);
  // And the server request's kernel ids continue it in both.
  std::vector<TraceCtxEvent> second_server;
  for (const auto& e : second_rec.contexts)
    if (e.id.tgid == self() && e.kind == TL_CTX_SERVER && e.id.fd == p.server) second_server.push_back(e);
  auto first_server = Contexts(TL_CTX_SERVER, p.server);
  ASSERT_EQ(first_server.size(), 1u);
  ASSERT_EQ(second_server.size(), 1u);
  EXPECT_EQ(first_server[0].span_id, second_server[0].span_id) << "server ids derived alike";
  EXPECT_EQ(first_server[0].parent_span_id, first_client[0].span_id);
  const TcpOptionStats second_after = (*second_option)->ReadStats();
  const uint64_t written = Count(TL_OPT_WRITTEN) + (second_after[TL_OPT_WRITTEN] - second_before[TL_OPT_WRITTEN]);
  EXPECT_EQ(written, 1u);
  const uint64_t not_written =
      Count(TL_OPT_NO_ROOM) + Count(TL_OPT_OTHER_WRITER) +
      (second_after[TL_OPT_NO_ROOM] - second_before[TL_OPT_NO_ROOM]) +
      (second_after[TL_OPT_OTHER_WRITER] - second_before[TL_OPT_OTHER_WRITER]);
  EXPECT_GE(not_written, 1u) << "the agent whose option did not go out counts it";
  (*second_option).reset();
}

}  // namespace
}  // namespace threadline::testing
