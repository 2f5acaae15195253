// The kernel's context rule (bpf/capture/ctx.bpf.h, issue #13) against real sockets: the tag on
// the data event that starts each request says whose request a client call is for, and never
// guesses: a thread with one request in flight (and never two) is trusted, a thread that had
// several is an event loop and its calls are ambiguous, Go processes follow goroutines only, the
// Node helper's pairing wins where it was given.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>

#include "capture_harness.h"
#include "socket_util.h"

namespace threadline::testing {
namespace {

const std::string kRequest = "GET /x HTTP/1.1\r\nHost: t\r\n\r\n";
const std::string kResponse = "HTTP/1.1 204 No Content\r\n\r\n";

void Send(int fd, const std::string& s) {
  ASSERT_EQ(::write(fd, s.data(), s.size()), static_cast<ssize_t>(s.size()));
}
void Receive(int fd, size_t n) {
  std::string got;
  char buf[4096];
  while (got.size() < n) {
    ssize_t r = ::read(fd, buf, sizeof(buf));
    ASSERT_GT(r, 0);
    got.append(buf, static_cast<size_t>(r));
  }
}

class ContextRuleTest : public CaptureTest {
 protected:
  // A server request arrives on p and is read by the calling thread: in flight until answered.
  void ServerReads(SocketPair& p) {
    Send(p.client, kRequest);
    Receive(p.server, kRequest.size());
  }
  void ServerAnswers(SocketPair& p) {
    Send(p.server, kResponse);
    Receive(p.client, kResponse.size());
  }
  // The calling thread sends a client request on p (and its answer comes back, read by it).
  void ClientCalls(SocketPair& p) {
    Send(p.client, kRequest);
    Receive(p.server, kRequest.size());
    Send(p.server, kResponse);
    Receive(p.client, kResponse.size());
  }
  // Tags of the events that started something on fd's connection in this direction, in order.
  std::vector<uint32_t> Tags(int fd, Direction dir) {
    std::vector<uint32_t> out;
    for (const auto& d : rec_.data)
      if (d.ev.id.tgid == self() && d.ev.id.fd == fd && d.ev.direction == dir && d.ev.ctx_tag)
        out.push_back(d.ev.ctx_tag);
    return out;
  }
  static uint32_t Kind(uint32_t tag) { return TL_CTX_TAG_KIND(tag); }
  static uint32_t Seq(uint32_t tag) { return TL_CTX_TAG_SEQ(tag); }
  // The number the kernel gave the n-th server request read on fd.
  uint32_t ServerSeq(int fd, size_t n = 0) {
    auto tags = Tags(fd, Direction::kIngress);
    EXPECT_GT(tags.size(), n);
    if (tags.size() <= n) return 0;
    EXPECT_EQ(Kind(tags[n]), static_cast<uint32_t>(TL_CTAG_SERVER));
    return Seq(tags[n]);
  }
  std::string Describe(uint32_t tag) {
    return std::string(CtxTagKindName(Kind(tag))) + ":" + std::to_string(Seq(tag));
  }
};

TEST_F(ContextRuleTest, ThreadWithOneRequestInFlightIsItsParent) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair front, back;
  MakePair(front);
  MakePair(back);
  ServerReads(front);
  ClientCalls(back);  // while the request is in flight: its child
  ServerAnswers(front);
  ClientCalls(back);  // answered: nothing in flight, a root
  Drain();
  const uint32_t seq = ServerSeq(front.server);
  auto calls = Tags(back.client, Direction::kEgress);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0], TL_CTX_TAG(TL_CTAG_THREAD, seq)) << Describe(calls[0]);
  EXPECT_EQ(Kind(calls[1]), static_cast<uint32_t>(TL_CTAG_ROOT)) << Describe(calls[1]);
  // Responses and the requests' other bytes start nothing.
  EXPECT_TRUE(Tags(front.server, Direction::kEgress).empty());
  EXPECT_TRUE(Tags(back.client, Direction::kIngress).empty());
}

