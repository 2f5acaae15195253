// The agent's /metrics endpoint: a MetricsRegistry on GET /metrics, as Prometheus text or, when
// the Accept header prefers it, OpenMetrics text with exemplars (prometheus_text.h); and the
// probes a Kubernetes kubelet and an operator use:
//   GET /healthz       liveness:  200 "ok: <why>" or 503 "<why not>" (plain "ok" without a handler)
//   GET /readyz        readiness: 200 "ready: <what runs>" or 503 "<why not>" (404 without a handler)
//   GET /capabilities  the capability report as JSON (404 without a handler)
// An HttpServer (http_server.h) serves it from its own thread, so a scrape never touches the
// data path (it reads atomics under the registry's mutex); the handlers must be thread-safe for
// the same reason.
//
// The address is host:port or [v6-host]:port; port 0 picks a free port (see port()). Default
// 127.0.0.1:9464 (the port the OpenTelemetry Prometheus exporters use). Any address is
// accepted; the one bound is logged, since 0.0.0.0 exposes the agent's metrics to the network.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "agent/common/metrics.h"
#include "agent/common/result.h"
#include "exporter/http_server.h"

namespace threadline {

inline constexpr char kDefaultMetricsAddress[] = "127.0.0.1:9464";

struct ProbeAnswer {
  bool ok = false;
  std::string reason;
};

// Optional: what /healthz, /readyz and /capabilities answer. Called on the server's thread.
struct MetricsServerHandlers {
  std::function<ProbeAnswer()> liveness;
  std::function<ProbeAnswer()> readiness;
  std::function<std::string()> capabilities_json;
};

class MetricsServer {
 public:
  // Binds, listens and starts serving. Fails with the OS's reason (address in use, ...).
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& address,
                                                      MetricsRegistry& registry = MetricsRegistry::Global(),
                                                      MetricsServerHandlers handlers = {});
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Stops serving and closes the socket; idempotent.
  void Stop() { server_->Stop(); }
  uint16_t port() const { return server_->port(); }
  // "127.0.0.1:9464", "[::1]:9464": what was bound, with the real port.
  const std::string& bound_address() const { return server_->bound_address(); }

 private:
  MetricsServer(MetricsRegistry& registry, MetricsServerHandlers handlers)
      : registry_(registry), handlers_(std::move(handlers)) {}
  HttpResponse Handle(const HttpRequest& request) const;

  MetricsRegistry& registry_;
  MetricsServerHandlers handlers_;
  std::unique_ptr<HttpServer> server_;
};

}  // namespace threadline
