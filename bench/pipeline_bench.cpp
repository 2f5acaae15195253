// bench/pipeline: how much the userspace pipeline carries on one core, without the kernel.
//
// Generated kernel records (byte-for-byte what bpf/capture writes into the ring buffer: the
// structs of bpf/include/threadline/events.h followed by the captured payload, 8-byte aligned)
// are replayed through exactly the agent's stages:
//
//   DecodeEvent (ingest) -> ConnectionTable (conn) -> ProtocolDispatcher (protocols/http1)
//     -> SpanBuilder (spans) -> RedMetricsSink (RED histograms and their exemplars, pipeline)
//     -> TraceStoreSink (the web view's store, --trace-store on, the agent's default)
//     -> SampledSpanFilter (pipeline)
//     -> an encoding sink (none | OTLP JSON lines | OTLP protobuf)
//
// Reported per encoding: kernel events/s and spans/s on one pinned core, ns per event, and heap
// bytes and allocations per span (a global operator new/delete counter, alloc_counter.cpp).
// Then a memory run: N concurrent open connections (default 10k), RSS and live heap before and
// after, per connection. Then a collector-down run: the agent's real OTLP exporter (the
// BatchSpanExporter behind the OTLP/HTTP transport) pointed at a port nobody listens on, fed
// spans for a few seconds: RSS must stay flat (the export queue is bounded) and every span that
// cannot be queued is counted as dropped.
//
// Workloads: `keepalive` (nginx under wrk: many connections, each round one request read and
// one response written per connection: 2 events per span) and `close` (a new connection per
// request: open, request, response, close: 4 events per span).
//
// Only the pipeline's time is measured: the per-round rewrite of positions and timestamps (the
// part the kernel would do) happens before the round's clock starts.
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/common/clock.h"
#include "agent/common/metrics.h"
#include "agent/conn/connection_table.h"
#include "agent/discovery/resource.h"
#include "agent/ingest/decoder.h"
#include "agent/pipeline/red_metrics.h"
#include "agent/pipeline/sampled_filter.h"
#include "agent/protocols/dispatcher.h"
#include "agent/spans/span_buffers.h"
#include "agent/spans/span_builder.h"
#include "agent/traces/trace_store.h"
#include "exporter/otlp_config.h"
#include "bench/alloc_counter.h"
#include "exporter/json_lines.h"
#include "exporter/otlp_protobuf.h"
#include "exporter/otlp_transport.h"
#include "threadline/events.h"

// Instruction counts that do not depend on the machine's load: under
//   valgrind --tool=callgrind --collect-atstart=no build/bench/pipeline_bench ...
// only the timed part (the pipeline's work, not the generation of records) is counted
// (bench/instructions.sh runs it and divides by the events and spans). Outside valgrind the
// toggle is a no-op of a few instructions.
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define TL_CALLGRIND_TOGGLE() CALLGRIND_TOGGLE_COLLECT
#else
#define TL_CALLGRIND_TOGGLE() \
  do {                        \
  } while (0)
#endif

namespace threadline::bench {
namespace {

constexpr uint16_t kServerPort = 8080;
constexpr uint64_t kEventStepNs = 1000;  // event time advances 1 us per event

// ---- Kernel records ------------------------------------------------------------------------

// Records laid out as the ring buffer holds them: each starts 8-byte aligned, its size is
// exactly what the BPF program reserved or output (header + captured bytes for data events).
class RecordArena {
 public:
  struct Ref {
    size_t word = 0;  // offset in 8-byte words
    uint32_t size = 0;
  };

  template <typename T>
  T& Add(std::span<const uint8_t> payload = {}) {
    const size_t size = sizeof(T) + payload.size();
    const size_t word = words_.size();
    words_.resize(word + (size + 7) / 8, 0);
    auto* base = reinterpret_cast<uint8_t*>(words_.data() + word);
    if (!payload.empty()) std::memcpy(base + sizeof(T), payload.data(), payload.size());
    refs_.push_back(Ref{word, static_cast<uint32_t>(size)});
    return *reinterpret_cast<T*>(base);
  }

  template <typename T>
  T& At(size_t i) {
    return *reinterpret_cast<T*>(words_.data() + refs_[i].word);
  }
  std::span<const uint8_t> Record(size_t i) const {
    return {reinterpret_cast<const uint8_t*>(words_.data() + refs_[i].word), refs_[i].size};
  }
  size_t size() const { return refs_.size(); }
  void Clear() {
    words_.clear();
    refs_.clear();
  }

