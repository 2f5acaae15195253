// Sampling decisions the kernel makes agree with the agent's (agent/spans/sampler.h): the real
// capture and injection objects, loaded with the threshold of a ratio, choose the ids of real
// loopback HTTP/1.1 requests. Every root the kernel starts (a server request without
// traceparent: bpf/capture/trace_ctx.bpf.h; an injected request from a thread serving none:
// bpf/inject.bpf.c) must carry TraceIdRatioSampler's decision on its trace id, and every child
// its parent's flag, in the events the agent reads and in the bytes the next service receives.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "agent/kernel/injector.h"
#include "agent/spans/sampler.h"
#include "agent/spans/trace_context.h"
#include "capture_harness.h"
#include "socket_util.h"

namespace threadline::testing {
namespace {

std::string Request(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + "\r\n";
}
const std::string kResponse = "HTTP/1.1 204 No Content\r\n\r\n";

void Bound(int fd) {  // a stalled read fails the test instead of hanging it
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

void WriteAll(int fd, const std::string& s) {
  ASSERT_EQ(::write(fd, s.data(), s.size()), static_cast<ssize_t>(s.size())) << std::strerror(errno);
}

// Waits until `n` bytes are queued on fd (a socket not enrolled for injection: FIONREAD is
// right there), so that one read returns a whole request head. The injected line makes the
// sender's bytes several segments; a read between them would return the request line alone,
// and the kernel, which looks for traceparent in the read that starts a request, would not see
// it (the agent then counts kernel_trace_ids_total{result="header_trace_differs"}).
void WaitQueued(int fd, size_t n) {
  for (int i = 0; i < 5000; ++i) {
    int queued = 0;
    if (::ioctl(fd, FIONREAD, &queued) == 0 && static_cast<size_t>(queued) >= n) return;
    ::usleep(1000);
  }
  ADD_FAILURE() << n << " bytes never arrived on fd " << fd;
}

// Reads until the end of a header block (the requests and responses here have no body).
std::string ReadHead(int fd) {
  std::string out;
  char buf[8192];
  while (out.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// The traceparent a request arrived with (nullopt: none or malformed).
std::optional<TraceParent> TraceParentIn(const std::string& head) {
  const std::string name = "\r\ntraceparent: ";
  size_t at = head.find(name);
  if (at == std::string::npos) return std::nullopt;
  at += name.size();
  return ParseTraceParent(head.substr(at, head.find("\r\n", at) - at));
}

TraceId ToTraceId(const std::array<uint8_t, 16>& bytes) {
  TraceId id;
  id.bytes = bytes;
  return id;
}

class SamplingTest : public CaptureTest {
 protected:
  void LoadWithRatio(double ratio) {
    CaptureConfig config;
    config.sample_threshold = TraceIdRatioSampler::ThresholdFor(ratio);
    Load(config);
  }

  // The trace-context events of this process for `kind` on `fd`, in stream order.
  std::vector<TraceCtxEvent> Contexts(uint8_t kind, int fd) const {
    std::vector<TraceCtxEvent> out;
    for (const auto& e : rec_.contexts)
      if (e.id.tgid == self() && e.id.fd == fd && e.kind == kind) out.push_back(e);
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.pos < b.pos; });
    return out;
  }
};

class SamplingRatioTest : public SamplingTest, public ::testing::WithParamInterface<double> {};

TEST_P(SamplingRatioTest, ServerRootsTakeTheRatioRuleOnTheirTraceId) {
  const double ratio = GetParam();
  LoadWithRatio(ratio);
  if (HasFatalFailure()) return;
  capture_->SetTraceContextUser(CaptureProgram::ContextUser::kInjection, true);  // what the injector does once it is on
  SocketPair p;
  MakePair(p);
  Bound(p.server);
  Bound(p.client);
  constexpr size_t kRequests = 96;
  for (size_t i = 0; i < kRequests; ++i) {
    WriteAll(p.client, Request("/root/" + std::to_string(i)));
    ASSERT_EQ(ReadHead(p.server).rfind("GET /root/", 0), 0u);
    WriteAll(p.server, kResponse);  // answered: the thread's context ends
    ReadHead(p.client);
  }
  Drain();

  const TraceIdRatioSampler sampler(ratio);
  const auto roots = Contexts(TL_CTX_SERVER, p.server);
  ASSERT_EQ(roots.size(), kRequests);
  size_t kept = 0;
  for (const auto& e : roots) {
    const TraceId id = ToTraceId(e.trace_id);
    EXPECT_EQ(e.flags & TL_CTX_F_FROM_HEADER, 0u);
    EXPECT_EQ(e.trace_flags, sampler.FlagsFor(id))
        << "trace " << id.Hex() << " R=" << TraceIdRatioSampler::Randomness(id) << " T=" << sampler.threshold();
    kept += e.trace_flags & kTraceFlagSampled;
  }
  if (ratio == 0.0) {
    EXPECT_EQ(kept, 0u);
  } else if (ratio == 1.0) {
    EXPECT_EQ(kept, kRequests);
  } else {  // both outcomes occur (the chance that one does not is below 1e-11)
    EXPECT_GT(kept, 0u);
    EXPECT_LT(kept, kRequests);
  }
}

INSTANTIATE_TEST_SUITE_P(Ratios, SamplingRatioTest, ::testing::Values(0.0, 0.25, 0.5, 1.0),
                         [](const auto& info) { return "ratio_" + std::to_string(static_cast<int>(info.param * 100)); });

// Parent-based in the kernel too: a request's own traceparent decides, whatever its trace id
// would give as a root.
TEST_F(SamplingTest, ServerRequestWithTraceparentFollowsItsParentsFlag) {
  LoadWithRatio(0.5);
  if (HasFatalFailure()) return;
  capture_->SetTraceContextUser(CaptureProgram::ContextUser::kInjection, true);
  SocketPair p;
  MakePair(p);
  Bound(p.server);
  Bound(p.client);
  // R = 1 (the rule drops it) but sampled upstream; R = 2^56 - 1 (the rule keeps it) but not.
  const std::string low = "4bf92f3577b34da6a300000000000001", high = "4bf92f3577b34da6a3ffffffffffffff";
  const TraceIdRatioSampler sampler(0.5);
  ASSERT_FALSE(sampler.Sampled(*TraceIdFromHex(low)));
  ASSERT_TRUE(sampler.Sampled(*TraceIdFromHex(high)));
  const std::string headers[] = {"traceparent: 00-" + low + "-00f067aa0ba902b7-01\r\n",
                                 "traceparent: 00-" + high + "-00f067aa0ba902b7-00\r\n"};
  for (const std::string& h : headers) {
    WriteAll(p.client, Request("/child", h));
    ReadHead(p.server);
    WriteAll(p.server, kResponse);
    ReadHead(p.client);
  }
  Drain();
  const auto got = Contexts(TL_CTX_SERVER, p.server);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(ToTraceId(got[0].trace_id).Hex(), low);
  EXPECT_EQ(got[0].trace_flags, 0x01);
  EXPECT_EQ(ToTraceId(got[1].trace_id).Hex(), high);
  EXPECT_EQ(got[1].trace_flags, 0x00);
  for (const auto& e : got) EXPECT_EQ(e.flags, TL_CTX_F_FROM_HEADER | TL_CTX_F_HAS_PARENT);
}

// Injection: a request sent by a thread serving nothing is a root (the rule on its new trace
// id); one sent while serving a request carries that request's trace and flag. The flag the
// next service receives is the one the agent reports for the client span.
TEST_F(SamplingTest, InjectedTraceparentCarriesTheRootsDecision) {
  LoadWithRatio(0.5);
  if (HasFatalFailure()) return;
  // Connected before the injector exists: its client end is never enrolled, so requests on it
  // arrive without traceparent and the kernel starts a root when the server end reads them.
  SocketPair upstream;
  MakePair(upstream);
  InjectorConfig ic;
  ic.agent_tgid = 0;
  ic.trace_all = false;
  ic.cgroup2_root = CgroupV2Root().value_or("");
  auto injector = Injector::Create(*capture_, ic);
  if (!injector.ok()) {
    if (InCi()) FAIL() << "injection cannot load here: " << injector.error().message;
    GTEST_SKIP() << "injection cannot load here: " << injector.error().message;
  }
  (*injector)->SetMode(Injector::Mode::kOn);
  SocketPair downstream;
  MakePair(downstream);
  ASSERT_TRUE((*injector)->IsEnrolled(downstream.client));
  ASSERT_FALSE((*injector)->IsEnrolled(upstream.client));
  for (int fd : {upstream.client, upstream.server, downstream.client, downstream.server}) Bound(fd);
  // As HTTP clients do: the injected request's segments leave at once, not after an ACK.
  int one = 1;
  ::setsockopt(downstream.client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  // The downstream service is another thread, as in another process: a thread that served the
  // downstream requests too would have two requests in flight at once, which makes it an event
  // loop to the kernel's context rule (bpf/capture/ctx.bpf.h), and its calls ambiguous.
  const auto serve_downstream = [&](const std::string& sent) {
    return std::async(std::launch::async, [&, sent] {
      WaitQueued(downstream.server, sent.size() + TL_TRACEPARENT_LINE_LEN);
      std::string head = ReadHead(downstream.server);
      WriteAll(downstream.server, kResponse);
      return head;
    });
  };

  constexpr size_t kRounds = 48;
  std::vector<TraceParent> roots, children;
  for (size_t i = 0; i < kRounds; ++i) {
    // A root: this thread serves no request.
    const std::string root = Request("/root/" + std::to_string(i));
    auto served = serve_downstream(root);
    WriteAll(downstream.client, root);
    auto tp = TraceParentIn(served.get());
    ASSERT_TRUE(tp) << "no traceparent injected into request " << i;
    roots.push_back(*tp);
    ReadHead(downstream.client);
    // A child: the thread reads an upstream request (a kernel root), then calls downstream.
    WriteAll(upstream.client, Request("/front/" + std::to_string(i)));
    ReadHead(upstream.server);
    const std::string child = Request("/child/" + std::to_string(i));
    served = serve_downstream(child);
    WriteAll(downstream.client, child);
    tp = TraceParentIn(served.get());
    ASSERT_TRUE(tp) << "no traceparent injected into child request " << i;
    children.push_back(*tp);
    ReadHead(downstream.client);
    WriteAll(upstream.server, kResponse);
    ReadHead(upstream.client);
  }
  Drain();
  (*injector)->SetMode(Injector::Mode::kOff);

  const TraceIdRatioSampler sampler(0.5);
  size_t kept = 0;
  for (const auto& tp : roots) {
    EXPECT_EQ(tp.flags, sampler.FlagsFor(tp.trace_id)) << FormatTraceParent(tp);
    kept += tp.sampled();
  }
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, kRounds);

  const auto fronts = Contexts(TL_CTX_SERVER, upstream.server);
  ASSERT_EQ(fronts.size(), kRounds);
  size_t kept_children = 0;
  for (size_t i = 0; i < kRounds; ++i) {
    const TraceId front = ToTraceId(fronts[i].trace_id);
    EXPECT_EQ(fronts[i].trace_flags, sampler.FlagsFor(front)) << front.Hex();
    EXPECT_EQ(children[i].trace_id, front) << FormatTraceParent(children[i]);
    EXPECT_EQ(children[i].flags, fronts[i].trace_flags) << FormatTraceParent(children[i]);
    kept_children += children[i].sampled();
  }
  EXPECT_GT(kept_children, 0u);
  EXPECT_LT(kept_children, kRounds);

  // What the agent is told about each injected request is what was sent, flag included; and
  // the receiving end's server span takes the header's flag.
  const auto sent = Contexts(TL_CTX_CLIENT, downstream.client);
  ASSERT_EQ(sent.size(), 2 * kRounds);
  const auto received = Contexts(TL_CTX_SERVER, downstream.server);
  ASSERT_EQ(received.size(), 2 * kRounds);
  for (size_t i = 0; i < 2 * kRounds; ++i) {
    const TraceParent& tp = i % 2 == 0 ? roots[i / 2] : children[i / 2];
    EXPECT_EQ(ToTraceId(sent[i].trace_id), tp.trace_id);
    EXPECT_EQ(sent[i].trace_flags, tp.flags);
    EXPECT_EQ(sent[i].flags & TL_CTX_F_HAS_PARENT, i % 2 == 0 ? 0u : TL_CTX_F_HAS_PARENT);
    EXPECT_EQ(ToTraceId(received[i].trace_id), tp.trace_id);
    EXPECT_EQ(received[i].trace_flags, tp.flags);
    EXPECT_EQ(received[i].flags, TL_CTX_F_FROM_HEADER | TL_CTX_F_HAS_PARENT);
  }
}

}  // namespace
}  // namespace threadline::testing
