// The spans stage, one builder for every protocol: one SERVER span per operation a traced
// process serves, one CLIENT span per operation it sends, built from the protocols stage's
// neutral Records (protocols/record.h).
//
// Identity is fixed when a request is whole (OnRequest), not when its operation ends, so a
// client call made while a server request is in progress can name it as parent although the
// server span finishes last. The parent comes from an ordered list of rules
// (agent/spans/parent_rules.h), recorded in `threadline.parent.source`. The span's name, status
// and attributes come from Describe (protocols/describe.h), the only place that knows
// semantic conventions; nothing here knows which protocol a record was.
//
// Kernel-chosen ids (traceparent injection, bpf/inject.bpf.c): the kernel reports the ids it
// chose for a request (OnKernelTraceContext) before the request's bytes, with the stream
// position of its first byte; the request at that position uses exactly those ids: a server
// span takes the kernel's span id (downstream requests the kernel rewrote name it as parent)
// and, without a header, its trace id; a client span into which the kernel injected a
// traceparent takes the injected ids (parent rule "kernel"), and records
// threadline.traceparent.injected. The receiving side sees an ordinary header.
//
// TCP header option (bpf/tcpopt/wire.bpf.h): a client span whose ids the kernel put in the option
// records threadline.tcp_option.sent (rule "kernel" as above). On the receiving side the kernel
// reports what arrived (TL_CTX_REMOTE) with the stream range of the segments that carried it;
// the first server request starting at or after the range's start gets it (rule "tcp_option"),
// as the sender gives the ids to the first request starting at or after the write that carried
// them (an HTTP/2 preface write carries the first HEADERS' context). Contexts no request claims,
// or that the kernel's own choice of the request's ids did not take, are counted unmatched.
//
// Sampling (agent/spans/sampler.h): a root's sampled flag is the ratio rule on its new trace
// id; every other span takes its parent's flag. Unsampled spans are built and passed on like
// the others, so the RED metrics count every request; they are dropped after the metrics
// (agent/pipeline/sampled_filter.h).
//
// Timestamps: server spans run from the read that returned the request's first byte to the
// write that sent the response's last byte; client spans from the entry of the write that sent
// the request's first byte to the read that returned the response's last byte (or the close
// that ended the wait). Boot-clock ns from the kernel, converted to epoch ns with BootClock.
//
// Tracing-health counters (docs/metrics.md): every request whose identity is fixed is a span
// started (threadline_spans_started_total{kind}); it either ends as a built span
// (threadline_spans_created_total{kind}, "ended", counted with its parent rule in
// threadline_spans_parent_source_total{kind,source}) or is lost (threadline_spans_lost_total
// {reason}: the protocol gave the request up, its connection ended without it, the in-flight
// bound pushed it out). So started = created + lost + in flight, at any time.
//
// Single-threaded (the consumer thread). Bounded: per-connection state is dropped with the
// connection; the rules bound their own tables.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/common/clock.h"
#include "agent/common/metrics.h"
#include "agent/common/node_recycler.h"
#include "agent/discovery/resource.h"
#include "agent/ingest/event_types.h"
#include "agent/protocols/describe.h"
#include "agent/protocols/record.h"
#include "agent/spans/parent_rules.h"
#include "agent/spans/sampler.h"
#include "agent/spans/span.h"

namespace threadline {

struct SpanBuilderConfig {
  DescribeOptions describe;  // the conventions' settings (routes, redaction)
  ParentRulesConfig parents;
  // Fraction of new traces kept (sampling.ratio, TraceIdRatioSampler); spans with a parent
  // follow its sampled flag.
  double sampling_ratio = 1.0;
};

class SpanBuilder final : public RecordSink, private InFlightSpans {
 public:
  // `resources`, `clock`, `out` and `metrics` must outlive the builder.
  SpanBuilder(SpanBuilderConfig config, ResourceCache& resources, const BootClock& clock,
              SpanSink& out, MetricsRegistry& metrics);
  ~SpanBuilder() override;