TEST_F(ContextRuleTest, AProcessNotLookedAtYetGetsNoThreadParent) {
  // Exec'd while the agent runs, its executable not looked at yet: it may be a Go program, whose
  // threads serve every goroutine, so the thread rule holds back until userspace knows.
  Load();
  if (HasFatalFailure()) return;
  const int unclassified = capture_->MapFd("ctx_unclassified");
  ASSERT_GE(unclassified, 0);
  const uint32_t tgid = self();
  const uint8_t one = 1;
  ASSERT_EQ(bpf_map_update_elem(unclassified, &tgid, &one, BPF_ANY), 0);
  SocketPair front, back, front2, back2;
  MakePair(front);
  MakePair(back);
  MakePair(front2);
  MakePair(back2);
  ServerReads(front);
  ClientCalls(back);  // not looked at yet: ambiguous
  ASSERT_EQ(bpf_map_delete_elem(unclassified, &tgid), 0);  // userspace: not Go
  // The same on a fresh thread (this one read the call's own request too: several in flight).
  std::thread([&] {
    ServerReads(front2);
    ClientCalls(back2);  // the thread rule again
  }).join();
  Drain();
  auto calls = Tags(back.client, Direction::kEgress);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(Kind(calls[0]), static_cast<uint32_t>(TL_CTAG_AMBIGUOUS)) << Describe(calls[0]);
  const uint32_t seq2 = ServerSeq(front2.server);
  calls = Tags(back2.client, Direction::kEgress);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0], TL_CTX_TAG(TL_CTAG_THREAD, seq2)) << Describe(calls[0]);
}

TEST_F(ContextRuleTest, TwoRequestsInFlightOnOneThreadAreAmbiguousAndStaySo) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair a, b, back;
  MakePair(a);
  MakePair(b);
  MakePair(back);
  ServerReads(a);
  ServerReads(b);
  ClientCalls(back);  // two in flight: nothing decides
  ServerAnswers(a);
  ClientCalls(back);  // one left, but this thread is an event loop: a timer could be sending
  ServerAnswers(b);
  ClientCalls(back);  // none in flight
  Drain();
  auto calls = Tags(back.client, Direction::kEgress);
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(Kind(calls[0]), static_cast<uint32_t>(TL_CTAG_AMBIGUOUS)) << Describe(calls[0]);
  EXPECT_EQ(Kind(calls[1]), static_cast<uint32_t>(TL_CTAG_AMBIGUOUS)) << Describe(calls[1]);
  EXPECT_EQ(Kind(calls[2]), static_cast<uint32_t>(TL_CTAG_ROOT)) << Describe(calls[2]);
}

TEST_F(ContextRuleTest, ThreadsAreCountedApartAndAnswersByAnotherThreadCount) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair a, b, c, back_main, back_worker;
  MakePair(a);
  MakePair(b);
  MakePair(c);
  MakePair(back_main);
  MakePair(back_worker);
  // This thread multiplexes; another one serves a request alone: it is still trusted.
  ServerReads(a);
  ServerReads(b);
  std::thread worker([&] {
    ServerReads(c);
    ClientCalls(back_worker);
  });
  worker.join();
  // The response to c is written by this thread (a thread pool's writer): c leaves the worker's
  // count, so the worker's next call is a root.
  ServerAnswers(c);
  std::thread worker2([&] { ClientCalls(back_worker); });  // a new thread: nothing read
  worker2.join();
  Drain();
  auto calls = Tags(back_worker.client, Direction::kEgress);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0], TL_CTX_TAG(TL_CTAG_THREAD, ServerSeq(c.server))) << Describe(calls[0]);
  EXPECT_EQ(Kind(calls[1]), static_cast<uint32_t>(TL_CTAG_ROOT)) << Describe(calls[1]);
}

TEST_F(ContextRuleTest, ClosingTheServerConnectionEndsItsRequest) {
  Load();
  if (HasFatalFailure()) return;
  SocketPair front, back;
  MakePair(front);
  MakePair(back);
  ServerReads(front);
  ::close(front.server);
  front.server = -1;
  ClientCalls(back);
  Drain();
  auto calls = Tags(back.client, Direction::kEgress);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(Kind(calls[0]), static_cast<uint32_t>(TL_CTAG_ROOT)) << Describe(calls[0]);
}

TEST_F(ContextRuleTest, GoProcessesNeverUseTheThread) {
  Load();
  if (HasFatalFailure()) return;
  const int go_procs = capture_->MapFd("go_procs");
  ASSERT_GE(go_procs, 0);
  const uint32_t pid = self();
  SocketPair front, back;
  MakePair(front);
  MakePair(back);
  // Untracked Go (its version has no layout): the thread's one request is no evidence.
  uint32_t flags = 0;
  ASSERT_EQ(bpf_map_update_elem(go_procs, &pid, &flags, BPF_ANY), 0);
  ServerReads(front);
  ClientCalls(back);
  // Followed by goroutine, but this "goroutine" (whatever R14 holds here) was given nothing.
  flags = TL_GO_PROC_TRACKED;
  ASSERT_EQ(bpf_map_update_elem(go_procs, &pid, &flags, BPF_ANY), 0);
  ClientCalls(back);
  Drain();
  auto calls = Tags(back.client, Direction::kEgress);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(Kind(calls[0]), static_cast<uint32_t>(TL_CTAG_UNTRACKED)) << Describe(calls[0]);
  EXPECT_EQ(Kind(calls[1]), static_cast<uint32_t>(TL_CTAG_ROOT)) << Describe(calls[1]);
}

