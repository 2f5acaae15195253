#include "exporter/metrics_server.h"

#include <spdlog/spdlog.h>

#include "exporter/prometheus_text.h"

namespace threadline {

HttpResponse MetricsServer::Handle(const HttpRequest& request) const {
  if (request.path == "/metrics") {
    if (NegotiateExposition(request.accept) == ExpositionFormat::kOpenMetrics)
      return {200, std::string(kOpenMetricsContentType), RenderOpenMetricsText(registry_), {}};
    return {200, std::string(kPrometheusContentType), RenderPrometheusText(registry_), {}};
  }
  auto probe = [](const std::function<ProbeAnswer()>& check) {
    ProbeAnswer a = check();
    return HttpResponse::Text(a.ok ? 200 : 503, a.reason + "\n");
  };
  if (request.path == "/healthz") return handlers_.liveness ? probe(handlers_.liveness) : HttpResponse::Text(200, "ok\n");
  if (request.path == "/readyz" && handlers_.readiness) return probe(handlers_.readiness);
  if (request.path == "/capabilities" && handlers_.capabilities_json)
    return {200, "application/json", handlers_.capabilities_json() + "\n", {}};
  return HttpResponse::Text(404, "not found; try /metrics, /healthz, /readyz or /capabilities\n");
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& address, MetricsRegistry& registry,
                                                            MetricsServerHandlers handlers) {
  std::unique_ptr<MetricsServer> server(new MetricsServer(registry, std::move(handlers)));  // private constructor
  const MetricsServer* self = server.get();
  ASSIGN_OR_RETURN(server->server_,
                   HttpServer::Start(address, "metrics endpoint",
                                     [self](const HttpRequest& r) { return self->Handle(r); }));
  spdlog::info("metrics endpoint: http://{}/metrics (and /healthz, /readyz, /capabilities)", server->bound_address());
  return server;
}

}  // namespace threadline
