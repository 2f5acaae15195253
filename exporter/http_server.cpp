#include "exporter/http_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "agent/common/unique_fd.h"

namespace threadline {

struct HttpServer::Daemon {
  struct Stop {
    void operator()(MHD_Daemon* d) const { MHD_stop_daemon(d); }
  };
  std::unique_ptr<MHD_Daemon, Stop> handle;
};

namespace {

struct ResponseDeleter {
  void operator()(MHD_Response* r) const { MHD_destroy_response(r); }
};
using ResponsePtr = std::unique_ptr<MHD_Response, ResponseDeleter>;

MHD_Result Send(MHD_Connection* connection, HttpResponse&& r) {
  // The body moves to the heap and is freed by libmicrohttpd once sent: no copy of large JSON.
  auto* body = new std::string(std::move(r.body));  // NOLINT: owned by the response's free callback
  ResponsePtr response(MHD_create_response_from_buffer_with_free_callback_cls(
      body->size(), body->data(), [](void* p) { delete static_cast<std::string*>(p); }, body));
  if (response == nullptr) {
    delete body;
    return MHD_NO;
  }
  MHD_add_response_header(response.get(), MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
  for (const auto& [name, value] : r.headers) MHD_add_response_header(response.get(), name.c_str(), value.c_str());
  if (r.status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(response.get(), MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  return MHD_queue_response(connection, r.status, response.get());
}

MHD_Result CollectQuery(void* cls, MHD_ValueKind, const char* key, const char* value) {
  auto* query = static_cast<std::map<std::string, std::string>*>(cls);
  if (key != nullptr) (*query)[key] = value != nullptr ? value : "";
  return MHD_YES;
}

std::string FormatSockaddr(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
  inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
  return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
}

bool IsLoopback(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) return a->sin6_addr.s6_addr[12] == 127;
    return false;
  }
  const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
  return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
}

}  // namespace

Result<HostPort> SplitHostPort(const std::string& address, std::string_view what) {
  const std::string quoted = std::string(what) + " \"" + address + "\": ";
  HostPort out;
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':')
      return Error{quoted + "expected [host]:port"};
    out.host = address.substr(1, close - 1);
    out.port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || address.find(':') != colon)
      return Error{quoted + "expected host:port (IPv6: [host]:port)"};
    out.host = address.substr(0, colon);
    out.port = address.substr(colon + 1);
  }
  if (out.host.empty()) return Error{quoted + "no host (use 0.0.0.0 for all)"};
  if (out.port.empty() || out.port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(out.port.substr(0, 6)) > 65535)
    return Error{quoted + "bad port"};
  return out;
}

// The request callback, a friend of HttpServer.
struct HttpServerAccess {
  static MHD_Result Handle(void* cls, MHD_Connection* connection, const char* url, const char* method,
                           const char* /*version*/, const char* /*upload_data*/, size_t* upload_data_size,
                           void** /*con_cls*/) {
    auto* server = static_cast<HttpServer*>(cls);
    const std::string_view m(method);
    if (m != MHD_HTTP_METHOD_GET && m != MHD_HTTP_METHOD_HEAD) {
      // A request body, if any, is not read: no answer depends on one.
      *upload_data_size = 0;
      return Send(connection, HttpResponse::Text(MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n"));
    }
    HttpRequest request;
    request.method = method;
    request.path = url;
    MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, &CollectQuery, &request.query);
    if (const char* host = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST))
      request.host = host;
    if (const char* accept = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT))
      request.accept = accept;
    HttpResponse response;
    try {
      response = server->handler_(request);
    } catch (const std::exception& e) {  // a handler bug must not take the agent down
      spdlog::warn("{}: {} {} failed: {}", server->what_, request.method, request.path, e.what());
      response = HttpResponse::Text(500, "internal error\n");
    }
    return Send(connection, std::move(response));
  }
};

HttpServer::HttpServer(PassKey, std::string what, Handler handler)
    : what_(std::move(what)), handler_(std::move(handler)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (daemon_ != nullptr && daemon_->handle != nullptr) {
    daemon_->handle.reset();  // joins the server thread and closes the socket
    spdlog::info("{} on {} stopped", what_, bound_address_);
  }
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& address, std::string what,
                                                      Handler handler) {
  const std::string noun = what.substr(0, what.find(' '));
  ASSIGN_OR_RETURN(HostPort parsed, SplitHostPort(address, noun + " address"));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(parsed.host.c_str(), parsed.port.c_str(), &hints, &found); rc != 0)
    return Error{noun + " address \"" + address + "\": " + gai_strerror(rc)};
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> results(found, &freeaddrinfo);

  UniqueFd fd(socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Error::FromErrno(what + ": socket", errno);
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0)
    return Error::FromErrno(what + ": cannot bind " + address, errno);
  if (listen(fd.get(), 64) != 0) return Error::FromErrno(what + ": listen on " + address, errno);
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0)
    return Error::FromErrno(what + ": getsockname", errno);

  auto server = std::make_unique<HttpServer>(PassKey(), std::move(what), std::move(handler));
  server->bound_address_ = FormatSockaddr(bound);
  server->loopback_ = IsLoopback(bound);
  server->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                    : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (bound.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  server->daemon_ = std::make_unique<Daemon>();
  server->daemon_->handle.reset(MHD_start_daemon(
      flags, server->port_, nullptr, nullptr, &HttpServerAccess::Handle, server.get(), MHD_OPTION_LISTEN_SOCKET,
      fd.get(), MHD_OPTION_CONNECTION_LIMIT, 16U, MHD_OPTION_CONNECTION_TIMEOUT, 10U, MHD_OPTION_END));
  if (server->daemon_->handle == nullptr)
    return Error{server->what_ + ": libmicrohttpd did not start on " + address};
  (void)fd.release();  // the daemon owns and closes it now
  return server;
}

}  // namespace threadline
