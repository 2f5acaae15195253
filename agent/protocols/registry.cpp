#include "agent/protocols/registry.h"

#include <array>

#include "agent/protocols/http1/protocol.h"
#include "agent/protocols/mysql/protocol.h"
#include "agent/protocols/postgres/protocol.h"
#include "agent/protocols/redis/protocol.h"
#include "agent/protocols/http2/protocol.h"

namespace threadline {

namespace {
// HTTP/1 first: its detection is the strictest (a whole request or status line), and it
// never claims the HTTP/2 preface. The binary database protocols next: a whole startup
// packet, message chain, greeting or command packet, checked field by field; Redis: a RESP
// array naming a command. HTTP/2 last: it may also claim a run of plausible frames on a
// connection joined mid-way.
constexpr std::array kProtocols = {
    ProtocolSpec{"http1", &http1::CreateProtocol},
    ProtocolSpec{"postgres", &postgres::CreateProtocol},
    ProtocolSpec{"mysql", &mysql::CreateProtocol},
    ProtocolSpec{"redis", &redis::CreateProtocol},
    ProtocolSpec{"http2", &http2::CreateProtocol},
};
}  // namespace

std::span<const ProtocolSpec> ProtocolTable() { return kProtocols; }

}  // namespace threadline
