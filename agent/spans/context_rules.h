// Parent rules for client requests made while servers have several requests in flight (issue
// #13): never a wrong parent, and the right one where there is evidence. They run after the
// header and tuple rules, in this order:
//
//   context           the kernel's verdict (bpf/capture/ctx.bpf.h) on the data event that
//                     started the request (ChunkMeta::ctx_tag): the server request the sending
//                     thread (thread per request), goroutine (Go) or Node async context (the
//                     --node-async-context helper) works for. Recorded as "thread", "goroutine"
//                     or "node_async". The kernel numbered that server request when it read it;
//                     the span of the same number in the same process is the parent.
//   forwarded_header  the request carries a correlation header (X-Request-Id, X-Correlation-Id,
//                     Request-Id, X-Amzn-Trace-Id, X-B3-TraceId) with the value exactly one
//                     server request in flight in the process arrived with: a proxy or service
//                     passing it on.
//   forwarded_target  the request's target ends with the same path segments (and query) as
//                     exactly one server request in flight in the process, and the common tail
//                     is specific (a segment of 6+ characters with a digit, or of 20+): a proxy
//                     forwarding the path, possibly under another prefix (nginx proxy_pass
//                     /a/ -> /b/). Short or word-only tails (/login, /users/42) decide nothing.
//   ambiguous         the kernel saw several requests in flight on the sending thread (or an
//                     event loop, or a Go process it cannot follow) and nothing above decided: a
//                     new trace, said as such, and counted (threadline_parent_ambiguous_total).
// The forwarded rules look at every server request in flight in the process, not only the
// sending thread's: a thread pool's worker sends for requests another thread read. They also
// apply when the kernel found nothing in flight for the sender (a worker goroutine of a pool),
// never over a "context" decision.
#pragma once

#include <array>
#include <memory>
#include <string_view>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/spans/parent_rules.h"

namespace threadline {

// The correlation headers forwarded_header compares (lower case). A protocol that stores only
// the fields the agent reads must store these (HTTP/1: http1::IsReadField, tested together).
inline constexpr std::array<std::string_view, 5> kCorrelationHeaders = {
    "x-request-id", "x-correlation-id", "request-id", "x-amzn-trace-id", "x-b3-traceid"};

// context, forwarded (forwarded_header, forwarded_target) and ambiguous, in that order.
std::vector<std::unique_ptr<ParentRule>> ConcurrencyParentRules(InFlightSpans& in_flight,
                                                                const TraceIdRatioSampler& sampler,
                                                                MetricsRegistry& metrics);

// Is this path tail specific enough to tie two requests together? (forwarded_target; exposed
// for tests.) `tail` is the common trailing part, segments separated by '/'.
bool SpecificPathTail(std::string_view tail);

}  // namespace threadline
