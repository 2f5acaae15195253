#include "agent/protocols/outcome.h"

namespace threadline {

std::string_view ToString(Outcome o) {
  switch (o) {
    case Outcome::kComplete: return "complete";
    case Outcome::kClosedBeforeResponse: return "closed_before_response";
    case Outcome::kResponseWithoutRequest: return "response_without_request";
    case Outcome::kResponseLost: return "response_lost";
    case Outcome::kUpgraded: return "upgraded";
    case Outcome::kTunnel: return "tunnel";
    case Outcome::kReset: return "reset";
    case Outcome::kRefused: return "refused";
  }
  return "unknown";
}

}  // namespace threadline
