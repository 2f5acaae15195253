// A small Kubernetes API client: GET and streamed GET (watch) with in-cluster service-account
// auth, over libcurl. Only what the metadata watcher needs; every call blocks, so it is used
// from the watcher's thread only.
//
// Auth: "Authorization: Bearer <token>" from the token file, re-read every token_reload and
// after any 401 (projected service-account tokens rotate, about hourly; the kubelet rewrites the
// file). Server certificate checked against the CA file for https. An http:// API server is
// accepted (tests replay recorded answers from a local server) and then no CA is used.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "agent/common/curl.h"
#include "agent/common/metrics.h"
#include "agent/common/result.h"

namespace threadline {

// Where the kubelet mounts the pod's service-account credentials.
inline constexpr char kServiceAccountTokenFile[] = "/var/run/secrets/kubernetes.io/serviceaccount/token";
inline constexpr char kServiceAccountCaFile[] = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

struct K8sClientConfig {
  std::string api_server;  // "https://10.96.0.1:443" or "http://127.0.0.1:18700"
  std::string token_file;  // empty or unreadable: requests go without a token (logged once)
  std::string ca_file;
  std::chrono::seconds token_reload{60};
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{15000};  // GET, whole request
  // A watch is ended by the server (timeoutSeconds); a connection that stays silent this long
  // is taken as dead (bookmarks and events normally arrive much more often than that).
  std::chrono::seconds watch_idle_timeout{150};
};

struct K8sHttpResponse {
  long status = 0;
  std::string body;  // for Stream: only when status != 200 (the Status object explaining it)
};

class K8sClient {
 public:
  static Result<std::unique_ptr<K8sClient>> Create(K8sClientConfig config,
                                                   MetricsRegistry& metrics = MetricsRegistry::Global());
  ~K8sClient();
  K8sClient(const K8sClient&) = delete;
  K8sClient& operator=(const K8sClient&) = delete;

  // GET path ("/api/v1/..."). An Error only for transport failures; HTTP errors are statuses.
  // `stop` (optional) abandons the request within about a second, for a quick shutdown.
  Result<K8sHttpResponse> Get(const std::string& path, const std::atomic<bool>* stop = nullptr);

  // GET path and hand each body line (without '\n') to on_line as it arrives; on_line returns
  // false to end the stream. A line cut by a dropped connection is not delivered. Returns when
  // the server ends the response, on_line says stop, `stop` becomes true (checked about once a
  // second) or the connection fails (an Error: dropped, idle timeout, refused).
  Result<K8sHttpResponse> Stream(const std::string& path, const std::function<bool(std::string_view)>& on_line,
                                 const std::atomic<bool>& stop);

 private:
  K8sClient(K8sClientConfig config, MetricsRegistry& metrics);
  // on_line null: collect the whole body (GET).
  Result<K8sHttpResponse> Perform(const std::string& path, const std::function<bool(std::string_view)>* on_line,
                                  const std::atomic<bool>* stop);
  std::string Token();

  K8sClientConfig config_;
  MetricsRegistry& metrics_;
  std::string token_;
  std::chrono::steady_clock::time_point token_read_at_{};
  bool token_warned_ = false;
  CurlEasyPtr get_handle_;  // reused by Get
};

}  // namespace threadline
