#include "agent/protocols/http/semconv.h"

#include <charconv>
#include <string>

namespace threadline::http {

namespace {


std::string_view Trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

struct HostPort {
  std::string_view host;
  std::optional<uint16_t> port;
};

// "example.com", "example.com:8080", "[::1]:8080", "[::1]".
std::optional<HostPort> ParseHostHeader(std::string_view v) {
  v = Trim(v);
  if (v.empty()) return std::nullopt;
  HostPort hp;
  std::string_view rest;
  if (v.front() == '[') {
    size_t close = v.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    hp.host = v.substr(1, close - 1);
    rest = v.substr(close + 1);
  } else {
    size_t colon = v.rfind(':');
    hp.host = colon == std::string_view::npos ? v : v.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : v.substr(colon);
  }
  if (!rest.empty()) {
    if (rest.front() != ':') return std::nullopt;
    rest.remove_prefix(1);
    unsigned port = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), port);
    if (ec != std::errc() || p != rest.data() + rest.size() || port == 0 || port > 65535)
      return std::nullopt;
    hp.port = static_cast<uint16_t>(port);
  }
  if (hp.host.empty()) return std::nullopt;
  return hp;
}

struct Target {
  std::string_view path;   // empty for authority-form
  std::string_view query;  // without '?'
  bool has_query = false;
};

// origin-form "/a?b", absolute-form "http://h/a?b", asterisk-form "*", authority-form "h:443".
Target SplitTarget(std::string_view t, std::string_view method) {
  Target out;
  if (method == "CONNECT") return out;
  if (t.starts_with("http://") || t.starts_with("https://")) {
    size_t scheme_end = t.find("://") + 3;
    size_t slash = t.find_first_of("/?", scheme_end);
    t = slash == std::string_view::npos ? std::string_view("/") : t.substr(slash);
  }
  size_t hash = t.find('#');
  if (hash != std::string_view::npos) t = t.substr(0, hash);
  size_t q = t.find('?');
  out.path = q == std::string_view::npos ? t : t.substr(0, q);
  if (q != std::string_view::npos) {
    out.query = t.substr(q + 1);
    out.has_query = true;
  }
  if (out.path.empty()) out.path = "/";
  return out;
}

bool IsIpv6Literal(std::string_view host) { return host.find(':') != std::string_view::npos; }

}  // namespace