TEST_F(ContextRuleTest, NodeHelperPairingDecidesWhileItsRequestIsInFlight) {
  Load();
  if (HasFatalFailure()) return;
  capture_->SetNodeHelpersOn(true);  // as the agent does once a helper is loaded: pairs count
  const int pairs = capture_->MapFd("ctx_node_pairs");
  ASSERT_GE(pairs, 0);
  SocketPair a, b, back;
  MakePair(a);
  MakePair(b);
  MakePair(back);
  ServerReads(a);
  ServerReads(b);  // an event loop with two in flight: only the helper can tell
  Drain();
  const uint32_t seq_b = ServerSeq(b.server);
  tl_fd_key key{self(), back.client};
  tl_ctx_pair pair{b.server, seq_b};
  ASSERT_EQ(bpf_map_update_elem(pairs, &key, &pair, BPF_ANY), 0);
  ClientCalls(back);
  ServerAnswers(b);
  ClientCalls(back);  // the paired request was answered: never the next one on that socket
  pair = {-1, 0};    // the helper: sent outside any request
  ASSERT_EQ(bpf_map_update_elem(pairs, &key, &pair, BPF_ANY), 0);
  ClientCalls(back);
  Drain();
  auto calls = Tags(back.client, Direction::kEgress);
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0], TL_CTX_TAG(TL_CTAG_NODE_ASYNC, seq_b)) << Describe(calls[0]);
  EXPECT_EQ(Kind(calls[1]), static_cast<uint32_t>(TL_CTAG_ENDED)) << Describe(calls[1]);
  EXPECT_EQ(Kind(calls[2]), static_cast<uint32_t>(TL_CTAG_ROOT)) << Describe(calls[2]);
}

TEST_F(ContextRuleTest, NodeHelperMarkerWritesPairAndTheSocketsCloseForgetsIt) {
  Load();
  if (HasFatalFailure()) return;
  const int pairs = capture_->MapFd("ctx_node_pairs");
  const int markers = capture_->MapFd("node_markers");
  ASSERT_GE(pairs, 0);
  ASSERT_GE(markers, 0);
  SocketPair a, b;
  auto back = std::make_unique<SocketPair>();
  MakePair(a);
  MakePair(b);
  MakePair(*back);
  ServerReads(a);
  ServerReads(b);
  Drain();
  const uint32_t seq_b = ServerSeq(b.server);
  // What the helper does (agent/runtimes/node_helper_js.h): its /dev/null, registered by the
  // agent, gets {"TLN1", server fd, client fd} before the request is sent.
  const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(null_fd, 0);
  const uint32_t tgid = self();
  ASSERT_EQ(bpf_map_update_elem(markers, &tgid, &null_fd, BPF_ANY), 0);
  capture_->SetNodeHelpersOn(true);
  tl_node_marker wrong_fd{TL_NODE_MARKER_MAGIC, a.server, back->client, 0};
  const int other_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);  // not the registered fd
  ASSERT_EQ(::write(other_fd, &wrong_fd, sizeof(wrong_fd)), static_cast<ssize_t>(sizeof(wrong_fd)));
  tl_node_marker m{TL_NODE_MARKER_MAGIC, b.server, back->client, 0};
  ASSERT_EQ(::write(null_fd, &m, sizeof(m)), static_cast<ssize_t>(sizeof(m)));
  ClientCalls(*back);
  Drain();
  auto calls = Tags(back->client, Direction::kEgress);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0], TL_CTX_TAG(TL_CTAG_NODE_ASYNC, seq_b)) << Describe(calls[0]);
  tl_fd_key key{tgid, back->client};
  tl_ctx_pair pair{};
  EXPECT_EQ(bpf_map_lookup_elem(pairs, &key, &pair), 0);
  back.reset();  // closes the client socket: its fd number must not keep the pairing
  ServerAnswers(a);  // a later event, so the close was seen
  Drain();
  EXPECT_NE(bpf_map_lookup_elem(pairs, &key, &pair), 0) << "pairing left for a closed socket";
  ::close(other_fd);
  ::close(null_fd);
}

}  // namespace
}  // namespace threadline::testing
