// An HTTP/2 stream in the OpenTelemetry conventions: gRPC calls (content-type application/grpc)
// in the RPC conventions, everything else in the HTTP conventions (http/semconv.h) with
// network.protocol.version "2".
//
// gRPC (the RPC conventions as of semconv 1.37, which this agent's peers emit): span name
// "package.Service/Method", rpc.system "grpc", rpc.service, rpc.method, rpc.grpc.status_code from
// the trailers (or the headers of a Trailers-Only response). Status ERROR on a server span for
// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS; on a client span
// for any code but OK; error.type is the code's name. Messages: one rpc.message event per
// message up to 16 each way (rpc.message.type SENT/RECEIVED, rpc.message.id,
// rpc.message.compressed_size) and the totals in threadline.rpc.messages.sent / .received
// (streaming calls can carry any number).
#pragma once

#include "agent/protocols/describe.h"
#include "agent/protocols/http2/types.h"

namespace threadline::http2 {

void Describe(const StreamRecord& stream, Outcome outcome, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out);

bool IsGrpc(const StreamRecord& stream);

}  // namespace threadline::http2
