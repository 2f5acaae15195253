// The least of the Chrome DevTools protocol a Node.js inspector needs to evaluate one expression:
// GET /json/list over HTTP, a WebSocket (RFC 6455, client side: masked frames, text messages,
// continuation frames, close), one Runtime.evaluate. Loopback only: the host is fixed to
// 127.0.0.1. Every call is bounded in time; nothing is kept open after Evaluate returns.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "agent/common/result.h"

namespace threadline {

struct InspectorTarget {
  std::string websocket_path;  // "/<uuid>" from webSocketDebuggerUrl
  std::string title;           // the script, as the inspector names it
};

// The first target the inspector on 127.0.0.1:port lists.
Result<InspectorTarget> ListInspectorTarget(uint16_t port, std::chrono::milliseconds timeout);

// Runtime.evaluate of `expression` (with the console's command-line API, which gives `require`,
// and the result by value) on the target; returns the result's value when it is a string, an
// error with the exception text otherwise.
Result<std::string> EvaluateInInspector(uint16_t port, const InspectorTarget& target,
                                        const std::string& expression,
                                        std::chrono::milliseconds timeout);
// The same, with an expression made once the WebSocket is up, from the local port of the
// agent's end of the session's connection (so the code can be told which socket is the session).
Result<std::string> EvaluateInInspector(uint16_t port, const InspectorTarget& target,
                                        const std::function<std::string(uint16_t session_port)>& make_expression,
                                        std::chrono::milliseconds timeout);

// Pieces exposed for tests.
namespace inspector_internal {
// One client frame (FIN set, masked with `mask`).
std::string EncodeFrame(uint8_t opcode, const std::string& payload, const uint8_t mask[4]);
// Parses one server frame at the start of `buf`: its opcode, FIN bit and payload; 0 when `buf`
// holds no whole frame yet, -1 when it is malformed (masked, or a length over 16 MiB).
int64_t DecodeFrame(const std::string& buf, uint8_t& opcode, bool& fin, std::string& payload);
std::string Base64(const uint8_t* data, size_t n);
}  // namespace inspector_internal

}  // namespace threadline
