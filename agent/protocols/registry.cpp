#include "agent/protocols/registry.h"

#include <array>

#include "agent/protocols/http1/protocol.h"
#include "agent/protocols/postgres/protocol.h"
#include "agent/protocols/redis/protocol.h"

namespace threadline {

namespace {
// HTTP/1 first: its detection is the strictest (a whole request or status line). The binary
// database protocols next: a whole startup packet or message chain, checked field by field.
// Redis last: a RESP array naming a command.
constexpr std::array kProtocols = {
    ProtocolSpec{"http1", &http1::CreateProtocol},
    ProtocolSpec{"postgres", &postgres::CreateProtocol},
    ProtocolSpec{"redis", &redis::CreateProtocol},
};
}  // namespace

std::span<const ProtocolSpec> ProtocolTable() { return kProtocols; }

}  // namespace threadline
