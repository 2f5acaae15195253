#include "agent/protocols/http2/describe.h"

#include <charconv>

#include "agent/protocols/http/semconv.h"

namespace threadline::http2 {

namespace {


std::optional<std::string_view> NonEmpty(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return std::string_view(s);
}

// server.address/port from :authority ("host", "host:port", "[v6]:port"), else the socket.
void AddServer(const StreamRecord& s, Role role, const ConnectionInfo& c, Attributes& attrs) {
  std::string_view host = s.authority;
  std::optional<uint16_t> port;
  if (!host.empty()) {
    std::string_view rest;
    if (host.front() == '[') {
      const size_t close = host.find(']');
      rest = close == std::string_view::npos ? std::string_view() : host.substr(close + 1);
      host = close == std::string_view::npos ? host : host.substr(1, close - 1);
    } else if (const size_t colon = host.rfind(':'); colon != std::string_view::npos) {
      rest = host.substr(colon);
      host = host.substr(0, colon);
    }
    unsigned p = 0;
    if (rest.size() > 1 && std::from_chars(rest.data() + 1, rest.data() + rest.size(), p).ec == std::errc() &&
        p > 0 && p < 65536)
      port = static_cast<uint16_t>(p);
  }
  const bool server = role == Role::kServer;
  if (host.empty()) {
    AddString(attrs, "server.address", (server ? c.tuple.local : c.tuple.remote).ToString());
    AddInt(attrs, "server.port", server ? c.tuple.local_port : c.tuple.remote_port);
    return;
  }
  AddString(attrs, "server.address", host);
  AddInt(attrs, "server.port", port ? *port : (server ? c.tuple.local_port : c.tuple.remote_port));
}

// The RPC conventions' rule: which gRPC codes make a span an error.
bool IsGrpcError(int code, Role role) {
  if (role == Role::kClient) return code != 0;
  switch (code) {
    case 2: case 4: case 12: case 13: case 14: case 15: return true;
    default: return false;
  }
}

void AddMessageEvents(const StreamHalf& half, std::string_view type, ExchangeView& out) {
  for (size_t i = 0; i < half.first_messages.size(); ++i) {
    const GrpcMessage& m = half.first_messages[i];
    SpanEvent ev;
    ev.name = "rpc.message";
    ev.time_unix_ns = m.ts_ns;  // boot clock: the span builder converts it
    ev.attributes.push_back({"rpc.message.type", std::string(type)});
    ev.attributes.push_back({"rpc.message.id", static_cast<int64_t>(i + 1)});
    ev.attributes.push_back({"rpc.message.compressed_size", static_cast<int64_t>(m.size)});
    out.events.push_back(std::move(ev));
  }
}

void DescribeGrpc(const StreamRecord& s, Outcome outcome, Role role, const ConnectionInfo& c,
                  ExchangeView& out) {
  Attributes& attrs = out.attributes;
  attrs.reserve(24);
  // :path is "/package.Service/Method".
  std::string_view path = s.path;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  const size_t slash = path.rfind('/');
  const std::string_view service = slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
  const std::string_view method = slash == std::string_view::npos ? path : path.substr(slash + 1);
  out.name = path.empty() ? std::string("grpc") : std::string(path);
  AddString(attrs, "rpc.system", "grpc");
  if (!service.empty()) AddString(attrs, "rpc.service", service);
  if (!method.empty()) AddString(attrs, "rpc.method", method);
  AddServer(s, role, c, attrs);
  AddNetworkPeer(c, attrs);
  AddString(attrs, "network.protocol.name", "http");
  AddString(attrs, "network.protocol.version", "2");
  if (role == Role::kServer && c.tuple_known) {
    AddString(attrs, "client.address", c.tuple.remote.ToString());
    AddInt(attrs, "client.port", c.tuple.remote_port);
  }
  if (s.grpc_status) {
    AddInt(attrs, "rpc.grpc.status_code", *s.grpc_status);
    if (IsGrpcError(*s.grpc_status, role)) {
      out.status = StatusCode::kError;
      out.status_message = s.grpc_message;
      AddString(attrs, "error.type", GrpcStatusName(*s.grpc_status));
    }
  } else if (outcome == Outcome::kReset || outcome == Outcome::kRefused) {
    out.status = StatusCode::kError;
    const std::string code = s.reset_code ? ErrorCodeName(*s.reset_code) : std::string("unknown");
    out.status_message = (outcome == Outcome::kReset ? "stream reset (" : "stream refused (") + code + ")";
    AddString(attrs, "error.type", code);
  } else {
    AddOutcome(outcome, out);  // closed before the response, response lost
  }
  const StreamHalf& received = role == Role::kServer ? s.request : s.response;
  const StreamHalf& sent = role == Role::kServer ? s.response : s.request;
  AddInt(attrs, "threadline.rpc.messages.received", received.messages);
  AddInt(attrs, "threadline.rpc.messages.sent", sent.messages);
  AddMessageEvents(sent, "SENT", out);
  AddMessageEvents(received, "RECEIVED", out);
  if (s.request.incomplete || s.request.messages_lost)
    attrs.push_back({"threadline.request.incomplete", true});
  if (s.response.incomplete || s.response.messages_lost)
    attrs.push_back({"threadline.response.incomplete", true});
  AddInt(attrs, "threadline.http2.stream_id", s.stream_id);
}

}  // namespace

bool IsGrpc(const StreamRecord& s) {
  return std::string_view(s.content_type).starts_with("application/grpc");
}

void Describe(const StreamRecord& s, Outcome outcome, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out) {
  if (IsGrpc(s)) return DescribeGrpc(s, outcome, role, conn, out);
  http::ExchangeFacts f;
  f.method = s.method;
  f.target = s.path;
  f.authority = NonEmpty(s.authority);
  f.scheme = NonEmpty(s.scheme);
  f.version = "2";
  f.user_agent = NonEmpty(s.user_agent);
  if (role == Role::kServer) f.forwarded_for = NonEmpty(s.forwarded_for);
  f.request_body_bytes = s.request.body_bytes;
  f.request_incomplete = s.request.incomplete || s.request.body_bytes_lost;
  f.has_response = s.response.headers_seen;
  f.status_code = s.status;
  f.status_known = s.status != 0;
  f.response_body_bytes = s.response.body_bytes;
  f.response_body_known = s.response.body_bytes > 0;
  f.response_incomplete = s.response.incomplete || s.response.body_bytes_lost;
  f.outcome = outcome;
  const std::string reset = s.reset_code ? ErrorCodeName(*s.reset_code) : std::string("unknown");
  f.reset_error = reset;
  http::Describe(f, role, conn, options, out);
  out.attributes.push_back({"threadline.http2.stream_id", static_cast<int64_t>(s.stream_id)});
}

}  // namespace threadline::http2