void Describe(const ExchangeFacts& f, Role role, const ConnectionInfo& c,
              const DescribeOptions& options, ExchangeView& out) {
  const bool server = role == Role::kServer;
  Attributes& attrs = out.attributes;
  attrs.reserve(28);

  const Target target = SplitTarget(f.target, f.method);
  const std::string* configured_route =
      SetHttpSpanName(options.routes, f.method, target.path.empty() ? f.target : target.path, out.name);
  if (f.method == "CONNECT") out.name = "CONNECT";
  if (configured_route != nullptr) AddString(attrs, "http.route", *configured_route);

  const std::string_view method = NormalizeHttpMethod(f.method);
  AddString(attrs, "http.request.method", method);
  if (method != f.method) AddString(attrs, "http.request.method_original", f.method);

  // TLS: plaintext taken at the TLS library.
  const std::string_view scheme = f.scheme.value_or(c.tls ? "https" : "http");
  const uint16_t default_port = scheme == "https" ? 443 : 80;
  if (!target.path.empty()) AddString(attrs, "url.path", target.path);
  // url.query redacted right into the attribute's own string (redacting never shortens a
  // query, so an empty one stays empty and is left out); url.full reads it back from there.
  size_t query_index = 0;
  if (target.has_query && !target.query.empty()) {
    query_index = attrs.size();
    EmplaceAttribute(attrs, "url.query", InPlaceValue{[&] {
                       AttributeValue v(std::in_place_type<std::string>,
                                        target.query.size() > std::string().capacity() ? SpanBuffers::Local().TakeString()
                                                                                       : std::string());
                       AppendRedactedQuery(*std::get_if<std::string>(&v), target.query, options.redaction);
                       return v;
                     }});
  }
  AddString(attrs, "url.scheme", scheme);

  // Where the request was addressed: the Host header (:authority), else the socket.
  std::optional<HostPort> host;
  if (f.authority) host = ParseHostHeader(*f.authority);
  AddressText addresses(c);
  const uint16_t server_port = server ? c.tuple.local_port : c.tuple.remote_port;
  const std::string_view server_address =
      host ? host->host : (server ? addresses.local() : addresses.remote());
  const uint16_t port = host && host->port ? *host->port : (host ? default_port : server_port);
  AddString(attrs, "server.address", server_address);
  AddInt(attrs, "server.port", port);

  if (!server) {
    if (f.method == "CONNECT") {
      AddString(attrs, "url.full", f.target);
    } else {
      // Built in the attribute's own string, sized once, in a spent span's buffer when there is
      // one (span_buffers.h); as temporaries joined with `+` it was up to four allocations per
      // client span.
      const std::string_view query =
          target.has_query && !target.query.empty() ? std::string_view(*std::get_if<std::string>(&attrs[query_index].value))
                                                    : std::string_view();
      const bool bracket = IsIpv6Literal(server_address);
      char port_text[8];
      size_t port_size = 0;
      if (port != default_port) {
        port_text[0] = ':';
        port_size = static_cast<size_t>(std::to_chars(port_text + 1, port_text + sizeof(port_text), port).ptr - port_text);
      }
      std::string full = SpanBuffers::Local().TakeString();
      full.reserve(scheme.size() + 3 + server_address.size() + 2 + port_size + target.path.size() +
                   (target.has_query ? 1 + query.size() : 0));
      full.append(scheme).append("://");
      if (bracket) full += '[';
      full.append(server_address);
      if (bracket) full += ']';
      full.append(port_text, port_size).append(target.path);
      if (target.has_query) full.append("?").append(query);
      EmplaceAttribute(attrs, "url.full", AttributeValue(std::move(full)));
    }
  }

  AddNetworkPeer(c, addresses, attrs);
  AddString(attrs, "network.protocol.name", "http");
  AddString(attrs, "network.protocol.version", f.version);

  if (server) {
    // The original client when a proxy says so, else the socket peer.
    std::string_view client;
    if (f.forwarded_for) {
      std::string_view first = *f.forwarded_for;
      size_t comma = first.find(',');
      if (comma != std::string_view::npos) first = first.substr(0, comma);
      client = Trim(first);
    }
    if (client.empty() && c.tuple_known) {
      client = addresses.remote();
      AddInt(attrs, "client.port", c.tuple.remote_port);
    }
    if (!client.empty()) AddString(attrs, "client.address", client);
  }
  if (f.user_agent) AddString(attrs, "user_agent.original", *f.user_agent);
  if (f.request_body_bytes > 0)
    AddInt(attrs, "http.request.body.size", static_cast<int64_t>(f.request_body_bytes));

  if (f.has_response && f.status_known) {
    AddInt(attrs, "http.response.status_code", f.status_code);
    if (f.response_body_known)
      AddInt(attrs, "http.response.body.size", static_cast<int64_t>(f.response_body_bytes));
    // Server spans: 5xx is an error; client spans: 4xx too (the conventions' rule).
    const bool error = server ? f.status_code >= 500 : f.status_code >= 400;
    if (error) {
      out.status = StatusCode::kError;
      char code[8];
      AddString(attrs, "error.type",
                std::string_view(code, static_cast<size_t>(std::to_chars(code, code + sizeof(code), f.status_code).ptr - code)));
    }
    if (f.response_incomplete) attrs.push_back({"threadline.response.incomplete", true});
  }
  if (f.request_incomplete) attrs.push_back({"threadline.request.incomplete", true});

  AddOutcome(f.outcome, out);
  if (f.outcome == Outcome::kUpgraded && f.upgrade) AddString(attrs, "threadline.http.upgrade", *f.upgrade);
  if (f.outcome == Outcome::kReset || f.outcome == Outcome::kRefused) {
    // HTTP/2: the stream was reset, or GOAWAY said it was never processed.
    out.status = StatusCode::kError;
    out.status_message = std::string(f.outcome == Outcome::kReset ? "stream reset (" : "stream refused (") +
                         std::string(f.reset_error) + ")";
    AddString(attrs, "error.type", f.reset_error);
  }
}

}  // namespace threadline::http