 private:
  std::vector<uint64_t> words_;
  std::vector<Ref> refs_;
};

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void FillHeader(tl_event_header& h, uint32_t type, uint32_t tgid, uint32_t tid, uint64_t ts) {
  h.type = type;
  h.cpu = 0;
  h.ts_ns = ts;
  h.tgid = tgid;
  h.tid = tid;
}

void FillId(tl_conn_id& id, uint32_t tgid, int32_t fd, uint64_t gen) {
  id.tgid = tgid;
  id.fd = fd;
  id.gen = gen;
}

void AddOpen(RecordArena& a, uint32_t tgid, int32_t fd, uint64_t gen, uint16_t peer_port,
             uint64_t ts) {
  auto& e = a.Add<tl_conn_event>();
  FillHeader(e.hdr, TL_EV_CONN_OPEN, tgid, tgid, ts);
  FillId(e.id, tgid, fd, gen);
  const uint8_t loopback[4] = {127, 0, 0, 1};
  std::memcpy(e.tuple.saddr, loopback, 4);
  std::memcpy(e.tuple.daddr, loopback, 4);
  e.tuple.sport = kServerPort;
  e.tuple.dport = peer_port;
  e.tuple.family = 2;  // AF_INET
  e.role = TL_ROLE_SERVER;
  e.source = TL_SRC_ACCEPT;
  std::strncpy(e.comm, "nginx", TL_COMM_LEN);
}

void AddClose(RecordArena& a, uint32_t tgid, int32_t fd, uint64_t gen, uint64_t sent,
              uint64_t received, uint64_t ts) {
  auto& e = a.Add<tl_conn_event>();
  FillHeader(e.hdr, TL_EV_CONN_CLOSE, tgid, tgid, ts);
  FillId(e.id, tgid, fd, gen);
  e.bytes[TL_DIR_EGRESS] = sent;
  e.bytes[TL_DIR_INGRESS] = received;
  e.role = TL_ROLE_SERVER;
  e.close_reason = TL_CLOSE_SYSCALL;
}

void AddData(RecordArena& a, uint32_t tgid, int32_t fd, uint64_t gen, uint8_t direction,
             uint64_t pos, const std::string& payload, uint64_t ts) {
  auto& e = a.Add<tl_data_event>(Bytes(payload));
  FillHeader(e.hdr, TL_EV_DATA, tgid, tgid, ts);
  FillId(e.id, tgid, fd, gen);
  e.pos = pos;
  e.enter_ts_ns = ts - kEventStepNs / 2;
  e.size = static_cast<uint32_t>(payload.size());
  e.captured = e.size;
  e.direction = direction;
  e.syscall = direction == TL_DIR_INGRESS ? TL_SYS_RECVFROM : TL_SYS_WRITEV;
  e.role = TL_ROLE_SERVER;
}

// What wrk sends and nginx answers for its default page (same sizes and header shapes).
std::string Request(size_t conn) {
  return "GET /api/v1/items/" + std::to_string(100000 + conn) +
         "?page=2 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk/4.1.0\r\n"
         "Accept: */*\r\n\r\n";
}

std::string Response() {
  std::string body(612, 'x');
  return "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 10:00:00 GMT\r\n"
         "Content-Type: text/html\r\nContent-Length: 612\r\n"
         "Last-Modified: Mon, 23 Nov 2026 09:00:00 GMT\r\nConnection: keep-alive\r\n"
         "ETag: \"6560a1b0-264\"\r\nAccept-Ranges: bytes\r\n\r\n" +
         body;
}

// ---- Sinks ---------------------------------------------------------------------------------

class NullSpanSink : public SpanSink {
 public:
  void OnSpan(Span&&) override {}
};

// What the OTLP exporter does before the network, on the pipeline's own thread, as the agent's
// BatchSpanExporter does it: each span encoded as it arrives (AppendOtlpSpan) and its buffers
// given back at once; per batch, the serialized ExportTraceServiceRequest written around those
// bytes (AppendOtlpRequest, which the agent does on its export thread; the collector-down run
// below drives the real exporter).
class ProtobufSink : public SpanSink {
 public:
  explicit ProtobufSink(size_t max_batch) : max_batch_(max_batch) { spans_.reserve(max_batch); }
  void OnSpan(Span&& span) override {
    const size_t offset = encoded_.size();
    const size_t size = AppendOtlpSpan(span, encoded_);
    spans_.push_back(EncodedSpan{.resource = std::move(span.resource),
                                 .offset = static_cast<uint32_t>(offset),
                                 .size = static_cast<uint32_t>(size)});
    SpanBuffers::Local().Give(span);
    if (spans_.size() >= max_batch_) Flush();
  }
  void Flush() override {
    if (spans_.empty()) return;
    wire_.clear();
    AppendOtlpRequest(encoded_.view(), spans_, wire_);
    bytes_out_ += wire_.size();
    spans_.clear();
    encoded_.clear();
    Encoded(wire_);
  }
  uint64_t bytes_out() const { return bytes_out_; }

 protected:
  // Each batch's bytes, once encoded (HttpExportSink sends them).
  virtual void Encoded(const ByteBuffer& /*wire*/) {}

