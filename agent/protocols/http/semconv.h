// The OpenTelemetry HTTP semantic conventions (stable: span names, http.*, url.*, server.*,
// client.*, network.*, user_agent.*), for every HTTP version: each version's Describe reads its
// own messages into ExchangeFacts and this file names them. Redaction of query values and the
// route templates (route.h) apply here.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "agent/protocols/describe.h"

namespace threadline::http {

// What the conventions read of one HTTP exchange, whatever the version. Views into the
// exchange's messages.
struct ExchangeFacts {
  std::string_view method;
  std::string_view target;  // request-target as sent (HTTP/2: :path)
  std::optional<std::string_view> authority;  // Host (HTTP/2: :authority)
  std::optional<std::string_view> scheme;     // HTTP/2 :scheme; nullopt: from the connection
  std::string_view version;                   // network.protocol.version: "1.0", "1.1", "2"
  std::optional<std::string_view> user_agent;
  std::optional<std::string_view> forwarded_for;  // X-Forwarded-For
  uint64_t request_body_bytes = 0;
  bool request_incomplete = false;  // bytes of the request were not seen

  bool has_response = false;
  uint16_t status_code = 0;
  uint64_t response_body_bytes = 0;
  bool response_body_known = false;  // the response has a body (framed) or bytes of one
  bool response_incomplete = false;
  std::optional<std::string_view> upgrade;  // Upgrade of a 101 response
  bool status_known = true;  // false: response headers came but :status could not be decoded

  Outcome outcome = Outcome::kComplete;
  std::string_view reset_error;  // kReset / kRefused: the HTTP/2 error code's name
};

void Describe(const ExchangeFacts& facts, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out);

}  // namespace threadline::http
