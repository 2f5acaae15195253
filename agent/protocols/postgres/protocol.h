// PostgreSQL (wire protocol v3) as a Protocol (protocols/protocol.h): detection from a stream's
// first bytes (parser.h Classify), both directions framed by db::FrameReader with the
// PostgreSQL rules (parser.h), paired by the Stitcher (stitcher.h), and the neutral views of its
// operations. The Operation itself rides in the Record for Describe (describe.h).
//
// Which side is the frontend: the connection's role when known (a client's requests go out),
// else the direction the startup packet or the first frontend messages travel. The database
// server's own connections (requests coming in) are parsed only with db_server_spans on.
#pragma once

#include <memory>
#include <span>

#include "agent/protocols/protocol.h"

namespace threadline::postgres {

std::unique_ptr<Protocol> CreateProtocol(const ProtocolOptions& options, MetricsRegistry& metrics);

// The neutral view of an operation's request (`op` must outlive the view).
RequestView ViewOf(const Operation& op);

}  // namespace threadline::postgres