 private:
  size_t max_batch_;
  std::vector<EncodedSpan> spans_;
  ByteBuffer encoded_;
  ByteBuffer wire_;
  uint64_t bytes_out_ = 0;
};

// An OTLP/HTTP receiver on 127.0.0.1 that reads every request whole and discards it (one
// thread, blocking reads of up to 1 MiB, an empty 200 answer), pinned to another CPU than the
// pipeline: what overhead.py's `full` mode sends into, in-process.
class DiscardingReceiver {
 public:
  explicit DiscardingReceiver(int cpu) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        listen(listen_fd_, 4) != 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      std::fprintf(stderr, "pipeline_bench: receiver: %s\n", std::strerror(errno));
      std::exit(1);
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, cpu] { Run(cpu); });
  }
  ~DiscardingReceiver() {
    shutdown(listen_fd_, SHUT_RDWR);
    if (conn_fd_ >= 0) shutdown(conn_fd_, SHUT_RDWR);
    thread_.join();
    close(listen_fd_);
  }
  uint16_t port() const { return port_; }

 private:
  void Run(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)sched_setaffinity(0, sizeof(set), &set);
    std::vector<char> buf(1 << 20);
    for (;;) {
      const int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      conn_fd_ = c;
      std::string head;
      size_t skip = 0;
      for (;;) {
        const ssize_t n = read(c, buf.data(), buf.size());
        if (n <= 0) break;
        std::string_view data(buf.data(), static_cast<size_t>(n));
        while (!data.empty()) {
          if (skip > 0) {
            const size_t take = std::min(skip, data.size());
            skip -= take;
            data.remove_prefix(take);
            if (skip == 0) Answer(c);
            continue;
          }
          head.append(data);
          data = {};
          const size_t end = head.find("\r\n\r\n");
          if (end == std::string::npos) break;
          size_t length = 0;
          for (size_t at = 0; (at = head.find('\n', at)) < end; ++at) {
            constexpr std::string_view kName = "content-length:";
            std::string line = head.substr(at + 1, kName.size());
            for (char& ch : line) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            if (line == kName) length = std::strtoull(head.c_str() + at + 1 + kName.size(), nullptr, 10);
          }
          const std::string rest = head.substr(end + 4);
          head.clear();
          if (length == 0) Answer(c);
          skip = length;
          // The body's first bytes came with the headers.
          const size_t take = std::min(skip, rest.size());
          skip -= take;
          if (take > 0 && skip == 0) Answer(c);
          head.append(rest.substr(take));
        }
      }
      conn_fd_ = -1;
      close(c);
    }
  }
  static void Answer(int c) {
    static constexpr std::string_view kOk =
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
    (void)!write(c, kOk.data(), kOk.size());
  }

  int listen_fd_ = -1;
  std::atomic<int> conn_fd_{-1};
  uint16_t port_ = 0;
  std::thread thread_;
};

// ProtobufSink's batches sent as the agent's exporter sends them (the OTLP/HTTP transport, i.e.
// curl) into a DiscardingReceiver, on the pipeline's thread: the transport's CPU (user and
// system, which on loopback includes the kernel's delivery of the segments) is counted apart.
class HttpExportSink : public ProtobufSink {
 public:
  HttpExportSink(size_t max_batch, int receiver_cpu) : ProtobufSink(max_batch), receiver_(receiver_cpu) {
    OtlpExporterConfig config;
    config.protocol = OtlpProtocol::kHttpProtobuf;
    config.endpoint = "http://127.0.0.1:" + std::to_string(receiver_.port()) + "/v1/traces";
    auto transport = CreateOtlpTransport(config);
    if (!transport.ok()) {
      std::fprintf(stderr, "pipeline_bench: transport: %s\n", transport.error().message.c_str());
      std::exit(1);
    }
    transport_ = std::move(transport).value();
  }
  uint64_t send_cpu_ns() const { return send_cpu_ns_; }
  uint64_t requests() const { return requests_; }

 protected:
  void Encoded(const ByteBuffer& wire) override {
    const uint64_t t0 = ThreadCpuNs();
    const ExportResult r = transport_->Send(wire.view(), std::chrono::steady_clock::now() + std::chrono::seconds(10));
    send_cpu_ns_ += ThreadCpuNs() - t0;
    ++requests_;
    if (!r.ok) {
      std::fprintf(stderr, "pipeline_bench: export failed: %s\n", r.message.c_str());
      std::exit(1);
    }
  }

 private:
  static uint64_t ThreadCpuNs() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
  }

  DiscardingReceiver receiver_;
  std::unique_ptr<OtlpTransport> transport_;
  uint64_t send_cpu_ns_ = 0;
  uint64_t requests_ = 0;
};

enum class Encoding { kNone, kJson, kProtobuf, kHttp, kOtlpDown };
std::string_view Name(Encoding e) {
  switch (e) {
    case Encoding::kNone: return "none";
    case Encoding::kJson: return "otlp-json";
    case Encoding::kProtobuf: return "otlp-proto";
    case Encoding::kHttp: return "otlp-http";
    case Encoding::kOtlpDown: return "otlp-down";
  }
  return "?";
}

// Whether the throughput runs keep the web view's trace store (--trace-store; the agent's
// default is on, --ui-address off drops it).
bool g_trace_store = true;
// The CPU the http encoding's receiver runs on (another than the pipeline's).
int g_receiver_cpu = 0;

