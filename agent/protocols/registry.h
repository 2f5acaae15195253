// The protocols the agent parses, in the order the dispatcher asks them about a new connection's
// first bytes. Adding a protocol is a row here, its folder, its RecordDetail alternative and its
// Describe (docs/protocols.md, "Adding a protocol").
#pragma once

#include <span>

#include "agent/protocols/protocol.h"

namespace threadline {

std::span<const ProtocolSpec> ProtocolTable();

}  // namespace threadline
