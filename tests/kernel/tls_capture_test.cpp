// TLS capture against the real libssl.so.3: the test process links OpenSSL, the attacher puts
// uprobes on the libssl it maps, and a client and a server in this process talk TLS over a
// loopback TCP pair (self-signed certificate made here). Asserts the plaintext lands on the
// right connection with the right positions, sizes and bytes, that no ciphertext comes out as
// data, and that close events report plaintext totals.
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <fcntl.h>
#include <poll.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "agent/common/unique_fd.h"
#include "agent/kernel/tls_attacher.h"
#include "capture_harness.h"
#include "socket_util.h"

namespace threadline::testing {
namespace {

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// A server context with a fresh self-signed P-256 certificate.
SslCtxPtr ServerContext() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  SSL_CTX_use_certificate(ctx.get(), cert);
  SSL_CTX_use_PrivateKey(ctx.get(), key);
  X509_free(cert);
  EVP_PKEY_free(key);
  return ctx;
}

// Each test runs twice: OpenSSL sites as uprobe + uretprobe pairs (the fallback on kernels
// before 6.13), and as one uprobe session link per library (the default where the kernel has it).
class TlsCaptureTest : public CaptureTest, public ::testing::WithParamInterface<bool> {
 protected:
  bool sessions() const { return GetParam(); }

  void SetUp() override {
    CaptureTest::SetUp();
    if (IsSkipped()) return;
    Load();
    if (HasFatalFailure()) return;
    TlsAttacherOptions options;
    options.scan_at_start = false;
    options.uprobe_sessions = sessions();
    auto attacher = TlsAttacher::Create(*capture_, options, metrics_);
    ASSERT_TRUE(attacher.ok()) << attacher.error().message;
    attacher_ = std::move(attacher).value();
    // Our own maps: the libssl.so.3 this test binary links.
    attacher_->ScanProcess(self());
    ASSERT_GE(attacher_->attached_files(), 1u) << "no libssl found in this process's maps";
    // Uprobe sessions came with Linux 6.13: there the attacher must have used them.
    if (sessions() && testing::KernelAtLeast(6, 13)) {
      ASSERT_TRUE(attacher_->uses_uprobe_sessions());
    }
    if (!sessions()) {
      ASSERT_FALSE(attacher_->uses_uprobe_sessions());
    }
  }

  // Runs of the capture object's OpenSSL programs during `calls()` (BPF_ENABLE_STATS while the
  // counting fd is open). Other processes' calls into libssl meanwhile count too.
  int64_t OpenSslProgramRuns(const std::function<void()>& calls) {
    auto runs = [&] {
      int64_t n = 0;
      for (const char* name : {"tl_ssl_write_enter", "tl_ssl_write_ex_enter", "tl_ssl_read_enter",
                               "tl_ssl_read_ex_enter", "tl_ssl_return", "tl_ssl_session"}) {
        bpf_prog_info info{};
        uint32_t len = sizeof(info);
        if (bpf_obj_get_info_by_fd(bpf_program__fd(capture_->FindProgram(name)), &info, &len) == 0)
          n += static_cast<int64_t>(info.run_cnt);
      }
      return n;
    };
    UniqueFd stats(bpf_enable_stats(BPF_STATS_RUN_TIME));
    EXPECT_TRUE(stats.valid()) << "BPF_ENABLE_STATS: " << std::strerror(errno);
    const int64_t before = runs();
    calls();
    return runs() - before;
  }
  void TearDown() override {
    attacher_.reset();  // before the capture program the probes use
  }

  // Handshake over a fresh loopback pair: client SSL on p.client, server SSL on p.server.
  void Handshake(SocketPair& p, SslPtr& client, SslPtr& server) {
    MakePair(p);
    server_ctx_ = ServerContext();
    client_ctx_.reset(SSL_CTX_new(TLS_client_method()));
    client.reset(SSL_new(client_ctx_.get()));
    server.reset(SSL_new(server_ctx_.get()));
    SSL_set_fd(client.get(), p.client);
    SSL_set_fd(server.get(), p.server);
    int accepted = 0;
    std::thread t([&] { accepted = SSL_accept(server.get()); });
    int connected = SSL_connect(client.get());
    t.join();
    ASSERT_EQ(connected, 1);
    ASSERT_EQ(accepted, 1);
  }