// The agent's pipeline, wired as Agent::Start wires it (agent/app/agent.cpp).
struct Pipeline {
  Pipeline(Encoding encoding, size_t max_connections) {
    if (encoding == Encoding::kJson) {
      devnull.reset(std::fopen("/dev/null", "w"));
      sink = std::make_unique<JsonLinesSink>(devnull.get(), JsonLinesSink::kDefaultMaxBatchSpans,
                                             metrics);
    } else if (encoding == Encoding::kProtobuf) {
      auto pb = std::make_unique<ProtobufSink>(JsonLinesSink::kDefaultMaxBatchSpans);
      protobuf = pb.get();
      sink = std::move(pb);
    } else if (encoding == Encoding::kHttp) {
      auto http = std::make_unique<HttpExportSink>(JsonLinesSink::kDefaultMaxBatchSpans, g_receiver_cpu);
      http_export = http.get();
      protobuf = http.get();  // it encodes as ProtobufSink does, then sends
      sink = std::move(http);
    } else if (encoding == Encoding::kOtlpDown) {
      // The agent's exporter with its defaults (queue 2048 spans, batches of 512, retries for
      // up to 300 s), towards a port where every connection is refused.
      OtlpExporterConfig config;
      config.protocol = OtlpProtocol::kHttpProtobuf;
      config.endpoint = "http://127.0.0.1:1/v1/traces";
      auto exporter = CreateOtlpSpanExporter(config, metrics);
      if (!exporter.ok()) {
        std::fprintf(stderr, "pipeline_bench: exporter: %s\n", exporter.error().message.c_str());
        std::exit(1);
      }
      otlp = exporter->get();
      sink = std::move(exporter).value();
    } else {
      sink = std::make_unique<NullSpanSink>();
    }
    resources = std::make_unique<ResourceCache>(ResourceCacheOptions{}, metrics);
    filter = std::make_unique<SampledSpanFilter>(*sink, metrics);
    SpanSink* first = filter.get();
    if (g_trace_store) {
      store = std::make_unique<TraceStore>(TraceStoreOptions{}, metrics);
      tee = std::make_unique<TraceStoreSink>(*store, *filter);
      first = tee.get();
    }
    red = std::make_unique<RedMetricsSink>(*first, metrics);
    builder = std::make_unique<SpanBuilder>(SpanBuilderConfig{}, *resources, clock, *red, metrics);
    dispatcher = std::make_unique<ProtocolDispatcher>(DispatcherConfig{}, *builder, metrics);
    ConnectionTableConfig tc;
    tc.max_connections = max_connections;
    table = std::make_unique<ConnectionTable>(tc, *dispatcher, metrics, nullptr);
  }
  ~Pipeline() {
    table.reset();
    dispatcher.reset();
    builder.reset();
    if (otlp) {
      otlp->Shutdown(std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
    } else if (sink) {
      sink->Flush();
    }
  }

  uint64_t Spans() const {
    return metrics.CounterTotal("threadline_spans_created_total");
  }

  struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  MetricsRegistry metrics;
  BootClock clock;
  std::unique_ptr<std::FILE, FileCloser> devnull;
  std::unique_ptr<SpanSink> sink;
  ProtobufSink* protobuf = nullptr;
  HttpExportSink* http_export = nullptr;
  BatchSpanExporter* otlp = nullptr;
  std::unique_ptr<SampledSpanFilter> filter;
  std::unique_ptr<TraceStore> store;
  std::unique_ptr<TraceStoreSink> tee;
  std::unique_ptr<RedMetricsSink> red;
  std::unique_ptr<ResourceCache> resources;
  std::unique_ptr<SpanBuilder> builder;
  std::unique_ptr<ProtocolDispatcher> dispatcher;
  std::unique_ptr<ConnectionTable> table;
};

// ---- Throughput run ------------------------------------------------------------------------

struct ThroughputResult {
  Encoding encoding;
  uint64_t events = 0;
  uint64_t spans = 0;
  double seconds = 0;
  AllocStats alloc;  // delta over the timed rounds
  uint64_t bytes_out = 0;
  uint64_t decode_errors = 0;
  uint64_t send_cpu_ns = 0;  // http: the transport's thread CPU
  uint64_t requests = 0;     // http: export requests sent
};

enum class Workload { kKeepAlive, kClose };

class Replayer {
 public:
  Replayer(Workload workload, size_t connections) : workload_(workload), conns_(connections) {
    tgid_ = static_cast<uint32_t>(getpid());  // a real process: resources come from /proc
    response_ = Response();
    for (size_t i = 0; i < conns_; ++i) requests_.push_back(Request(i));
    base_ts_ = BootClock::NowBootNs();
    BuildRound();
  }

  size_t events_per_round() const { return round_.size(); }
  size_t spans_per_round() const { return conns_; }
  const std::string& response() const { return response_; }
  const std::string& request(size_t i) const { return requests_[i]; }

  // Keep-alive connections are opened once, before the timed rounds.
  void Open(Pipeline& p) {
    if (workload_ != Workload::kKeepAlive) return;
    RecordArena opens;
    for (size_t i = 0; i < conns_; ++i)
      AddOpen(opens, tgid_, Fd(i), i + 1, static_cast<uint16_t>(20000 + i), NextTs());
    for (size_t i = 0; i < opens.size(); ++i) (void)DecodeEvent(opens.Record(i), *p.table);
  }

