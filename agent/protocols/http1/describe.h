// An HTTP/1.x exchange in the OpenTelemetry HTTP conventions (http/semconv.h).
#pragma once

#include "agent/protocols/describe.h"
#include "agent/protocols/http1/message.h"

namespace threadline::http1 {

void Describe(const Exchange& exchange, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out);

}  // namespace threadline::http1
