// A small HTTP/1.1 server for the agent's own endpoints (/metrics and the probes, the web view
// and its JSON API): libmicrohttpd on a thread of its own, GET and HEAD only, one handler
// function that turns a request into a response. Handlers run on the server's thread and must
// be thread-safe towards the data path.
//
// The address is host:port or [v6-host]:port; port 0 picks a free port (see port()). We bind
// the socket ourselves, so a failure carries the OS's reason ("address in use").
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/common/result.h"

namespace threadline {

struct HttpRequest {
  std::string method;  // GET or HEAD (others are answered 405 before the handler)
  std::string path;    // without the query string, not percent-decoded
  std::map<std::string, std::string> query;  // decoded; a repeated key keeps its last value
  std::string host;    // the Host header, as sent
  std::string accept;  // the Accept header, as sent (empty without one)

  // The query value of `key`, or `fallback`.
  std::string Query(const std::string& key, const std::string& fallback = "") const {
    auto it = query.find(key);
    return it == query.end() ? fallback : it->second;
  }
};

struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;

  static HttpResponse Text(unsigned status, std::string body) {
    return {status, "text/plain; charset=utf-8", std::move(body), {}};
  }
};

// "host:port" / "[v6]:port" split; errors name `what` ("metrics address", "ui address").
struct HostPort {
  std::string host;
  std::string port;
};
Result<HostPort> SplitHostPort(const std::string& address, std::string_view what);

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  // `what` names the server in errors and logs ("metrics endpoint", "web view").
  static Result<std::unique_ptr<HttpServer>> Start(const std::string& address, std::string what, Handler handler);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Stops serving (joins the thread) and closes the socket; idempotent.
  void Stop();
  uint16_t port() const { return port_; }
  // "127.0.0.1:9464", "[::1]:9464": what was bound, with the real port.
  const std::string& bound_address() const { return bound_address_; }
  // True when the bound address is a loopback one (127.0.0.0/8, ::1).
  bool loopback() const { return loopback_; }

  struct Daemon;  // libmicrohttpd handle (RAII), defined in the .cpp
  struct PassKey {
   private:
    friend class HttpServer;
    PassKey() = default;
  };
  HttpServer(PassKey, std::string what, Handler handler);

 private:
  std::string what_;
  Handler handler_;
  std::unique_ptr<Daemon> daemon_;
  uint16_t port_ = 0;
  std::string bound_address_;
  bool loopback_ = false;

  friend struct HttpServerAccess;  // the request callback
};

}  // namespace threadline