  // Rewrites positions, generations and timestamps for round `r` (the kernel's part).
  void Prepare(uint64_t r) {
    size_t k = 0;
    for (size_t i = 0; i < conns_; ++i) {
      if (workload_ == Workload::kKeepAlive) {
        auto& req = round_.At<tl_data_event>(k++);
        auto& resp = round_.At<tl_data_event>(k++);
        req.pos = r * requests_[i].size();
        resp.pos = r * response_.size();
        Stamp(req.hdr, &req.enter_ts_ns);
        Stamp(resp.hdr, &resp.enter_ts_ns);
      } else {
        const uint64_t gen = r * conns_ + i + 1;
        auto& open = round_.At<tl_conn_event>(k++);
        auto& req = round_.At<tl_data_event>(k++);
        auto& resp = round_.At<tl_data_event>(k++);
        auto& close = round_.At<tl_conn_event>(k++);
        open.id.gen = req.id.gen = resp.id.gen = close.id.gen = gen;
        Stamp(open.hdr, nullptr);
        Stamp(req.hdr, &req.enter_ts_ns);
        Stamp(resp.hdr, &resp.enter_ts_ns);
        Stamp(close.hdr, nullptr);
      }
    }
  }

  // The timed part: every record of the round through the pipeline. Returns decode errors.
  uint64_t Replay(Pipeline& p) {
    uint64_t errors = 0;
    for (size_t i = 0; i < round_.size(); ++i)
      errors += DecodeEvent(round_.Record(i), *p.table) != DecodeStatus::kOk;
    p.table->Tick(ts_);  // the agent ticks after every ring poll
    if (p.store) p.store->Tick();
    return errors;
  }

 private:
  int32_t Fd(size_t i) const { return static_cast<int32_t>(10 + i); }
  uint64_t NextTs() { return ts_ += kEventStepNs; }
  void Stamp(tl_event_header& h, __u64* enter) {
    h.ts_ns = NextTs();
    if (enter) *enter = h.ts_ns - kEventStepNs / 2;
  }

  void BuildRound() {
    ts_ = base_ts_;
    for (size_t i = 0; i < conns_; ++i) {
      const int32_t fd = Fd(i);
      if (workload_ == Workload::kKeepAlive) {
        AddData(round_, tgid_, fd, i + 1, TL_DIR_INGRESS, 0, requests_[i], 0);
        AddData(round_, tgid_, fd, i + 1, TL_DIR_EGRESS, 0, response_, 0);
      } else {
        AddOpen(round_, tgid_, fd, 0, static_cast<uint16_t>(20000 + i), 0);
        AddData(round_, tgid_, fd, 0, TL_DIR_INGRESS, 0, requests_[i], 0);
        AddData(round_, tgid_, fd, 0, TL_DIR_EGRESS, 0, response_, 0);
        AddClose(round_, tgid_, fd, 0, response_.size(), requests_[i].size(), 0);
      }
    }
  }

  Workload workload_;
  size_t conns_;
  uint32_t tgid_;
  std::string response_;
  std::vector<std::string> requests_;
  uint64_t base_ts_ = 0;
  uint64_t ts_ = 0;
  RecordArena round_;
};

ThroughputResult RunThroughput(Workload workload, Encoding encoding, size_t connections,
                               uint64_t target_events) {
  Pipeline p(encoding, 65536);
  Replayer replay(workload, connections);
  replay.Open(p);
  // Warm-up: hash tables, resource cache and parser buffers reach their steady size.
  const uint64_t warm_rounds = std::max<uint64_t>(2, 20000 / replay.events_per_round());
  uint64_t r = 0;
  for (; r < warm_rounds; ++r) {
    replay.Prepare(r);
    replay.Replay(p);
  }
  const uint64_t rounds = std::max<uint64_t>(1, target_events / replay.events_per_round());
  ThroughputResult res;
  res.encoding = encoding;
  const uint64_t spans_before = p.Spans();
  // The sinks' counters include the warm-up: only the timed rounds count.
  const uint64_t bytes_before = p.protobuf ? p.protobuf->bytes_out() : 0;
  const uint64_t send_ns_before = p.http_export ? p.http_export->send_cpu_ns() : 0;
  const uint64_t requests_before = p.http_export ? p.http_export->requests() : 0;
  const AllocStats a0 = CurrentAllocStats();
  std::chrono::nanoseconds busy{0};
  for (uint64_t i = 0; i < rounds; ++i, ++r) {
    replay.Prepare(r);
    const auto t0 = std::chrono::steady_clock::now();
    TL_CALLGRIND_TOGGLE();
    res.decode_errors += replay.Replay(p);
    TL_CALLGRIND_TOGGLE();
    busy += std::chrono::steady_clock::now() - t0;
  }
  {
    // Spans still batched in the sink are encoded in the timed part too.
    const auto t0 = std::chrono::steady_clock::now();
    TL_CALLGRIND_TOGGLE();
    p.sink->Flush();
    TL_CALLGRIND_TOGGLE();
    busy += std::chrono::steady_clock::now() - t0;
  }
  const AllocStats a1 = CurrentAllocStats();
  res.events = rounds * replay.events_per_round();
  res.spans = p.Spans() - spans_before;
  res.seconds = std::chrono::duration<double>(busy).count();
  res.alloc = AllocStats{a1.allocations - a0.allocations, a1.bytes - a0.bytes,
                         a1.live_bytes - a0.live_bytes};
  if (p.protobuf) res.bytes_out = p.protobuf->bytes_out() - bytes_before;  // JSON lines go to /dev/null uncounted
  if (p.http_export) {
    res.send_cpu_ns = p.http_export->send_cpu_ns() - send_ns_before;
    res.requests = p.http_export->requests() - requests_before;
  }
  return res;
}

// ---- Memory run ----------------------------------------------------------------------------

uint64_t StatusKb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
      return std::stoull(line.substr(n + 1));
  }
  return 0;
}