  ConnId IdOf(int fd) {
    const ConnOpenEvent* o = rec_.OpenFor(self(), fd);
    EXPECT_NE(o, nullptr) << "no open event for fd " << fd;
    return o ? o->id : ConnId{};
  }

  // Every data event of the connection is TLS plaintext from the expected calls.
  void ExpectOnlyPlaintext(const ConnId& id) {
    for (const auto& d : rec_.data) {
      if (!(d.ev.id == id)) continue;
      EXPECT_TRUE(d.ev.flags & TL_DATA_F_TLS) << "ciphertext emitted as data at pos " << d.ev.pos;
      EXPECT_EQ(d.ev.syscall, d.ev.direction == Direction::kEgress ? TL_SYS_SSL_WRITE : TL_SYS_SSL_READ);
      EXPECT_LE(d.payload.size(), d.ev.size);
    }
  }

  SslCtxPtr server_ctx_, client_ctx_;
  std::unique_ptr<TlsAttacher> attacher_;
};

TEST_P(TlsCaptureTest, SslWriteAndSslReadArePlaintextOnTheirConnections) {
  SocketPair p;
  SslPtr client, server;
  Handshake(p, client, server);
  if (HasFatalFailure()) return;
  const std::string request = "GET /tls HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  ASSERT_EQ(SSL_write(client.get(), request.data(), static_cast<int>(request.size())),
            static_cast<int>(request.size()));
  std::string got(request.size(), '\0');
  ASSERT_EQ(SSL_read(server.get(), got.data(), static_cast<int>(got.size())),
            static_cast<int>(got.size()));
  ASSERT_EQ(SSL_write(server.get(), response.data(), static_cast<int>(response.size())),
            static_cast<int>(response.size()));
  got.assign(response.size(), '\0');
  ASSERT_EQ(SSL_read(client.get(), got.data(), static_cast<int>(got.size())),
            static_cast<int>(got.size()));
  Drain();

  const ConnId c = IdOf(p.client), s = IdOf(p.server);
  EXPECT_EQ(rec_.StreamFor(c, Direction::kEgress), request);
  EXPECT_EQ(rec_.StreamFor(s, Direction::kIngress), request);
  EXPECT_EQ(rec_.StreamFor(s, Direction::kEgress), response);
  EXPECT_EQ(rec_.StreamFor(c, Direction::kIngress), response);
  ExpectOnlyPlaintext(c);
  ExpectOnlyPlaintext(s);
  for (const auto& d : rec_.DataFor(c, Direction::kEgress)) {
    EXPECT_EQ(d.ev.tid, static_cast<uint32_t>(gettid()));
    EXPECT_LE(d.ev.enter_ts_ns, d.ev.ts_ns);
  }

  // Close: the kernel reports where the plaintext streams end (no trailing gap).
  SSL_shutdown(client.get());
  ::close(p.client);
  p.client = -1;
  Drain();
  const ConnCloseEvent* closed = rec_.CloseFor(c);
  ASSERT_NE(closed, nullptr);
  EXPECT_EQ(closed->bytes[TL_DIR_EGRESS], request.size());
  EXPECT_EQ(closed->bytes[TL_DIR_INGRESS], response.size());
  for (int r = 0; r < TL_DROP__COUNT; ++r)
    EXPECT_EQ(capture_->ReadDrops().Total(r), 0u) << DropReasonName(r);
}

