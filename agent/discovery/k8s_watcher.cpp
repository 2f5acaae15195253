#include "agent/discovery/k8s_watcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <random>
#include <utility>
#include <vector>

namespace threadline {

namespace {

// fieldSelector values are URL-encoded: '=' is %3D. Node names are DNS subdomains (letters,
// digits, '-', '.') and need nothing more.
std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

}  // namespace

K8sPodWatcher::K8sPodWatcher(K8sClient& client, K8sPodStore& store, K8sWatcherOptions options,
                             MetricsRegistry& metrics)
    : client_(client),
      store_(store),
      options_(std::move(options)),
      metrics_(metrics),
      owners_(
          [this](const std::string& path) -> Result<std::pair<long, std::string>> {
            auto r = client_.Get(path, &stop_);
            if (!r.ok()) return r.error();
            return std::pair{r->status, std::move(r->body)};
          },
          1024, metrics),
      backoff_(options_.backoff_initial) {}

K8sPodWatcher::~K8sPodWatcher() { Stop(); }

void K8sPodWatcher::Start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
}

void K8sPodWatcher::Stop() {
  {
    std::lock_guard lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string K8sPodWatcher::PodsPath() const {
  return "/api/v1/pods?fieldSelector=" + UrlEncode("spec.nodeName=" + options_.node_name);
}

void K8sPodWatcher::Backoff() {
  // Full jitter in [backoff/2, backoff]: agents on every node restarting their watches after an
  // API server hiccup must not come back in lockstep.
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  const auto half = backoff_.count() / 2;
  std::uniform_int_distribution<long long> dist(half, std::max<long long>(half, backoff_.count()));
  const auto wait = std::chrono::milliseconds(dist(rng));
  std::unique_lock lock(stop_mu_);
  stop_cv_.wait_for(lock, wait, [this] { return stop_.load(); });
  backoff_ = std::min(backoff_ * 2, options_.backoff_max);
}

bool K8sPodWatcher::List() {
  std::vector<std::pair<K8sPod, std::vector<K8sWorkload>>> pods;
  std::string continue_token;
  std::string rv;
  size_t skipped = 0;
  do {
    std::string path = PodsPath() + "&limit=" + std::to_string(options_.list_page_size);
    if (!continue_token.empty()) path += "&continue=" + UrlEncode(continue_token);
    auto resp = client_.Get(path, &stop_);
    if (stop_) return false;
    if (!resp.ok()) {
      spdlog::warn("kubernetes: listing the pods of node {} failed: {}", options_.node_name, resp.error().message);
      return false;
    }
    if (resp->status != 200) {
      spdlog::warn("kubernetes: listing the pods of node {}: HTTP {} {}", options_.node_name, resp->status,
                   resp->body.substr(0, 300));
      return false;
    }
    auto list = k8s::DecodePodList(resp->body);
    if (!list.ok()) {
      metrics_.GetCounter("threadline_k8s_decode_errors_total", {{"what", "list"}},
                          "API answers the agent could not decode, by kind").Add();
      spdlog::warn("kubernetes: bad pod list: {}", list.error().message);
      return false;
    }
    skipped += list->undecodable_items;
    for (auto& pod : list->items) {
      auto chain = owners_.Resolve(pod);
      pods.emplace_back(std::move(pod), std::move(chain));
    }
    continue_token = list->continue_token;
    rv = list->resource_version;
  } while (!continue_token.empty() && !stop_);
  if (stop_) return false;
  if (skipped) {
    metrics_.GetCounter("threadline_k8s_decode_errors_total", {{"what", "pod"}}).Add(skipped);
    spdlog::warn("kubernetes: {} pods of the list could not be decoded and were skipped", skipped);
  }
  store_.Replace(pods);
  resource_version_ = rv;
  const bool first = lists_.fetch_add(1, std::memory_order_acq_rel) == 0;
  if (first) {
    spdlog::info("kubernetes: {} pods on node {} (resourceVersion {}), watching for changes", pods.size(),
                 options_.node_name, rv);
  } else {
    spdlog::info("kubernetes: re-listed: {} pods on node {} (resourceVersion {})", pods.size(),
                 options_.node_name, rv);
  }
  return true;
}

K8sPodWatcher::WatchEnd K8sPodWatcher::Watch() {
  const std::string path = PodsPath() + "&watch=1&allowWatchBookmarks=true&resourceVersion=" +
                           UrlEncode(resource_version_) + "&timeoutSeconds=" +
                           std::to_string(options_.watch_timeout_s);
  WatchEnd end = WatchEnd::kResume;
  auto on_line = [&](std::string_view line) {
    auto ev = k8s::DecodeWatchEvent(line);
    if (!ev.ok()) {
      // A lost event would leave the store wrong until the next resync: resync now.
      metrics_.GetCounter("threadline_k8s_decode_errors_total", {{"what", "watch_event"}}).Add();
      spdlog::warn("kubernetes: bad watch event ({}); re-listing", ev.error().message);
      end = WatchEnd::kRelist;
      return false;
    }
    backoff_ = options_.backoff_initial;  // the API answers again
    static constexpr const char* kTypeNames[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};
    metrics_.GetCounter("threadline_k8s_watch_events_total", {{"type", kTypeNames[static_cast<int>(ev->type)]}},
                        "Pod watch events received, by type").Add();
    switch (ev->type) {
      case K8sWatchEvent::Type::kAdded:
      case K8sWatchEvent::Type::kModified: {
        auto chain = owners_.Resolve(*ev->pod);
        store_.Upsert(*ev->pod, std::move(chain));
        break;
      }
      case K8sWatchEvent::Type::kDeleted:
        store_.Remove(ev->pod->uid);
        break;
      case K8sWatchEvent::Type::kBookmark:
        break;
      case K8sWatchEvent::Type::kError:
        spdlog::info("kubernetes: watch ended by the API server: {} {}; re-listing", ev->error_code,
                     ev->error_message);
        metrics_.GetCounter("threadline_k8s_resyncs_total", {{"reason", ev->error_code == 410 ? "gone" : "error_event"}},
                            "Re-lists of the node's pods, by reason").Add();
        end = WatchEnd::kRelist;
        return false;
    }
    if (!ev->resource_version.empty()) resource_version_ = ev->resource_version;
    return !stop_.load();
  };
  auto resp = client_.Stream(path, on_line, stop_);
  if (stop_) return WatchEnd::kStopped;
  if (end == WatchEnd::kRelist) return end;
  if (!resp.ok()) {
    metrics_.GetCounter("threadline_k8s_watch_dropped_total", {},
                        "Pod watches whose connection failed; resumed from the last resourceVersion").Add();
    spdlog::info("kubernetes: pod watch dropped ({}); resuming from resourceVersion {}", resp.error().message,
                 resource_version_);
    return WatchEnd::kFailed;
  }
  if (resp->status == 410 || k8s::DecodeStatusCode(resp->body) == 410) {
    metrics_.GetCounter("threadline_k8s_resyncs_total", {{"reason", "gone"}}).Add();
    spdlog::info("kubernetes: resourceVersion {} is too old (410 Gone); re-listing", resource_version_);
    return WatchEnd::kRelist;
  }
  if (resp->status != 200) {
    metrics_.GetCounter("threadline_k8s_resyncs_total", {{"reason", "http_" + std::to_string(resp->status)}}).Add();
    spdlog::warn("kubernetes: pod watch: HTTP {} {}", resp->status, resp->body.substr(0, 300));
    return WatchEnd::kRelist;
  }
  return WatchEnd::kResume;  // the server's timeoutSeconds: the normal end of a watch
}

void K8sPodWatcher::Run() {
  bool need_list = true;
  while (!stop_) {
    if (need_list) {
      if (!List()) {
        if (stop_) break;
        Backoff();
        continue;
      }
      backoff_ = options_.backoff_initial;
      need_list = false;
    }
    const auto started = std::chrono::steady_clock::now();
    switch (Watch()) {
      case WatchEnd::kStopped:
        return;
      case WatchEnd::kRelist:
        need_list = true;
        // Straight back for a 410 (normal after a long disconnection), but never in a loop.
        if (std::chrono::steady_clock::now() - started < std::chrono::seconds(1)) Backoff();
        break;
      case WatchEnd::kFailed:
        Backoff();
        need_list = resource_version_.empty();
        break;
      case WatchEnd::kResume:
        // A watch that ends at once is not "the server's timeout": do not spin on it.
        if (std::chrono::steady_clock::now() - started < std::chrono::seconds(1)) Backoff();
        break;
    }
  }
}

Result<std::unique_ptr<K8sMetadataService>> K8sMetadataService::Start(K8sMetadataConfig config,
                                                                     MetricsRegistry& metrics) {
  if (config.node_name.empty())
    return Error{"kubernetes metadata needs this node's name (--node-name, or NODE_NAME from the "
                 "downward API's spec.nodeName)", EINVAL};
  if (config.api_server.empty())
    return Error{"kubernetes metadata needs the API server (kubernetes.api_server, or "
                 "KUBERNETES_SERVICE_HOST/PORT)", EINVAL};
  std::unique_ptr<K8sMetadataService> service(new K8sMetadataService());
  K8sClientConfig cc;
  cc.api_server = config.api_server;
  cc.token_file = config.token_file;
  cc.ca_file = config.ca_file;
  ASSIGN_OR_RETURN(service->client_, K8sClient::Create(std::move(cc), metrics));
  service->store_ = std::make_unique<K8sPodStore>(config.cache_max_pods, metrics);
  K8sWatcherOptions wo;
  wo.node_name = config.node_name;
  service->watcher_ = std::make_unique<K8sPodWatcher>(*service->client_, *service->store_, wo, metrics);
  service->watcher_->Start();
  spdlog::info("kubernetes metadata: watching the pods of node {} at {} (cache {} pods)", config.node_name,
               config.api_server, config.cache_max_pods);
  return service;
}

K8sMetadataService::~K8sMetadataService() {
  if (watcher_) watcher_->Stop();
}

}  // namespace threadline