struct MemoryResult {
  size_t connections = 0;
  size_t tracked = 0;
  uint64_t rss_before_kb = 0;
  uint64_t rss_after_kb = 0;
  int64_t heap_before = 0;
  int64_t heap_after = 0;
};

// `n` keep-alive connections, each with one exchange done and a second request read whose
// response is not written yet (the state a busy server's connections are in), all left open.
MemoryResult RunMemory(size_t n) {
  MemoryResult m;
  m.connections = n;
  malloc_trim(0);
  Pipeline p(Encoding::kNone, 65536);
  Replayer shapes(Workload::kKeepAlive, 1);
  const uint32_t tgid = static_cast<uint32_t>(getpid());
  RecordArena a;
  // One connection through first, so lazily built state (resource cache) is not charged per
  // connection.
  uint64_t ts = BootClock::NowBootNs();
  auto feed = [&](size_t conn_index, bool first_exchange_only) {
    const int32_t fd = static_cast<int32_t>(100 + conn_index);
    const uint64_t gen = conn_index + 1;
    const std::string req = Request(conn_index);
    a.Clear();
    AddOpen(a, tgid, fd, gen, static_cast<uint16_t>(1024 + conn_index % 60000), ts += kEventStepNs);
    AddData(a, tgid, fd, gen, TL_DIR_INGRESS, 0, req, ts += kEventStepNs);
    AddData(a, tgid, fd, gen, TL_DIR_EGRESS, 0, shapes.response(), ts += kEventStepNs);
    if (!first_exchange_only)
      AddData(a, tgid, fd, gen, TL_DIR_INGRESS, req.size(), req, ts += kEventStepNs);
    for (size_t i = 0; i < a.size(); ++i) (void)DecodeEvent(a.Record(i), *p.table);
  };
  feed(n + 1, true);
  m.rss_before_kb = StatusKb("VmRSS");
  m.heap_before = CurrentAllocStats().live_bytes;
  for (size_t i = 0; i < n; ++i) feed(i, false);
  p.table->Tick(ts);
  m.rss_after_kb = StatusKb("VmRSS");
  m.heap_after = CurrentAllocStats().live_bytes;
  m.tracked = p.table->size() - 1;  // not the warm-up connection
  return m;
}

// ---- Collector down -----------------------------------------------------------------------

struct CollectorDownResult {
  double seconds = 0;
  uint64_t spans = 0;
  uint64_t dropped_queue_full = 0;
  uint64_t failed_requests = 0;
  uint64_t rss_start_kb = 0;  // after the first second (queue full, steady state)
  uint64_t rss_max_kb = 0;
  uint64_t rss_end_kb = 0;
};

// Keep-alive spans into the OTLP exporter while its collector is down, for `seconds`.
CollectorDownResult RunCollectorDown(size_t connections, double seconds) {
  CollectorDownResult res;
  Pipeline p(Encoding::kOtlpDown, 65536);
  Replayer replay(Workload::kKeepAlive, connections);
  replay.Open(p);
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (uint64_t r = 0; elapsed() < seconds; ++r) {
    replay.Prepare(r);
    replay.Replay(p);
    if (r % 16 == 0) {
      const uint64_t rss = StatusKb("VmRSS");
      if (!res.rss_start_kb && elapsed() >= std::min(1.0, seconds / 4)) res.rss_start_kb = rss;
      res.rss_max_kb = std::max(res.rss_max_kb, rss);
    }
  }
  res.seconds = elapsed();
  res.rss_end_kb = StatusKb("VmRSS");
  res.spans = p.Spans();
  res.dropped_queue_full =
      p.metrics.GetCounter("threadline_spans_dropped_total", {{"reason", "queue_full"}}).Value();
  res.failed_requests =
      p.metrics.GetCounter("threadline_export_requests_total", {{"result", "retryable_error"}})
          .Value();
  return res;
}

// ---- Main ----------------------------------------------------------------------------------

