#include "agent/discovery/k8s_client.h"

#include <spdlog/spdlog.h>

#include <array>
#include <cerrno>

#include "agent/common/text.h"
#include "agent/discovery/proc_fs.h"

namespace threadline {

namespace {

// One request's state, reached from curl's callbacks.
struct CurlRequest {
  const std::function<bool(std::string_view)>* on_line = nullptr;  // null: collect the body
  const std::atomic<bool>* stop = nullptr;
  std::string body;     // whole body (GET) or the unfinished last line (stream)
  bool streaming_ok = false;  // status 200 seen: lines go to on_line
  bool stopped_by_caller = false;
  CURL* easy = nullptr;
  std::array<char, CURL_ERROR_SIZE> error{};
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* req = static_cast<CurlRequest*>(user);
  const size_t len = size * n;
  if (!req->on_line) {
    req->body.append(data, len);
    return len;
  }
  if (!req->streaming_ok) {
    long status = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
      // The Status object explaining the error; small, bounded anyway.
      if (req->body.size() < 64 * 1024) req->body.append(data, len);
      return len;
    }
    req->streaming_ok = true;
  }
  req->body.append(data, len);
  size_t start = 0;
  for (size_t nl; (nl = req->body.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view line(req->body.data() + start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (!(*req->on_line)(line)) {
      req->stopped_by_caller = true;
      return 0;  // curl aborts the transfer (CURLE_WRITE_ERROR)
    }
  }
  req->body.erase(0, start);
  // A single event larger than this is not a pod; treat the stream as broken.
  if (req->body.size() > 16 * 1024 * 1024) return 0;
  return len;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* req = static_cast<CurlRequest*>(user);
  return req->stop && req->stop->load(std::memory_order_relaxed) ? 1 : 0;
}

}  // namespace

K8sClient::K8sClient(K8sClientConfig config, MetricsRegistry& metrics)
    : config_(std::move(config)), metrics_(metrics) {}

K8sClient::~K8sClient() = default;

Result<std::unique_ptr<K8sClient>> K8sClient::Create(K8sClientConfig config, MetricsRegistry& metrics) {
  if (!CurlGlobalInit()) return Error{"curl_global_init failed"};
  if (!config.api_server.starts_with("https://") && !config.api_server.starts_with("http://"))
    return Error{"kubernetes API server must be an http(s):// URL, got \"" + config.api_server + "\"", EINVAL};
  while (config.api_server.ends_with('/')) config.api_server.pop_back();
  if (config.api_server.starts_with("http://"))
    spdlog::warn("kubernetes: API server {} is plain http: the service-account token is sent unencrypted "
                 "(meant for tests against a recorded API)", config.api_server);
  return std::unique_ptr<K8sClient>(new K8sClient(std::move(config), metrics));
}

std::string K8sClient::Token() {
  const auto now = std::chrono::steady_clock::now();
  if (!token_.empty() && now - token_read_at_ < config_.token_reload) return token_;
  token_read_at_ = now;
  if (config_.token_file.empty()) return token_;
  auto text = discovery::ReadProcFile(config_.token_file, 64 * 1024);
  if (text.ok()) {
    token_ = std::string(TrimSpace(*text));
    token_warned_ = false;
  } else if (!token_warned_) {
    // Keep the last token: the kubelet replaces the file atomically, a failed read is transient.
    spdlog::warn("kubernetes: cannot read the service-account token {}: {}", config_.token_file,
                 text.error().message);
    token_warned_ = true;
  }
  return token_;
}

Result<K8sHttpResponse> K8sClient::Perform(const std::string& path,
                                           const std::function<bool(std::string_view)>* on_line,
                                           const std::atomic<bool>* stop) {
  CurlRequest req;
  req.on_line = on_line;
  req.stop = stop;
  // GETs share one handle: curl keeps its connection (and TLS session) open between them, so
  // resolving the owners of a node's pods after a LIST is not one handshake per ReplicaSet.
  // A watch holds its connection for minutes and gets its own.
  CurlEasyPtr stream_handle;
  CURL* c = nullptr;
  if (on_line) {
    stream_handle.reset(curl_easy_init());
    c = stream_handle.get();
  } else {
    // Reset after each use (below), so it starts clean.
    if (!get_handle_) get_handle_.reset(curl_easy_init());
    c = get_handle_.get();
  }
  if (!c) return Error{"curl_easy_init failed"};
  req.easy = c;
  CurlSlistPtr headers;
  CurlSlistAppend(headers, "Accept: application/json");
  if (std::string token = Token(); !token.empty()) CurlSlistAppend(headers, "Authorization: Bearer " + token);

  const std::string url = config_.api_server + path;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_USERAGENT, "threadline/0.1.0");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  CurlCountOwnSockets(c);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, req.error.data());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &req);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &req);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config_.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // gzip when the server offers it
  if (config_.api_server.starts_with("https://") && !config_.ca_file.empty())
    curl_easy_setopt(c, CURLOPT_CAINFO, config_.ca_file.c_str());
  if (req.on_line) {
    // A watch lasts as long as the server keeps it; a silent connection is dead.
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(config_.watch_idle_timeout.count()));
  } else {
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(config_.request_timeout.count()));
  }

  const CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  // The shared handle must not keep pointers to this call's headers and buffers.
  if (!on_line) curl_easy_reset(c);
  if (status == 401) token_read_at_ = {};  // maybe rotated under us: re-read before the next request
  if (rc != CURLE_OK && !req.stopped_by_caller) {
    if (rc == CURLE_ABORTED_BY_CALLBACK) return Error{"GET " + url + ": stopped", ECANCELED};
    std::string message = req.error[0] ? req.error.data() : curl_easy_strerror(rc);
    return Error{"GET " + url + ": " + message, EIO};
  }
  K8sHttpResponse resp;
  resp.status = status;
  if (!req.on_line || status != 200) resp.body = std::move(req.body);
  return resp;
}

Result<K8sHttpResponse> K8sClient::Get(const std::string& path, const std::atomic<bool>* stop) {
  auto r = Perform(path, nullptr, stop);
  metrics_.GetCounter("threadline_k8s_api_requests_total",
                      {{"verb", "get"}, {"result", r.ok() ? std::to_string(r->status) : "error"}},
                      "Requests to the Kubernetes API server, by verb (get, watch) and HTTP status")
      .Add();
  return r;
}

Result<K8sHttpResponse> K8sClient::Stream(const std::string& path,
                                          const std::function<bool(std::string_view)>& on_line,
                                          const std::atomic<bool>& stop) {
  auto r = Perform(path, &on_line, &stop);
  metrics_.GetCounter("threadline_k8s_api_requests_total",
                      {{"verb", "watch"}, {"result", r.ok() ? std::to_string(r->status) : "error"}})
      .Add();
  return r;
}

}  // namespace threadline
