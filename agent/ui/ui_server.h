// The built-in web view: the page (agent/ui/web/, embedded) and its JSON API (trace_api.h),
// served from a TraceStore on an HTTP server thread of its own (exporter/http_server.h).
//
// Loopback by default (127.0.0.1:9465): traces carry URLs, addresses and service names, so
// they are not offered to the network unless the address says so (then a warning is logged).
// On a loopback address the server also refuses requests whose Host header is a DNS name
// other than localhost: a web page elsewhere could otherwise point a name at 127.0.0.1 and
// read the API from the user's browser (DNS rebinding).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "agent/common/metrics.h"
#include "agent/common/result.h"
#include "agent/traces/trace_store.h"
#include "agent/ui/trace_api.h"
#include "exporter/http_server.h"

namespace threadline {

inline constexpr char kDefaultUiAddress[] = "127.0.0.1:9465";

class UiServer {
 public:
  // `store` must outlive the server. `source` is shown by the page (where the traces come from).
  static Result<std::unique_ptr<UiServer>> Start(const std::string& address, const TraceStore& store,
                                                 std::string source, MetricsRegistry& metrics = MetricsRegistry::Global());

  // "http://127.0.0.1:9465/"
  std::string url() const;
  uint16_t port() const { return server_->port(); }
  void Stop() { server_->Stop(); }

  // The request handler (tests call it without a socket).
  HttpResponse Handle(const HttpRequest& request) const;

 private:
  UiServer(const TraceStore& store, std::string source, MetricsRegistry& metrics);

  TraceApi api_;
  Counter& pages_;
  Counter& api_requests_;
  Counter& refused_;
  Counter& not_found_;
  // Set once the socket is bound; read by the server's thread.
  std::atomic<bool> check_host_{true};
  std::atomic<uint16_t> port_{0};
  std::unique_ptr<HttpServer> server_;
};

// Whether a Host header names this machine's loopback by address or as localhost (the DNS
// rebinding guard). An empty Host (HTTP/1.0) passes.
bool IsLocalHostHeader(std::string_view host);

}  // namespace threadline