std::string Thousands(double v) {
  std::string s = std::to_string(static_cast<uint64_t>(v + 0.5));
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

int Main(int argc, char** argv) {
  std::string workload_name = "keepalive";
  std::string encode = "all";
  size_t connections = 1000;
  uint64_t events = 2'000'000;
  size_t memory_connections = 10000;
  int cpu = -1;
  bool smoke = false;
  CLI::App app{"threadline pipeline benchmark: generated kernel events through ingest -> conn -> "
               "protocols -> spans -> OTLP encoding, on one core"};
  app.add_option("--workload", workload_name, "keepalive | close")
      ->check(CLI::IsMember({"keepalive", "close"}));
  app.add_option("--encode", encode,
                 "none | json | proto | http (proto sent by the OTLP/HTTP transport into a local "
                 "discarding receiver; not in all) | all")
      ->check(CLI::IsMember({"none", "json", "proto", "http", "all"}));
  app.add_option("--connections", connections, "Connections the events are spread over")
      ->check(CLI::Range(1, 60000));
  app.add_option("--events", events, "Kernel events per encoding (timed)");
  app.add_option("--memory-connections", memory_connections,
                 "Concurrent open connections for the memory run (0: skip)");
  double collector_down_s = 5;
  app.add_option("--collector-down-seconds", collector_down_s,
                 "Seconds of spans into an exporter whose collector is down (0: skip)");
  app.add_option("--cpu", cpu, "CPU to pin to (-1: the last one)");
  std::string trace_store = "on";
  app.add_option("--trace-store", trace_store, "on (the agent's default) | off: keep the web view's trace store")
      ->check(CLI::IsMember({"on", "off"}));
  app.add_flag("--smoke", smoke, "Small counts: checks that it runs and produces numbers");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  g_trace_store = trace_store == "on";
  if (smoke) {
    events = std::min<uint64_t>(events, 50'000);
    memory_connections = std::min<size_t>(memory_connections, 1000);
    connections = std::min<size_t>(connections, 100);
    collector_down_s = std::min(collector_down_s, 2.0);
  }
  spdlog::set_level(spdlog::level::warn);

  const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpu < 0) cpu = static_cast<int>(ncpu - 1);
  g_receiver_cpu = cpu == 0 && ncpu > 1 ? 1 : 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    std::fprintf(stderr, "pipeline_bench: cannot pin to CPU %d: %s\n", cpu, std::strerror(errno));
    return 1;
  }

  const Workload workload = workload_name == "close" ? Workload::kClose : Workload::kKeepAlive;
  std::vector<Encoding> encodings;
  if (encode == "none" || encode == "all") encodings.push_back(Encoding::kNone);
  if (encode == "json" || encode == "all") encodings.push_back(Encoding::kJson);
  if (encode == "proto" || encode == "all") encodings.push_back(Encoding::kProtobuf);
  if (encode == "http") encodings.push_back(Encoding::kHttp);

  Replayer shape(workload, 1);
  std::printf("pipeline_bench: workload %s, %zu connections, %s per span; request %zu B, "
              "response %zu B; trace store %s; pinned to CPU %d of %ld\n",
              workload_name.c_str(), connections,
              workload == Workload::kKeepAlive ? "2 kernel events (request read, response write)"
                                               : "4 kernel events (open, request, response, close)",
              shape.request(0).size(), shape.response().size(), trace_store.c_str(), cpu, ncpu);
  std::printf("%-11s %12s %10s %9s %12s %11s %11s\n", "encoding", "events/s", "spans/s",
              "ns/event", "alloc B/span", "allocs/span", "wire B/span");
  bool ok = true;
  for (Encoding enc : encodings) {
    ThroughputResult r = RunThroughput(workload, enc, connections, events);
    const double eps = r.events / r.seconds;
    const double sps = r.spans / r.seconds;
    const double spans = std::max<double>(1, static_cast<double>(r.spans));
    std::printf("%-11s %12s %10s %9.0f %12.0f %11.1f %11s\n", std::string(Name(enc)).c_str(),
                Thousands(eps).c_str(), Thousands(sps).c_str(), 1e9 * r.seconds / r.events,
                r.alloc.bytes / spans, r.alloc.allocations / spans,
                r.bytes_out ? Thousands(r.bytes_out / spans).c_str() : "-");
    std::printf("RESULT {\"bench\":\"pipeline\",\"workload\":\"%s\",\"encoding\":\"%s\",\"events\":%llu,"
                "\"spans\":%llu,\"seconds\":%.6f,\"events_per_s\":%.0f,\"spans_per_s\":%.0f,"
                "\"alloc_bytes_per_span\":%.1f,\"allocs_per_span\":%.2f,\"decode_errors\":%llu}\n",
                workload_name.c_str(), std::string(Name(enc)).c_str(),
                static_cast<unsigned long long>(r.events), static_cast<unsigned long long>(r.spans),
                r.seconds, eps, sps, r.alloc.bytes / spans, r.alloc.allocations / spans,
                static_cast<unsigned long long>(r.decode_errors));
    if (enc == Encoding::kHttp) {
      std::printf("otlp-http: %llu export requests, %.0f B each; the transport's thread CPU %.0f ns "
                  "per span (%.1f us per request), included above\n",
                  static_cast<unsigned long long>(r.requests),
                  static_cast<double>(r.bytes_out) / static_cast<double>(std::max<uint64_t>(1, r.requests)),
                  static_cast<double>(r.send_cpu_ns) / spans,
                  static_cast<double>(r.send_cpu_ns) / 1e3 / static_cast<double>(std::max<uint64_t>(1, r.requests)));
      std::printf("RESULT {\"bench\":\"otlp_http_send\",\"workload\":\"%s\",\"requests\":%llu,"
                  "\"bytes\":%llu,\"send_cpu_ns_per_span\":%.1f}\n",
                  workload_name.c_str(), static_cast<unsigned long long>(r.requests),
                  static_cast<unsigned long long>(r.bytes_out), static_cast<double>(r.send_cpu_ns) / spans);
    }
    const uint64_t expected_spans = r.events / shape.events_per_round();
    if (r.spans == 0 || r.events == 0 || r.decode_errors || r.spans < expected_spans * 9 / 10) {
      std::fprintf(stderr, "pipeline_bench: %s: %llu spans from %llu events (expected ~%llu), "
                   "%llu decode errors\n", std::string(Name(enc)).c_str(),
                   static_cast<unsigned long long>(r.spans), static_cast<unsigned long long>(r.events),
                   static_cast<unsigned long long>(expected_spans),
                   static_cast<unsigned long long>(r.decode_errors));
      ok = false;
    }
  }

  if (memory_connections) {
    MemoryResult m = RunMemory(memory_connections);
    const double n = static_cast<double>(m.connections);
    std::printf("memory: %zu concurrent keep-alive connections (one exchange done, one request "
                "waiting for its response): tracked %zu; RSS %.1f -> %.1f MiB (+%.0f B/conn); "
                "live heap +%.1f MiB (%.0f B/conn)\n",
                m.connections, m.tracked, m.rss_before_kb / 1024.0, m.rss_after_kb / 1024.0,
                (static_cast<double>(m.rss_after_kb) - static_cast<double>(m.rss_before_kb)) * 1024 / n,
                static_cast<double>(m.heap_after - m.heap_before) / (1 << 20),
                static_cast<double>(m.heap_after - m.heap_before) / n);
    std::printf("RESULT {\"bench\":\"memory\",\"connections\":%zu,\"tracked\":%zu,"
                "\"rss_before_kb\":%llu,\"rss_after_kb\":%llu,\"heap_bytes_per_conn\":%.0f}\n",
                m.connections, m.tracked, static_cast<unsigned long long>(m.rss_before_kb),
                static_cast<unsigned long long>(m.rss_after_kb),
                static_cast<double>(m.heap_after - m.heap_before) / n);
    if (m.tracked != m.connections) {
      std::fprintf(stderr, "pipeline_bench: memory run tracks %zu of %zu connections\n", m.tracked,
                   m.connections);
      ok = false;
    }
  }
  if (collector_down_s > 0) {
    CollectorDownResult d = RunCollectorDown(connections, collector_down_s);
    std::printf("collector down: %.1f s, %s spans made (%s/s), %s dropped (queue full), %llu "
                "export requests failed; RSS %.1f MiB after the first second, max %.1f, end %.1f\n",
                d.seconds, Thousands(static_cast<double>(d.spans)).c_str(),
                Thousands(static_cast<double>(d.spans) / d.seconds).c_str(),
                Thousands(static_cast<double>(d.dropped_queue_full)).c_str(),
                static_cast<unsigned long long>(d.failed_requests), d.rss_start_kb / 1024.0,
                d.rss_max_kb / 1024.0, d.rss_end_kb / 1024.0);
    std::printf("RESULT {\"bench\":\"collector_down\",\"seconds\":%.2f,\"spans\":%llu,"
                "\"dropped_queue_full\":%llu,\"failed_requests\":%llu,\"rss_start_kb\":%llu,"
                "\"rss_max_kb\":%llu,\"rss_end_kb\":%llu}\n",
                d.seconds, static_cast<unsigned long long>(d.spans),
                static_cast<unsigned long long>(d.dropped_queue_full),
                static_cast<unsigned long long>(d.failed_requests),
                static_cast<unsigned long long>(d.rss_start_kb),
                static_cast<unsigned long long>(d.rss_max_kb),
                static_cast<unsigned long long>(d.rss_end_kb));
    // Bounded: whatever could not be queued is counted, and memory does not follow the span
    // count (2048 queued spans are a few MiB; allow for allocator slack).
    const uint64_t queue_capacity = 2048 + 512;
    if (d.spans > queue_capacity && d.dropped_queue_full + queue_capacity < d.spans) {
      std::fprintf(stderr, "pipeline_bench: collector down: %llu spans, only %llu counted as "
                   "dropped\n", static_cast<unsigned long long>(d.spans),
                   static_cast<unsigned long long>(d.dropped_queue_full));
      ok = false;
    }
    if (d.rss_max_kb > d.rss_start_kb + 64 * 1024) {
      std::fprintf(stderr, "pipeline_bench: collector down: RSS grew by more than 64 MiB\n");
      ok = false;
    }
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace threadline::bench

int main(int argc, char** argv) { return threadline::bench::Main(argc, argv); }
