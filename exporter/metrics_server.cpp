#include "exporter/metrics_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "agent/common/unique_fd.h"
#include "exporter/prometheus_text.h"

namespace threadline {

struct MetricsServer::Daemon {
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

MHD_Result Reply(MHD_Connection* connection, unsigned status, std::string_view body,
                 std::string_view content_type) {
  ResponsePtr response(MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                                       MHD_RESPMEM_MUST_COPY));
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response.get(), MHD_HTTP_HEADER_CONTENT_TYPE, std::string(content_type).c_str());
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(response.get(), MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  return MHD_queue_response(connection, status, response.get());
}

struct ParsedAddress {
  std::string host;
  std::string port;
};

Result<ParsedAddress> SplitHostPort(const std::string& address) {
  ParsedAddress out;
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return Error{"metrics address \"" + address + "\": expected [host]:port"};
    }
    out.host = address.substr(1, close - 1);
    out.port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || address.find(':') != colon) {
      return Error{"metrics address \"" + address + "\": expected host:port (IPv6: [host]:port)"};
    }
    out.host = address.substr(0, colon);
    out.port = address.substr(colon + 1);
  }
  if (out.host.empty()) return Error{"metrics address \"" + address + "\": no host (use 0.0.0.0 for all)"};
  if (out.port.empty() || out.port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(out.port.substr(0, 6)) > 65535) {
    return Error{"metrics address \"" + address + "\": bad port"};
  }
  return out;
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

}  // namespace

// The request handler, a friend of MetricsServer.
struct MetricsServerAccess {
  static MHD_Result Handle(void* cls, MHD_Connection* connection, const char* url, const char* method,
                           const char* /*version*/, const char* /*upload_data*/,
                           size_t* upload_data_size, void** /*con_cls*/) {
    auto* server = static_cast<MetricsServer*>(cls);
    const std::string_view m(method);
    if (m != MHD_HTTP_METHOD_GET && m != MHD_HTTP_METHOD_HEAD) {
      // A request body, if any, is not read: the answer does not depend on it.
      *upload_data_size = 0;
      return Reply(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", "text/plain; charset=utf-8");
    }
    const std::string_view path(url);
    if (path == "/metrics") {
      return Reply(connection, MHD_HTTP_OK, RenderPrometheusText(server->registry_), kPrometheusContentType);
    }
    constexpr std::string_view kText = "text/plain; charset=utf-8";
    const MetricsServerHandlers& h = server->handlers_;
    auto probe = [&](const std::function<ProbeAnswer()>& check) {
      ProbeAnswer a = check();
      return Reply(connection, a.ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, a.reason + "\n", kText);
    };
    if (path == "/healthz") return h.liveness ? probe(h.liveness) : Reply(connection, MHD_HTTP_OK, "ok\n", kText);
    if (path == "/readyz" && h.readiness) return probe(h.readiness);
    if (path == "/capabilities" && h.capabilities_json)
      return Reply(connection, MHD_HTTP_OK, h.capabilities_json() + "\n", "application/json");
    return Reply(connection, MHD_HTTP_NOT_FOUND, "not found; try /metrics, /healthz, /readyz or /capabilities\n", kText);
  }
};

MetricsServer::MetricsServer(PassKey, MetricsRegistry& registry) : registry_(registry) {}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Stop() {
  if (daemon_ != nullptr && daemon_->handle != nullptr) {
    daemon_->handle.reset();  // joins the server thread and closes the socket
    spdlog::info("metrics endpoint on {} stopped", bound_address_);
  }
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& address, MetricsRegistry& registry,
                                                            MetricsServerHandlers handlers) {
  ASSIGN_OR_RETURN(ParsedAddress parsed, SplitHostPort(address));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(parsed.host.c_str(), parsed.port.c_str(), &hints, &found); rc != 0) {
    return Error{"metrics address \"" + address + "\": " + gai_strerror(rc)};
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> results(found, &freeaddrinfo);

  // We bind ourselves (rather than let libmicrohttpd) to report the OS's reason on failure.
  UniqueFd fd(socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Error::FromErrno("metrics endpoint: socket", errno);
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0) {
    return Error::FromErrno("metrics endpoint: cannot bind " + address, errno);
  }
  if (listen(fd.get(), 64) != 0) return Error::FromErrno("metrics endpoint: listen on " + address, errno);
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    return Error::FromErrno("metrics endpoint: getsockname", errno);
  }

  auto server = std::make_unique<MetricsServer>(PassKey(), registry);
  server->handlers_ = std::move(handlers);
  server->bound_address_ = FormatSockaddr(bound);
  server->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                    : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (bound.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  server->daemon_ = std::make_unique<Daemon>();
  server->daemon_->handle.reset(MHD_start_daemon(
      flags, server->port_, nullptr, nullptr, &MetricsServerAccess::Handle, server.get(),
      MHD_OPTION_LISTEN_SOCKET, fd.get(), MHD_OPTION_CONNECTION_LIMIT, 16U,
      MHD_OPTION_CONNECTION_TIMEOUT, 10U, MHD_OPTION_END));
  if (server->daemon_->handle == nullptr) return Error{"metrics endpoint: libmicrohttpd did not start on " + address};
  (void)fd.release();  // the daemon owns and closes it now
  spdlog::info("metrics endpoint: http://{}/metrics (and /healthz, /readyz, /capabilities)", server->bound_address_);
  return server;
}

}  // namespace threadline
