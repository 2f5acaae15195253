// Redis (RESP2, RESP3) as a Protocol (protocols/protocol.h): detection from a command (an array
// of bulk strings naming one), both directions read by RespReader (parser.h), paired and grouped
// by the Stitcher (stitcher.h), and the neutral views of its operations. The Operation rides in
// the Record for Describe (describe.h).
//
// Only a command claims a connection (a reply alone could be many line protocols: +OK is POP3's
// greeting too); a connection joined mid-stream is claimed at its next command. The database
// server's own connections are parsed only with db_server_spans on.
#pragma once

#include <memory>

#include "agent/protocols/protocol.h"

namespace threadline::redis {

std::unique_ptr<Protocol> CreateProtocol(const ProtocolOptions& options, MetricsRegistry& metrics);

// The neutral view of an operation's request (`op` must outlive the view).
RequestView ViewOf(const Operation& op);

}  // namespace threadline::redis
