#include "agent/ui/ui_server.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

#include "agent/ui/ui_assets.h"

namespace threadline {

bool IsLocalHostHeader(std::string_view host) {
  if (host.empty()) return true;
  std::string h(host);
  if (h.front() == '[') {  // [v6]:port
    const size_t close = h.find(']');
    if (close == std::string::npos) return false;
    h = h.substr(1, close - 1);
    in6_addr a6{};
    return inet_pton(AF_INET6, h.c_str(), &a6) == 1;
  }
  if (const size_t colon = h.rfind(':'); colon != std::string::npos) h.resize(colon);
  std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return std::tolower(c); });
  if (h == "localhost" || (h.size() > 10 && h.ends_with(".localhost"))) return true;
  in_addr a4{};
  return inet_pton(AF_INET, h.c_str(), &a4) == 1;
}

UiServer::UiServer(const TraceStore& store, std::string source, MetricsRegistry& metrics)
    : api_(store, std::move(source)),
      pages_(metrics.GetCounter("threadline_ui_requests_total", {{"kind", "page"}},
                                "Web view requests by kind: page (files), api, refused (Host not local), not_found")),
      api_requests_(metrics.GetCounter("threadline_ui_requests_total", {{"kind", "api"}})),
      refused_(metrics.GetCounter("threadline_ui_requests_total", {{"kind", "refused"}})),
      not_found_(metrics.GetCounter("threadline_ui_requests_total", {{"kind", "not_found"}})) {}

HttpResponse UiServer::Handle(const HttpRequest& request) const {
  if (check_host_ && !IsLocalHostHeader(request.host)) {
    refused_.Add(1);
    return HttpResponse::Text(403, "refused: Host \"" + request.host +
                                       "\" is not this machine's loopback; open the view as http://127.0.0.1:" +
                                       std::to_string(port_.load()) +
                                       "/ or http://localhost:... (DNS rebinding guard)\n");
  }
  if (auto answer = api_.Handle(request)) {
    api_requests_.Add(1);
    return std::move(*answer);
  }
  const std::string path = request.path == "/" ? "/index.html" : request.path;
  for (const UiAsset& a : UiAssets()) {
    if (a.path != path) continue;
    pages_.Add(1);
    return {200, std::string(a.content_type), std::string(a.body), {{"Cache-Control", "no-cache"}}};
  }
  not_found_.Add(1);
  return HttpResponse::Text(404, "not found; the view is at /, its API under /api/\n");
}

Result<std::unique_ptr<UiServer>> UiServer::Start(const std::string& address, const TraceStore& store,
                                                  std::string source, MetricsRegistry& metrics) {
  std::unique_ptr<UiServer> ui(new UiServer(store, std::move(source), metrics));  // private constructor
  const UiServer* self = ui.get();
  ASSIGN_OR_RETURN(ui->server_,
                   HttpServer::Start(address, "ui endpoint", [self](const HttpRequest& r) { return self->Handle(r); }));
  // Bound to every interface or a routable address: the user chose to offer it to the network.
  ui->check_host_ = ui->server_->loopback();
  ui->port_ = ui->server_->port();
  if (!ui->server_->loopback())
    spdlog::warn("web view listening on {}: trace data (URLs, addresses, service names) is readable by "
                 "anyone who can reach that address; the default is loopback only",
                 ui->server_->bound_address());
  return ui;
}

std::string UiServer::url() const {
  std::string host = server_->bound_address();
  // 0.0.0.0 / [::] cannot be opened as such; on this machine 127.0.0.1 reaches it.
  if (host.rfind("0.0.0.0:", 0) == 0) host = "127.0.0.1" + host.substr(7);
  if (host.rfind("[::]:", 0) == 0) host = "[::1]" + host.substr(4);
  return "http://" + host + "/";
}

}  // namespace threadline
