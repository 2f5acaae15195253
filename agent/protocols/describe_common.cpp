// What every protocol's conventions share (declared in describe.h); apart from describe.cpp so
// that a protocol's Describe links without the others (the fuzz targets).
#include "agent/protocols/describe.h"

namespace threadline {

void AddOutcome(Outcome outcome, ExchangeView& out) {
  switch (outcome) {
    case Outcome::kClosedBeforeResponse: {
      out.status = StatusCode::kError;
      out.status_message = "connection closed before the response";
      out.attributes.push_back({"error.type", std::string("connection_closed")});
      SpanEvent ev;
      ev.name = "exception";
      ev.attributes.push_back({"exception.type", std::string("ConnectionClosedBeforeResponse")});
      ev.attributes.push_back({"exception.message", out.status_message});
      out.events.push_back(std::move(ev));
      return;
    }
    case Outcome::kResponseLost:
      out.attributes.push_back({"threadline.response.lost", true});
      return;
    default:
      return;
  }
}

void AddNetworkPeer(const ConnectionInfo& c, AddressText& text, Attributes& attrs) {
  if (c.tuple_known) {
    AddString(attrs, "network.peer.address", text.remote());
    AddInt(attrs, "network.peer.port", c.tuple.remote_port);
    AddString(attrs, "network.type", c.tuple.remote.is_v4 ? "ipv4" : "ipv6");
  }
  AddString(attrs, "network.transport", "tcp");
}

}  // namespace threadline