TEST_P(TlsCaptureTest, ExVariantsLargeWritesAndBufferedReads) {
  SocketPair p;
  SslPtr client, server;
  Handshake(p, client, server);
  if (HasFatalFailure()) return;
  // 40000 bytes: three TLS records, several write() calls, more than the capture bound.
  std::string big(40000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  size_t written = 0;
  std::thread writer([&] { SSL_write_ex(client.get(), big.data(), big.size(), &written); });
  // The server reads in 1000-byte pieces: most are served from OpenSSL's record buffer with
  // no syscall underneath (the connection comes from the learned SSL -> fd).
  std::string got;
  while (got.size() < big.size()) {
    char buf[1000];
    size_t n = 0;
    ASSERT_EQ(SSL_read_ex(server.get(), buf, sizeof(buf), &n), 1);
    got.append(buf, n);
  }
  writer.join();
  ASSERT_EQ(written, big.size());
  ASSERT_EQ(got, big);
  Drain();

  const ConnId c = IdOf(p.client), s = IdOf(p.server);
  ExpectOnlyPlaintext(c);
  auto sent = rec_.DataFor(c, Direction::kEgress);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].ev.pos, 0u);
  EXPECT_EQ(sent[0].ev.size, big.size());
  EXPECT_EQ(sent[0].payload, big.substr(0, 4096));  // default capture bound
  auto received = rec_.DataFor(s, Direction::kIngress);
  uint64_t pos = 0;
  for (const auto& d : received) {
    EXPECT_EQ(d.ev.pos, pos);
    EXPECT_EQ(d.ev.syscall, TL_SYS_SSL_READ);
    EXPECT_EQ(d.payload, big.substr(pos, d.ev.size));
    pos += d.ev.size;
  }
  EXPECT_EQ(pos, big.size());
  EXPECT_EQ(capture_->ReadDrops().Total(TL_DROP_TLS_NO_CONN), 0u);
}

// What the session buys: a process that is not traced takes the entry probe of each call (the
// uprobe belongs to the library file) but, with a session, not its return probe; a traced one
// takes both (but for socket-BIO writes, below). With uprobe + uretprobe pairs both ends run in every process.
TEST_P(TlsCaptureTest, UntracedProcessTakesNoReturnProbeWithSessions) {
  SocketPair p;
  SslPtr client, server;
  Handshake(p, client, server);
  if (HasFatalFailure()) return;
  constexpr int kPairs = 500;  // SSL_write + SSL_read each: 2 calls per pair
  auto exchange = [&] {
    char buf[64] = {};
    for (int i = 0; i < kPairs; ++i) {
      ASSERT_EQ(SSL_write(client.get(), buf, sizeof(buf)), static_cast<int>(sizeof(buf)));
      ASSERT_EQ(SSL_read(server.get(), buf, sizeof(buf)), static_cast<int>(sizeof(buf)));
    }
  };
  const int64_t traced = OpenSslProgramRuns(exchange);
  ASSERT_TRUE(capture_->Unselect(self()).ok());
  const int64_t untraced = OpenSslProgramRuns(exchange);
  // Both ends of every call: 4 runs per pair (entry and return of 2 calls); with sessions 3,
  // since a socket-BIO SSL_write of a size seen to fit one record goes without its return
  // (SocketBioWriterTakesNoWriteReturn).
  EXPECT_GE(traced, (attacher_->uses_uprobe_sessions() ? 3 : 4) * kPairs);
  if (attacher_->uses_uprobe_sessions()) {
    // Entries only (others' libssl calls meanwhile could add a few).
    EXPECT_GE(untraced, 2 * kPairs);
    EXPECT_LT(untraced, 3 * kPairs);
  } else {
    EXPECT_GE(untraced, 4 * kPairs);
  }
  Drain();
  EXPECT_EQ(capture_->ReadDrops().Total(TL_DROP_TLS_CALLS_FULL), 0u);
}

// Where an SSL_write's plaintext goes out at the socket write under it (OpenSSL's socket BIO),
// the uprobe session asks for no return probe once the connection has shown that a write of
// that size fits one TLS record (tls.bpf.h tls__write_fd_without_return): 3 runs per
// SSL_write + SSL_read pair instead of 4. The bytes must not change.
TEST_P(TlsCaptureTest, SocketBioWriterTakesNoWriteReturn) {
  SocketPair p;
  SslPtr client, server;
  Handshake(p, client, server);
  if (HasFatalFailure()) return;
  std::string sent;
  auto exchange = [&](int pairs) {
    for (int i = 0; i < pairs; ++i) {
      std::string msg(64, static_cast<char>('a' + sent.size() / 64 % 26));
      ASSERT_EQ(SSL_write(client.get(), msg.data(), static_cast<int>(msg.size())),
                static_cast<int>(msg.size()));
      sent += msg;
      char buf[64];
      ASSERT_EQ(SSL_read(server.get(), buf, sizeof(buf)), static_cast<int>(sizeof(buf)));
    }
  };
  exchange(3);  // the first write (its return kept) shows that 64 bytes fit one record
  constexpr int kPairs = 300;
  const int64_t runs = OpenSslProgramRuns([&] { exchange(kPairs); });
  if (attacher_->uses_uprobe_sessions()) {
    EXPECT_GE(runs, 3 * kPairs);
    EXPECT_LT(runs, 3 * kPairs + kPairs / 2);  // others' libssl calls meanwhile could add a few
  } else {
    EXPECT_GE(runs, 4 * kPairs);  // a uretprobe cannot be declined
  }
  Drain();
  const ConnId c = IdOf(p.client), s = IdOf(p.server);
  EXPECT_EQ(rec_.StreamFor(c, Direction::kEgress), sent);
  EXPECT_EQ(rec_.StreamFor(s, Direction::kIngress), sent);
  ExpectOnlyPlaintext(c);
  ExpectOnlyPlaintext(s);
  for (int r = 0; r < TL_DROP__COUNT; ++r)
    EXPECT_EQ(capture_->ReadDrops().Total(r), 0u) << DropReasonName(r);
}