  void OnConnectionOpened(const ConnectionInfo& c) override;
  void OnRequest(const ConnectionInfo& c, Role role, const RequestView& request) override;
  void OnRecord(const ConnectionInfo& c, Role role, Record&& record) override;
  void OnConnectionDone(const ConnectionInfo& c) override;
  // Ids the kernel chose for the request whose first byte is at e.pos of that connection.
  void OnKernelTraceContext(const TraceCtxEvent& e);

  // Inserts a parent rule before the rule named `before` (at the end when there is none).
  void InsertParentRule(std::unique_ptr<ParentRule> rule, std::string_view before);

 private:
  // A request whose identity is fixed and whose span is not built yet.
  struct InFlight {
    uint32_t stream_id = 0;
    uint64_t first_pos = 0;
    uint64_t first_ts = 0;
    Identity id;
  };
  struct ConnState {
    std::vector<InFlight> in_flight;  // in request order per stream
    std::vector<KernelIds> kernel_ids;  // bounded; consumed by the request they name
    std::vector<RemoteContext> remote;  // bounded, in stream order; consumed by position
  };

  Identity* Find(const ConnId& conn, const SpanId& span) override;
  // The state of `conn`, made on first use with the vectors of a connection that ended (see
  // spare_states_).
  ConnState& StateOf(const ConnId& conn);
  // Fixes the request's identity and registers it in flight.
  void Fix(const ConnectionInfo& c, Role role, const RequestView& request);
  std::optional<KernelIds> TakeKernelIds(const ConnectionInfo& c, Role role,
                                         const RequestView& request);
  // The TCP option context of the server request: the latest whose range starts at or before
  // its first byte (earlier ones marked no request that was parsed: counted unmatched, dropped).
  std::optional<RemoteContext> TakeRemoteContext(const ConnectionInfo& c, const RequestView& request);
  // The in-flight identity of this request (fixed now if it was not).
  Identity TakeIdentity(const ConnectionInfo& c, Role role, const RequestView& request);
  Span Build(const ConnectionInfo& c, Role role, const Record& r, Identity id) const;
  uint64_t Epoch(uint64_t boot_ns) const { return clock_.ToEpochNs(boot_ns); }

  SpanBuilderConfig config_;
  TraceIdRatioSampler sampler_;
  ResourceCache& resources_;
  const BootClock& clock_;
  SpanSink& out_;
  // One entry per connection with a request in flight; the map's nodes are reused, not
  // allocated per connection.
  NodeRecycler conn_nodes_;  // before conns_: outlives it
  RecyclingMap<ConnId, ConnState, ConnIdHash> conns_;
  // States of ended connections, emptied with their vectors' storage kept, for the next
  // connections: with a connection per request, each one's in-flight vector cost an allocation
  // (pipeline_bench --workload close). Bounded in number and in what each may keep.
  std::vector<ConnState> spare_states_;
  std::vector<std::unique_ptr<ParentRule>> rules_;

  // The counter of threadline_spans_parent_source_total for (role, source): found by a short
  // linear search (a handful of rule names), made on first use.
  Counter& ParentSourceCounter(Role role, std::string_view source);

  MetricsRegistry& metrics_;
  Counter& server_spans_;
  Counter& client_spans_;
  Counter& server_started_;
  Counter& client_started_;
  Counter& lost_abandoned_;
  Counter& lost_connection_closed_;
  Counter& lost_in_flight_limit_;
  struct SourceCounter {
    Role role;
    std::string source;
    Counter* counter;
  };
  std::vector<SourceCounter> parent_sources_;
  Counter& no_request_;
  Counter& unknown_role_;
  Counter& kernel_ids_used_;
  Counter& kernel_ids_unmatched_;
  Counter& kernel_trace_mismatch_;
  Counter& remote_matched_;
  Counter& remote_unmatched_;
  Counter& remote_header_wins_;
};

}  // namespace threadline
