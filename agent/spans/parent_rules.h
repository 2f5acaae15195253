// Who a span's parent is: an ordered list of small rules, asked in turn when a request becomes
// whole, until one decides. The one that decides is recorded in `threadline.parent.source`.
// Rules know requests only through the neutral RequestView (protocols/record.h): nothing here
// knows HTTP or any other protocol.
//
// Default order (DefaultParentRules):
//   kernel  a client request into which the kernel injected a traceparent: exactly those ids
//           (agreement with the kernel; the source is the kernel's context rule's: "thread",
//           "goroutine", "node_async" or "root")
//   header  a valid W3C traceparent in the request's carrier. For a server span the caller is the
//           parent; for a client span the header means the application is instrumented and made
//           its own span for this call: ours joins that trace as its child and links to it.
//   tcp_option  a server request the sender's agent marked with its context in a TCP header
//           option (bpf/tcpopt/wire.bpf.h; the first request starting at or after the segment
//           that carried it): the sender's client span is the parent, in its trace, with its
//           sampled flag
//   tuple   a server request whose client end is a traced process on this node: the client span
//           is the parent (agent/spans/peer_linker.h); possibly decided later, when the client
//           call is seen after the server request (the identity in flight is then updated)
//   context, forwarded, ambiguous (agent/spans/context_rules.h): client requests by the kernel's
//           context verdict ("thread", "goroutine", "node_async"), else by forwarded evidence
//           ("forwarded_header", "forwarded_target"), else "ambiguous" when the sender had
//           several requests in flight: never a guess
//   root    none of the above: a new trace (the kernel's trace id when it chose one for this
//           server request), sampled by the ratio rule
// Insert rules with SpanBuilder::InsertParentRule.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/conn/stream_consumer.h"
#include "agent/protocols/record.h"
#include "agent/spans/peer_linker.h"
#include "agent/spans/sampler.h"
#include "agent/spans/span.h"

namespace threadline {

// Who a span is, fixed when its request is whole (so a call made while a server request is in
// progress can name it as parent although the server span ends last).
struct Identity {
  TraceId trace_id;
  SpanId span_id;
  SpanId parent_span_id;
  uint32_t flags = kTraceFlagSampled;
  std::string trace_state;
  bool parent_is_remote = false;
  std::string_view parent_source;  // static storage: a rule's name (or the kernel's choice)
  std::optional<SpanLink> link;
  bool injected = false;  // the kernel wrote traceparent with these ids into the request
  bool tcp_option_sent = false;  // the kernel put these ids in a TCP header option
};

// Ids the kernel chose for a request (traceparent injection, TL_EV_TRACE_CTX), tied to the stream
// position of the request's first byte.
struct KernelIds {
  Direction direction = Direction::kEgress;
  uint64_t pos = 0;
  uint32_t tid = 0;
  uint8_t kind = 0;  // enum tl_ctx_kind
  uint8_t flags = 0;  // TL_CTX_F_*
  uint8_t trace_flags = 0;
  uint32_t ctx_tag = 0;  // the kernel's context verdict the ids came from (TL_CTX_TAG_*)
  TraceId trace_id;
  SpanId span_id;
  SpanId parent_span_id;
};

// A context that arrived in a TCP header option (TL_CTX_REMOTE): it marks the request whose
// first byte lies in the stream range [pos, pos + len) (the bytes of the segments that carried it).
struct RemoteContext {
  uint64_t pos = 0;
  uint64_t len = 0;
  uint8_t trace_flags = 0;
  TraceId trace_id;
  SpanId span_id;  // the sender's client span: the parent
};

// A request whose parent is being chosen.
struct ParentQuery {
  const ConnectionInfo& conn;
  Role role;  // kServer or kClient
  const RequestView& request;
  const KernelIds* kernel;  // ids the kernel chose for this request, or nullptr
  const RemoteContext* remote = nullptr;  // a TCP header option's context for it, or nullptr
};

// Identities fixed whose spans are not built yet, for rules that complete or read them later.
class InFlightSpans {
 public:
  virtual ~InFlightSpans() = default;
  virtual Identity* Find(const ConnId& conn, const SpanId& span) = 0;
};

class ParentRule {
 public:
  virtual ~ParentRule() = default;
  // The value of threadline.parent.source when this rule decides.
  virtual std::string_view name() const = 0;
  // Decides the parent (and the trace) of the request into `id` and returns true, or returns
  // false to leave it to the next rule. `id.span_id` is already set.
  virtual bool Choose(const ParentQuery& q, Identity& id) = 0;
  // The request's identity is fixed (by whichever rule).
  virtual void OnIdentity(const ParentQuery& /*q*/, const Identity& /*id*/) {}
  // The request's span was built: its operation is over.
  virtual void OnSpanEnd(const ConnectionInfo& /*conn*/, Role /*role*/,
                         const RequestView& /*request*/, const Identity& /*id*/) {}
  virtual void OnConnectionOpened(const ConnectionInfo& /*conn*/) {}
  virtual void OnConnectionDone(const ConnectionInfo& /*conn*/) {}
};

struct ParentRulesConfig {
  // Same-node tuple linking (--same-node-linking off: e.g. processes in separate network
  // namespaces of one node that should be linked only by the header, as across nodes).
  bool same_node_linking = true;
};

// kernel, header, tcp_option, tuple, context, forwarded, ambiguous, root (see the top of this file).
std::vector<std::unique_ptr<ParentRule>> DefaultParentRules(const ParentRulesConfig& config,
                                                            const TraceIdRatioSampler& sampler,
                                                            InFlightSpans& in_flight,
                                                            MetricsRegistry& metrics);


}  // namespace threadline