// A memory-BIO writer (Node, asyncio's SSLObject): SSL_write moves no bytes on a socket, so only
// its return gives the count: it keeps it (4 runs per pair), and its plaintext lands on the
// socket its ciphertext is later written to.
TEST_P(TlsCaptureTest, MemoryBioWriterKeepsTheWriteReturn) {
  SocketPair p;
  MakePair(p);
  server_ctx_ = ServerContext();
  client_ctx_.reset(SSL_CTX_new(TLS_client_method()));
  SslPtr client(SSL_new(client_ctx_.get())), server(SSL_new(server_ctx_.get()));
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(client.get(), rbio, wbio);  // owned by the SSL now
  SSL_set_connect_state(client.get());
  SSL_set_fd(server.get(), p.server);
  auto flush = [&] {  // the ciphertext the client produced, onto its socket, outside any call
    char buf[4096];
    int n;
    while ((n = BIO_read(wbio, buf, sizeof(buf))) > 0) {
      for (int off = 0; off < n;) {
        const ssize_t w = ::write(p.client, buf + off, static_cast<size_t>(n - off));
        ASSERT_GT(w, 0);
        off += static_cast<int>(w);
      }
    }
  };
  int accepted = 0;
  std::thread t([&] { accepted = SSL_accept(server.get()); });
  for (;;) {
    const int r = SSL_do_handshake(client.get());
    flush();
    if (r == 1) break;
    ASSERT_EQ(SSL_get_error(client.get(), r), SSL_ERROR_WANT_READ);
    char buf[4096];
    const ssize_t n = ::read(p.client, buf, sizeof(buf));
    ASSERT_GT(n, 0);
    BIO_write(rbio, buf, static_cast<int>(n));
  }
  t.join();
  ASSERT_EQ(accepted, 1);
  std::string sent;
  auto exchange = [&](int pairs) {
    for (int i = 0; i < pairs; ++i) {
      std::string msg(64, static_cast<char>('A' + sent.size() / 64 % 26));
      ASSERT_EQ(SSL_write(client.get(), msg.data(), static_cast<int>(msg.size())),
                static_cast<int>(msg.size()));
      flush();
      sent += msg;
      char buf[64];
      ASSERT_EQ(SSL_read(server.get(), buf, sizeof(buf)), static_cast<int>(sizeof(buf)));
    }
  };
  exchange(3);
  constexpr int kPairs = 300;
  const int64_t runs = OpenSslProgramRuns([&] { exchange(kPairs); });
  EXPECT_GE(runs, 4 * kPairs);
  Drain();
  const ConnId c = IdOf(p.client), s = IdOf(p.server);
  EXPECT_EQ(rec_.StreamFor(c, Direction::kEgress), sent);
  EXPECT_EQ(rec_.StreamFor(s, Direction::kIngress), sent);
  ExpectOnlyPlaintext(c);
  ExpectOnlyPlaintext(s);
}

