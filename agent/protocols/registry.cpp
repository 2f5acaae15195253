#include "agent/protocols/registry.h"

#include <array>

#include "agent/protocols/http1/protocol.h"

namespace threadline {

namespace {
// HTTP/1 first: its detection is the strictest (a whole request or status line).
constexpr std::array kProtocols = {
    ProtocolSpec{"http1", &http1::CreateProtocol},
};
}  // namespace

std::span<const ProtocolSpec> ProtocolTable() { return kProtocols; }

}  // namespace threadline
