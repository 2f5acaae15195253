// http::Describe (agent/protocols/http/semconv.h): every attribute, in order, of the HTTP
// conventions for server and client spans over IPv4 and IPv6, with and without a Host header,
// behind a proxy, with queries to redact, errors, CONNECT, HTTP/2 resets and closed
// connections. The e2e tests check the same names against real servers; this pins the whole
// list, so that changes to how the attributes are built cannot change what a span says.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <variant>

#include "agent/protocols/http/semconv.h"

namespace threadline {
namespace {

std::string Render(const ExchangeView& v) {
  std::string out = v.name + " [" + std::string(ToString(v.status)) + "]";
  if (!v.status_message.empty()) out += " \"" + v.status_message + "\"";
  out += "\n";
  auto attrs = [&out](const Attributes& attributes, std::string_view indent) {
    for (const Attribute& a : attributes) {
      out += indent;
      out += a.key.view();
      out += '=';
      std::visit(
          [&out](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::string>) {
              out += '"' + x + '"';
            } else if constexpr (std::is_same_v<T, bool>) {
              out += x ? "true" : "false";
            } else {
              out += std::to_string(x);
            }
          },
          a.value);
      out += '\n';
    }
  };
  attrs(v.attributes, "");
  for (const SpanEvent& e : v.events) {
    out += "event " + e.name + "\n";
    attrs(e.attributes, "  ");
  }
  return out;
}

ConnectionInfo V4Conn(Role role) {
  ConnectionInfo c;
  const uint8_t local[4] = {10, 0, 0, 7};
  const uint8_t remote[4] = {192, 168, 100, 23};
  c.tuple.local = IpAddress::V4(local);
  c.tuple.remote = IpAddress::V4(remote);
  c.tuple.local_port = role == Role::kServer ? 8080 : 51000;
  c.tuple.remote_port = role == Role::kServer ? 43210 : 9090;
  c.tuple_known = true;
  c.role = role;
  return c;
}

ConnectionInfo V6Conn(Role role) {
  ConnectionInfo c;
  uint8_t local[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  uint8_t remote[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x0b};
  c.tuple.local = IpAddress::V6(local);
  c.tuple.remote = IpAddress::V6(remote);
  c.tuple.local_port = role == Role::kServer ? 443 : 51000;
  c.tuple.remote_port = role == Role::kServer ? 40000 : 80;
  c.tuple_known = true;
  c.role = role;
  return c;
}

http::ExchangeFacts Get(std::string_view target) {
  http::ExchangeFacts f;
  f.method = "GET";
  f.target = target;
  f.version = "1.1";
  f.has_response = true;
  f.status_code = 200;
  f.response_body_bytes = 612;
  f.response_body_known = true;
  return f;
}

std::string Describe(const http::ExchangeFacts& f, Role role, const ConnectionInfo& c,
                     const DescribeOptions& options = {}) {
  ExchangeView v;
  http::Describe(f, role, c, options, v);
  return Render(v);
}

TEST(HttpSemconvTest, ServerSpanWithHostHeaderAndQuery) {
  http::ExchangeFacts f = Get("/api/v1/items/100042?page=2&access_token=abc");
  f.authority = "127.0.0.1:8080";
  f.user_agent = "wrk/4.1.0";
  EXPECT_EQ(Describe(f, Role::kServer, V4Conn(Role::kServer)),
            "GET /api/v1/items/{id} [UNSET]\n"
            "http.request.method=\"GET\"\n"
            "url.path=\"/api/v1/items/100042\"\n"
            "url.query=\"page=2&access_token=REDACTED\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"127.0.0.1\"\n"
            "server.port=8080\n"
            "network.peer.address=\"192.168.100.23\"\n"
            "network.peer.port=43210\n"
            "network.type=\"ipv4\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n"
            "client.port=43210\n"
            "client.address=\"192.168.100.23\"\n"
            "user_agent.original=\"wrk/4.1.0\"\n"
            "http.response.status_code=200\n"
            "http.response.body.size=612\n");
}

TEST(HttpSemconvTest, ServerSpanBehindAProxyWithAServerError) {
  http::ExchangeFacts f = Get("/checkout");
  f.method = "POST";
  f.authority = " shop.example.com ";
  f.forwarded_for = " 203.0.113.5 , 10.0.0.1";
  f.request_body_bytes = 42;
  f.status_code = 503;
  f.response_body_known = false;
  f.response_body_bytes = 0;
  EXPECT_EQ(Describe(f, Role::kServer, V4Conn(Role::kServer)),
            "POST /checkout [ERROR]\n"
            "http.request.method=\"POST\"\n"
            "url.path=\"/checkout\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"shop.example.com\"\n"
            "server.port=80\n"
            "network.peer.address=\"192.168.100.23\"\n"
            "network.peer.port=43210\n"
            "network.type=\"ipv4\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n"
            "client.address=\"203.0.113.5\"\n"
            "http.request.body.size=42\n"
            "http.response.status_code=503\n"
            "error.type=\"503\"\n");
}

TEST(HttpSemconvTest, ServerSpanOverIpv6WithoutHostOverTls) {
  http::ExchangeFacts f = Get("/");
  f.version = "1.0";
  ConnectionInfo c = V6Conn(Role::kServer);
  c.tls = true;
  EXPECT_EQ(Describe(f, Role::kServer, c),
            "GET / [UNSET]\n"
            "http.request.method=\"GET\"\n"
            "url.path=\"/\"\n"
            "url.scheme=\"https\"\n"
            "server.address=\"2001:db8::1\"\n"
            "server.port=443\n"
            "network.peer.address=\"2001:db8::a0b\"\n"
            "network.peer.port=40000\n"
            "network.type=\"ipv6\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.0\"\n"
            "client.port=40000\n"
            "client.address=\"2001:db8::a0b\"\n"
            "http.response.status_code=200\n"
            "http.response.body.size=612\n");
}

TEST(HttpSemconvTest, ServerSpanOfAnUnknownTupleAndAnEmptyForwardedFor) {
  http::ExchangeFacts f = Get("/health");
  f.forwarded_for = " ,10.1.1.1";
  ConnectionInfo c;  // tuple not known
  c.role = Role::kServer;
  EXPECT_EQ(Describe(f, Role::kServer, c),
            "GET /health [UNSET]\n"
            "http.request.method=\"GET\"\n"
            "url.path=\"/health\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"0.0.0.0\"\n"
            "server.port=0\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n"
            "http.response.status_code=200\n"
            "http.response.body.size=612\n");
}

TEST(HttpSemconvTest, ClientSpanToAnIpv6PeerWithoutHost) {
  http::ExchangeFacts f = Get("/v2/orders/7f3a9c1b2d4e5f60?sig=xyz&x=1#frag");
  f.status_code = 404;
  EXPECT_EQ(Describe(f, Role::kClient, V6Conn(Role::kClient)),
            "GET /v2/orders/{hex} [ERROR]\n"
            "http.request.method=\"GET\"\n"
            "url.path=\"/v2/orders/7f3a9c1b2d4e5f60\"\n"
            "url.query=\"sig=REDACTED&x=1\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"2001:db8::a0b\"\n"
            "server.port=80\n"
            "url.full=\"http://[2001:db8::a0b]/v2/orders/7f3a9c1b2d4e5f60?sig=REDACTED&x=1\"\n"
            "network.peer.address=\"2001:db8::a0b\"\n"
            "network.peer.port=80\n"
            "network.type=\"ipv6\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n"
            "http.response.status_code=404\n"
            "http.response.body.size=612\n"
            "error.type=\"404\"\n");
}

TEST(HttpSemconvTest, ClientSpansWithHostHeaders) {
  http::ExchangeFacts f = Get("http://proxy.example:3128/a/b?");
  f.authority = "[::1]:8443";
  ConnectionInfo c = V4Conn(Role::kClient);
  c.tls = true;
  EXPECT_EQ(Describe(f, Role::kClient, c),
            "GET /a/b [UNSET]\n"
            "http.request.method=\"GET\"\n"
            "url.path=\"/a/b\"\n"
            "url.scheme=\"https\"\n"
            "server.address=\"::1\"\n"
            "server.port=8443\n"
            "url.full=\"https://[::1]:8443/a/b?\"\n"
            "network.peer.address=\"192.168.100.23\"\n"
            "network.peer.port=9090\n"
            "network.type=\"ipv4\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n"
            "http.response.status_code=200\n"
            "http.response.body.size=612\n");

  http::ExchangeFacts g = Get("/x");
  g.authority = "api.example.com";
  g.has_response = false;
  EXPECT_EQ(Describe(g, Role::kClient, V4Conn(Role::kClient)),
            "GET /x [UNSET]\n"
            "http.request.method=\"GET\"\n"
            "url.path=\"/x\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"api.example.com\"\n"
            "server.port=80\n"
            "url.full=\"http://api.example.com/x\"\n"
            "network.peer.address=\"192.168.100.23\"\n"
            "network.peer.port=9090\n"
            "network.type=\"ipv4\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n");

  // A malformed Host falls back to the socket.
  http::ExchangeFacts h = Get("/y");
  h.authority = "api.example.com:99999";
  h.user_agent = "curl/8.5.0";
  EXPECT_EQ(Describe(h, Role::kClient, V4Conn(Role::kClient)),
            "GET /y [UNSET]\n"
            "http.request.method=\"GET\"\n"
            "url.path=\"/y\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"192.168.100.23\"\n"
            "server.port=9090\n"
            "url.full=\"http://192.168.100.23:9090/y\"\n"
            "network.peer.address=\"192.168.100.23\"\n"
            "network.peer.port=9090\n"
            "network.type=\"ipv4\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n"
            "user_agent.original=\"curl/8.5.0\"\n"
            "http.response.status_code=200\n"
            "http.response.body.size=612\n");
}

TEST(HttpSemconvTest, ConnectAndUnknownMethodsAndConfiguredRoutes) {
  http::ExchangeFacts f = Get("db.internal:5432");
  f.method = "CONNECT";
  f.authority = "db.internal:5432";
  f.outcome = Outcome::kUpgraded;
  EXPECT_EQ(Describe(f, Role::kClient, V4Conn(Role::kClient)),
            "CONNECT [UNSET]\n"
            "http.request.method=\"CONNECT\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"db.internal\"\n"
            "server.port=5432\n"
            "url.full=\"db.internal:5432\"\n"
            "network.peer.address=\"192.168.100.23\"\n"
            "network.peer.port=9090\n"
            "network.type=\"ipv4\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n"
            "http.response.status_code=200\n"
            "http.response.body.size=612\n");

  DescribeOptions options;
  options.routes = RouteTable::Create({"/users/{user}"}).value();
  http::ExchangeFacts g = Get("/users/alice");
  g.method = "PURGE";
  g.authority = "cache:6081";
  EXPECT_EQ(Describe(g, Role::kServer, V4Conn(Role::kServer), options),
            "HTTP /users/{user} [UNSET]\n"
            "http.route=\"/users/{user}\"\n"
            "http.request.method=\"_OTHER\"\n"
            "http.request.method_original=\"PURGE\"\n"
            "url.path=\"/users/alice\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"cache\"\n"
            "server.port=6081\n"
            "network.peer.address=\"192.168.100.23\"\n"
            "network.peer.port=43210\n"
            "network.type=\"ipv4\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n"
            "client.port=43210\n"
            "client.address=\"192.168.100.23\"\n"
            "http.response.status_code=200\n"
            "http.response.body.size=612\n");
}

TEST(HttpSemconvTest, OutcomesAndIncompleteMessages) {
  http::ExchangeFacts f = Get("/upload");
  f.method = "PUT";
  f.has_response = false;
  f.request_incomplete = true;
  f.outcome = Outcome::kClosedBeforeResponse;
  EXPECT_EQ(Describe(f, Role::kClient, V4Conn(Role::kClient)),
            "PUT /upload [ERROR] \"connection closed before the response\"\n"
            "http.request.method=\"PUT\"\n"
            "url.path=\"/upload\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"192.168.100.23\"\n"
            "server.port=9090\n"
            "url.full=\"http://192.168.100.23:9090/upload\"\n"
            "network.peer.address=\"192.168.100.23\"\n"
            "network.peer.port=9090\n"
            "network.type=\"ipv4\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n"
            "threadline.request.incomplete=true\n"
            "error.type=\"connection_closed\"\n"
            "event exception\n"
            "  exception.type=\"ConnectionClosedBeforeResponse\"\n"
            "  exception.message=\"connection closed before the response\"\n");

  http::ExchangeFacts g = Get("/ws");
  g.status_code = 101;
  g.response_body_known = false;
  g.response_incomplete = true;
  g.outcome = Outcome::kUpgraded;
  g.upgrade = "websocket";
  EXPECT_EQ(Describe(g, Role::kServer, V4Conn(Role::kServer)),
            "GET /ws [UNSET]\n"
            "http.request.method=\"GET\"\n"
            "url.path=\"/ws\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"10.0.0.7\"\n"
            "server.port=8080\n"
            "network.peer.address=\"192.168.100.23\"\n"
            "network.peer.port=43210\n"
            "network.type=\"ipv4\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n"
            "client.port=43210\n"
            "client.address=\"192.168.100.23\"\n"
            "http.response.status_code=101\n"
            "threadline.response.incomplete=true\n"
            "threadline.http.upgrade=\"websocket\"\n");

  http::ExchangeFacts h = Get("/lost");
  h.has_response = false;
  h.outcome = Outcome::kResponseLost;
  EXPECT_EQ(Describe(h, Role::kServer, V4Conn(Role::kServer)),
            "GET /lost [UNSET]\n"
            "http.request.method=\"GET\"\n"
            "url.path=\"/lost\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"10.0.0.7\"\n"
            "server.port=8080\n"
            "network.peer.address=\"192.168.100.23\"\n"
            "network.peer.port=43210\n"
            "network.type=\"ipv4\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n"
            "client.port=43210\n"
            "client.address=\"192.168.100.23\"\n"
            "threadline.response.lost=true\n");
}

TEST(HttpSemconvTest, Http2ResetAndStatusNotDecoded) {
  http::ExchangeFacts f = Get("/grpc.Service/Call");
  f.method = "POST";
  f.scheme = "https";
  f.authority = "svc:50051";
  f.version = "2";
  f.has_response = false;
  f.outcome = Outcome::kReset;
  f.reset_error = "CANCEL";
  EXPECT_EQ(Describe(f, Role::kClient, V4Conn(Role::kClient)),
            "POST /grpc.Service/Call [ERROR] \"stream reset (CANCEL)\"\n"
            "http.request.method=\"POST\"\n"
            "url.path=\"/grpc.Service/Call\"\n"
            "url.scheme=\"https\"\n"
            "server.address=\"svc\"\n"
            "server.port=50051\n"
            "url.full=\"https://svc:50051/grpc.Service/Call\"\n"
            "network.peer.address=\"192.168.100.23\"\n"
            "network.peer.port=9090\n"
            "network.type=\"ipv4\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"2\"\n"
            "error.type=\"CANCEL\"\n");

  http::ExchangeFacts g = Get("/q?x=1");
  g.version = "2";
  g.status_known = false;
  g.outcome = Outcome::kRefused;
  g.reset_error = "REFUSED_STREAM";
  EXPECT_EQ(Describe(g, Role::kServer, V6Conn(Role::kServer)),
            "GET /q [ERROR] \"stream refused (REFUSED_STREAM)\"\n"
            "http.request.method=\"GET\"\n"
            "url.path=\"/q\"\n"
            "url.query=\"x=1\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"2001:db8::1\"\n"
            "server.port=443\n"
            "network.peer.address=\"2001:db8::a0b\"\n"
            "network.peer.port=40000\n"
            "network.type=\"ipv6\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"2\"\n"
            "client.port=40000\n"
            "client.address=\"2001:db8::a0b\"\n"
            "error.type=\"REFUSED_STREAM\"\n");
}


// A span outlives the exchange it describes (it is exported after the connection's buffers
// are reused or freed): every value, short (made in the attribute's own storage) or long (in a
// pooled buffer), fixed ("http", "tcp", "ipv4") or read from the request (method, target,
// query, Host, User-Agent), is a copy. The facts here are views into buffers overwritten
// after Describe; the span must not change. A long query (redacted right into url.query's
// string) is read back from there into url.full.
TEST(HttpSemconvTest, ValuesAreCopiesThatOutliveTheExchange) {
  // Describes a client exchange from request buffers, then overwrites those buffers.
  const auto describe = [](ExchangeView& v) {
    std::string method = "GET";
    std::string target = "/v2/orders/7f3a9c1b2d4e5f60?session=abc&page=2&sort=name&filter=open";
    std::string host = "orders.internal.example.com:9090";
    std::string agent = "okhttp/4.12.0";
    std::string version = "1.1";
    http::ExchangeFacts f = Get(target);
    f.method = method;
    f.authority = host;
    f.user_agent = agent;
    f.version = version;
    http::Describe(f, Role::kClient, V4Conn(Role::kClient), {}, v);
    for (std::string* s : {&method, &target, &host, &agent, &version}) std::fill(s->begin(), s->end(), 'X');
  };
  ExchangeView v;
  describe(v);
  const std::string query = "session=REDACTED&page=2&sort=name&filter=open";
  EXPECT_EQ(Render(v),
            "GET /v2/orders/{hex} [UNSET]\n"
            "http.request.method=\"GET\"\n"
            "url.path=\"/v2/orders/7f3a9c1b2d4e5f60\"\n"
            "url.query=\"" + query + "\"\n"
            "url.scheme=\"http\"\n"
            "server.address=\"orders.internal.example.com\"\n"
            "server.port=9090\n"
            "url.full=\"http://orders.internal.example.com:9090/v2/orders/7f3a9c1b2d4e5f60?" + query + "\"\n"
            "network.peer.address=\"192.168.100.23\"\n"
            "network.peer.port=9090\n"
            "network.type=\"ipv4\"\n"
            "network.transport=\"tcp\"\n"
            "network.protocol.name=\"http\"\n"
            "network.protocol.version=\"1.1\"\n"
            "user_agent.original=\"okhttp/4.12.0\"\n"
            "http.response.status_code=200\n"
            "http.response.body.size=612\n");
  // The same again with the pool holding spent strings (long values go into those).
  Span spent;
  spent.name = std::string(200, 'n');
  spent.attributes.push_back({"a", std::string(300, 'v')});
  spent.attributes.push_back({"b", std::string(100, 'w')});
  SpanBuffers::Local().Give(spent);
  ExchangeView w;
  describe(w);
  EXPECT_EQ(Render(w), Render(v));
}

}  // namespace
}  // namespace threadline