// A non-blocking socket-BIO writer sending a large response over a small socket buffer: writes
// fail with EAGAIN (WANT_WRITE, retried with the same arguments) or go out in part; with
// SSL_MODE_ENABLE_PARTIAL_WRITE and a small record size, SSL_write returns after one record and
// is called again with the rest. Writes without their return settle what they emitted at the
// socket write (a failed write under an emitted call leaves a credit for the retry): the
// plaintext streams must be exactly what was written and read, whatever returns were skipped.
class TlsNonBlockingWriterTest : public TlsCaptureTest {
 protected:
  void Run(bool partial_small_records) {
    SocketPair p;
    SslPtr client, server;
    Handshake(p, client, server);
    if (HasFatalFailure()) return;
    if (partial_small_records) {
      SSL_set_mode(server.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
      ASSERT_EQ(SSL_set_max_send_fragment(server.get(), 1024), 1);
    }
    const int small = 4096;
    ASSERT_EQ(setsockopt(p.server, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    ASSERT_EQ(setsockopt(p.client, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    ASSERT_EQ(fcntl(p.server, F_SETFL, fcntl(p.server, F_GETFL) | O_NONBLOCK), 0);
    // Sizes that fit one record (learned, then written without return) and larger ones.
    const size_t sizes[] = {64, 700, 1000, 64, 3000, 16000, 1000, 16384, 40000, 700, 12000, 64};
    std::string response;
    for (int round = 0; round < 6; ++round) {
      for (size_t n : sizes) {
        for (size_t i = 0; i < n; ++i) response += static_cast<char>('a' + (response.size() * 7 + round) % 26);
      }
    }
    std::string got;
    std::thread reader([&] {
      char buf[1500];
      while (got.size() < response.size()) {
        size_t n = 0;
        if (SSL_read_ex(client.get(), buf, sizeof(buf), &n) != 1) break;
        got.append(buf, n);
        if (got.size() % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
    size_t off = 0, want_write = 0, partial_returns = 0;
    size_t chunk_end = 0;
    size_t idx = 0;
    while (off < response.size()) {
      if (off == chunk_end) chunk_end = off + sizes[idx++ % std::size(sizes)];
      const int len = static_cast<int>(chunk_end - off);
      const int r = SSL_write(server.get(), response.data() + off, len);
      if (r > 0) {
        if (r < len) ++partial_returns;
        off += static_cast<size_t>(r);
        continue;
      }
      ASSERT_EQ(SSL_get_error(server.get(), r), SSL_ERROR_WANT_WRITE);
      ++want_write;
      pollfd pfd{p.server, POLLOUT, 0};
      ::poll(&pfd, 1, 1000);
    }
    reader.join();
    ASSERT_EQ(got, response);
    EXPECT_GT(want_write, 0u) << "the socket buffer never filled: no EAGAIN was exercised";
    if (partial_small_records) {
      EXPECT_GT(partial_returns, 0u);
    }
    Drain();
    const ConnId c = IdOf(p.client), s = IdOf(p.server);
    // The reader's pieces fit the capture bound: its stream compares whole.
    const std::string ingress = rec_.StreamFor(c, Direction::kIngress);
    EXPECT_EQ(ingress.size(), response.size());
    EXPECT_TRUE(ingress == response) << "client plaintext differs from what SSL_read returned";
    // The writer's: positions contiguous from 0 (sizes add up to what was written, nothing twice),
    // each event's captured prefix the response's bytes there.
    uint64_t pos = 0;
    for (const auto& d : rec_.DataFor(s, Direction::kEgress)) {
      EXPECT_EQ(d.ev.pos, pos);
      EXPECT_EQ(d.payload, response.substr(pos, d.payload.size()));
      pos += d.ev.size;
    }
    EXPECT_EQ(pos, response.size());
    ExpectOnlyPlaintext(c);
    ExpectOnlyPlaintext(s);
    EXPECT_EQ(capture_->ReadDrops().Total(TL_DROP_TLS_NO_CONN), 0u);
  }
};

TEST_P(TlsNonBlockingWriterTest, LargeResponseOverASmallSocketBuffer) { Run(false); }
TEST_P(TlsNonBlockingWriterTest, PartialWritesWithSmallRecords) { Run(true); }

INSTANTIATE_TEST_SUITE_P(Attach, TlsNonBlockingWriterTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "UprobeSessions" : "UprobePairs";
                         });

INSTANTIATE_TEST_SUITE_P(Attach, TlsCaptureTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "UprobeSessions" : "UprobePairs";
                         });

}  // namespace
}  // namespace threadline::testing
