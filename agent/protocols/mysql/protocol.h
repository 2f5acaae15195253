// MySQL / MariaDB as a Protocol (protocols/protocol.h): detection from the server's greeting or
// a client's whole COM_QUERY (parser.h Classify), both directions framed by db::FrameReader with
// the packet rules (parser.h), paired by the Stitcher (stitcher.h), and the neutral views of its
// operations. The Operation rides in the Record for Describe (describe.h).
//
// Which side is the client: the connection's role when known, else the direction opposite to the
// greeting (or the direction of the command). The database server's own connections are parsed
// only with db_server_spans on.
#pragma once

#include <memory>

#include "agent/protocols/protocol.h"

namespace threadline::mysql {

std::unique_ptr<Protocol> CreateProtocol(const ProtocolOptions& options, MetricsRegistry& metrics);

// The neutral view of an operation's request (`op` must outlive the view).
RequestView ViewOf(const Operation& op);

}  // namespace threadline::mysql
