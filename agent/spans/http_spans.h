// The spans stage for HTTP/1.x: one SERVER span per request a traced process serves, one CLIENT
// span per request it sends, built from the protocols stage's Exchanges.
//
// Parent choice, in order; the span records the rule in `threadline.parent.source`:
//   header  a valid `traceparent` in the request (W3C rules; malformed = absent). For a server
//           span the caller is the parent; for a client span the header means the application
//           is instrumented and already made its own span for this call: ours joins that trace
//           as its child and links to it rather than inventing a conflicting parent.
//   tuple   the server end of a connection whose client end is a traced process on this node:
//           the client span is the parent (agent/spans/peer_linker.h), when no header said so.
//   thread  a client request written by a thread that is handling a server request of the same
//           process (read the request, response not written yet): thread-per-request servers.
//   root    none of the above: a new random trace id.
// Kernel-chosen ids (traceparent injection, bpf/inject.bpf.c): when the kernel reported ids for
// a request (OnKernelTraceContext, before its bytes), the span uses exactly those: a server
// span takes the kernel's span id (downstream requests the kernel rewrote name it as parent)
// and, without a header, its trace id; a client span into which the kernel injected a
// traceparent takes the injected trace id and span id, its parent is the thread's server span
// the kernel named ("thread"; none: "root"), and it records threadline.traceparent.injected.
// The receiving side sees an ordinary header ("header"): injected and application headers look
// the same on the wire.
// Sampling (agent/spans/sampler.h): a root's sampled flag is the ratio rule on its new trace
// id; every other span takes its parent's flag (header, thread, tuple; kernel-chosen ids carry
// the flag the kernel decided by the same rule). Unsampled spans are built and passed on like
// the others, so the RED metrics count every request; they are dropped after the metrics
// (agent/pipeline/sampled_filter.h).
// A span's identity is fixed when its request is complete (OnHttp1Request), not when its
// response ends, so a client call made while a server request is in progress can name it as
// parent even though the server span finishes last.
//
// Timestamps: server spans run from the read that returned the request's first byte to the
// write that sent the response's last byte; client spans from the entry of the write that sent
// the request's first byte to the read that returned the response's last byte. Boot-clock ns
// from the kernel, converted to epoch ns with BootClock.
//
// Single-threaded (the consumer thread). Bounded: per-connection state is dropped with the
// connection; the thread table is capped.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>

#include "agent/common/clock.h"
#include "agent/common/metrics.h"
#include "agent/discovery/resource.h"
#include "agent/protocols/dispatcher.h"
#include "agent/spans/peer_linker.h"
#include "agent/spans/redaction.h"
#include "agent/spans/route.h"
#include "agent/spans/sampler.h"
#include "agent/spans/span.h"

namespace threadline {

struct HttpSpanConfig {
  RouteTable routes;           // user route patterns; unmatched paths get an inferred route
  RedactionOptions redaction;  // extra sensitive query keys
  size_t max_active_threads = 65536;
  // Same-node tuple linking (--same-node-linking off: e.g. processes in separate network
  // namespaces of one node that should be linked only by the header, as across nodes).
  bool same_node_linking = true;
  // Fraction of new traces kept (sampling.ratio, TraceIdRatioSampler); spans with a parent
  // follow its sampled flag.
  double sampling_ratio = 1.0;
};

class HttpSpanBuilder : public ExchangeSink {
 public:
  // `resources`, `clock`, `out` and `metrics` must outlive the builder.
  HttpSpanBuilder(HttpSpanConfig config, ResourceCache& resources, const BootClock& clock,
                  SpanSink& out, MetricsRegistry& metrics);

  void OnHttp1Request(const ConnectionInfo& c, Role role, const http1::Message& request) override;
  void OnHttp1Exchange(const ConnectionInfo& c, Role role, http1::Exchange&& e) override;
  void OnConnectionOpened(const ConnectionInfo& c) override;
  void OnConnectionDone(const ConnectionInfo& c) override;
  // Ids the kernel chose for the request whose bytes come next on that connection.
  void OnKernelTraceContext(const TraceCtxEvent& e);

  size_t active_threads() const { return active_by_thread_.size(); }

 private:
  // Who a span is, decided when its request completes.
  struct Identity {
    uint64_t request_ts = 0;  // request.first_chunk.ts_ns: matches the Exchange later
    uint32_t request_tid = 0;
    TraceId trace_id;
    SpanId span_id;
    SpanId parent_span_id;
    uint32_t flags = kTraceFlagSampled;
    std::string trace_state;
    bool parent_is_remote = false;
    std::string_view parent_source = "root";
    std::optional<SpanLink> link;
    bool injected = false;  // the kernel wrote traceparent with these ids into the request
  };
  // Ids reported by the kernel, until the request they belong to is parsed.
  struct KernelIds {
    uint64_t enter_ts_ns = 0;
    uint32_t tid = 0;
    uint8_t kind = 0;  // enum tl_ctx_kind
    uint8_t flags = 0;
    uint8_t trace_flags = 0;
    TraceId trace_id;
    SpanId span_id;
    SpanId parent_span_id;
  };
  struct ActiveServer {
    ConnId conn;
    TraceId trace_id;
    SpanId span_id;
    uint32_t flags = 0;
    std::string trace_state;
    uint64_t since_ts = 0;
  };
  struct ConnState {
    std::deque<Identity> pending;  // requests complete, exchange not emitted yet (FIFO)
    std::deque<KernelIds> kernel_ids;  // bounded; consumed by the request they name
  };
  // A server request whose client end is traced here but whose client call was not seen yet.
  struct WaitingServer {
    ConnId conn;
    SpanId span_id;
    uint64_t thread_key = 0;
  };
  // The client call arrived for a waiting server request: adopt its context.
  void ApplyPeer(PeerLinker::Token token, const PeerLinker::Call& call);

  Identity Decide(const ConnectionInfo& c, Role role, const http1::Message& request,
                  const KernelIds* kernel = nullptr) const;
  std::optional<KernelIds> TakeKernelIds(const ConnectionInfo& c, Role role,
                                         const http1::Message& request);
  // The identity decided for this exchange's request, or one decided now (request seen only
  // at exchange time, e.g. after a gap).
  Identity TakeIdentity(const ConnectionInfo& c, Role role, const http1::Message& request);
  Span Build(const ConnectionInfo& c, Role role, const http1::Exchange& e, Identity id) const;
  void FillAttributes(const ConnectionInfo& c, Role role, const http1::Exchange& e,
                      Span& span) const;
  uint64_t Epoch(uint64_t boot_ns) const { return clock_.ToEpochNs(boot_ns); }
  static uint64_t ThreadKey(uint32_t tgid, uint32_t tid) {
    return (static_cast<uint64_t>(tgid) << 32) | tid;
  }

  HttpSpanConfig config_;
  TraceIdRatioSampler sampler_;
  ResourceCache& resources_;
  const BootClock& clock_;
  SpanSink& out_;
  std::unordered_map<ConnId, ConnState, ConnIdHash> conns_;
  std::unordered_map<uint64_t, ActiveServer> active_by_thread_;

  Counter& server_spans_;
  Counter& client_spans_;
  Counter& no_request_;
  Counter& thread_table_full_;
  Counter& unknown_role_;
  Counter& kernel_ids_used_;
  Counter& kernel_ids_unmatched_;
  Counter& kernel_trace_mismatch_;
  PeerLinker peers_;
  std::unordered_map<PeerLinker::Token, WaitingServer> waiting_servers_;
};

}  // namespace threadline
