#include "exporter/otlp_http_transport.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <fstream>

#include "agent/common/curl.h"
#include "agent/common/text.h"
#include "agent/spans/span.h"
#include "exporter/otlp_messages.h"
#include "threadline/rpc/status.pb.h"

namespace threadline {

namespace {

// Answers are small (an empty body, a partial success or an error status); a receiver that
// sends more is not one we need to read to the end.
constexpr size_t kMaxResponseBytes = 64 * 1024;

size_t OnBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* out = static_cast<std::string*>(user);
  const size_t n = size * nmemb;
  if (out->size() < kMaxResponseBytes) out->append(data, std::min(n, kMaxResponseBytes - out->size()));
  return n;
}

// Keeps the last Retry-After header of the answer (after redirects or 100-continue, the last
// answer's is the one that counts).
size_t OnHeader(char* data, size_t size, size_t nmemb, void* user) {
  auto* retry_after = static_cast<std::string*>(user);
  const size_t n = size * nmemb;
  std::string_view line(data, n);
  if (line.starts_with("HTTP/")) retry_after->clear();  // a new answer starts
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size() && AsciiLower(line.substr(0, kName.size())) == kName) {
    *retry_after = std::string(TrimSpace(line.substr(kName.size())));
  }
  return n;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  // Non-zero aborts the transfer (CURLE_ABORTED_BY_CALLBACK).
  return static_cast<const std::atomic<bool>*>(user)->load() ? 1 : 0;
}

}  // namespace

struct OtlpHttpTransport::Handles {
  CurlEasyPtr easy;
  CurlSlistPtr headers;
  std::array<char, CURL_ERROR_SIZE> error_buffer{};  // set once as CURLOPT_ERRORBUFFER
};

std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value, std::time_t now) {
  value = TrimSpace(value);
  if (value.empty()) return std::nullopt;
  int64_t seconds = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec == std::errc() && ptr == value.data() + value.size()) {
    if (seconds < 0) return std::nullopt;
    return std::chrono::milliseconds(seconds * 1000);
  }
  const std::string date(value);
  const std::time_t at = curl_getdate(date.c_str(), nullptr);
  if (at == -1) return std::nullopt;
  return std::chrono::milliseconds(std::max<int64_t>(0, static_cast<int64_t>(at - now)) * 1000);
}

ExportResult ClassifyHttpResponse(long status, std::string_view body, std::string_view retry_after,
                                  std::time_t now) {
  if (status >= 200 && status < 300) {
    otlp_pb::collector::ExportTraceServiceResponse response;
    if (!body.empty() && response.ParseFromArray(body.data(), static_cast<int>(body.size())) &&
        response.has_partial_success()) {
      return ExportResult::Success(response.partial_success().rejected_spans(),
                                   response.partial_success().error_message());
    }
    return ExportResult::Success();
  }
  std::string message = "HTTP " + std::to_string(status);
  // The specification has error answers carry a google.rpc.Status (protobuf, for protobuf
  // requests); use its message when the body is one.
  rpc::Status rpc_status;
  if (!body.empty() && rpc_status.ParseFromArray(body.data(), static_cast<int>(body.size())) &&
      !rpc_status.message().empty()) {
    message += ": " + rpc_status.message();
  }
  if (status == 429 || status == 502 || status == 503 || status == 504) {
    return ExportResult::Retryable(std::move(message), ParseRetryAfter(retry_after, now));
  }
  return ExportResult::Permanent(std::move(message));
}

Result<std::unique_ptr<OtlpHttpTransport>> OtlpHttpTransport::Create(const OtlpExporterConfig& config) {
  if (!CurlGlobalInit()) return Error{"libcurl: global initialisation failed"};
  auto handles = std::make_unique<Handles>();
  handles->easy.reset(curl_easy_init());
  if (handles->easy == nullptr) return Error{"libcurl: cannot create a handle"};

  std::vector<std::string> lines = {"Content-Type: application/x-protobuf",
                                    // No "Expect: 100-continue" round trip for large bodies.
                                    "Expect:"};
  if (config.compression == OtlpCompression::kGzip) lines.emplace_back("Content-Encoding: gzip");
  for (const auto& [k, v] : config.headers) {
    if (k.find_first_of(":\r\n") != std::string::npos || v.find_first_of("\r\n") != std::string::npos) {
      return Error{"OTLP header \"" + k + "\" has a name or value that cannot go into an HTTP header"};
    }
    lines.push_back(k + ": " + v);
  }
  for (const std::string& line : lines) {
    if (!CurlSlistAppend(handles->headers, line)) return Error{"libcurl: out of memory building headers"};
  }

  CURL* c = handles->easy.get();
  const std::string user_agent = "threadline/" + std::string(kScopeVersion);
  bool ok = curl_easy_setopt(c, CURLOPT_URL, config.endpoint.c_str()) == CURLE_OK;
  ok &= curl_easy_setopt(c, CURLOPT_POST, 1L) == CURLE_OK;
  ok &= curl_easy_setopt(c, CURLOPT_HTTPHEADER, handles->headers.get()) == CURLE_OK;
  ok &= curl_easy_setopt(c, CURLOPT_USERAGENT, user_agent.c_str()) == CURLE_OK;
  ok &= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;  // we are multi-threaded
  ok &= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, handles->error_buffer.data()) == CURLE_OK;
  ok &= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnBody) == CURLE_OK;
  ok &= curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &OnHeader) == CURLE_OK;
  ok &= curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L) == CURLE_OK;
  ok &= curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &OnProgress) == CURLE_OK;
  // Only the URL given: never follow a redirect elsewhere with our headers.
  ok &= curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
  ok &= CurlCountOwnSockets(c);  // a collector on this node is not traced receiving our exports
  if (!config.certificate_file.empty()) {
    ok &= curl_easy_setopt(c, CURLOPT_CAINFO, config.certificate_file.c_str()) == CURLE_OK;
  }
  if (!config.client_key_file.empty()) {
    ok &= curl_easy_setopt(c, CURLOPT_SSLCERT, config.client_certificate_file.c_str()) == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_SSLKEY, config.client_key_file.c_str()) == CURLE_OK;
  }
  if (!ok) return Error{"libcurl: cannot set up the OTLP/HTTP request"};
  // curl reads these files per connection; a missing one is better reported now than at the
  // first export.
  for (const std::string* f : {&config.certificate_file, &config.client_key_file, &config.client_certificate_file}) {
    if (!f->empty() && !std::ifstream(*f)) return Error{"cannot read TLS file " + *f};
  }

  std::string description = "OTLP/HTTP protobuf to " + config.endpoint;
  if (!config.client_key_file.empty()) description += " (mTLS)";
  if (config.compression == OtlpCompression::kGzip) description += " (gzip)";
  return std::make_unique<OtlpHttpTransport>(PassKey(), std::move(handles), config, std::move(description));
}

OtlpHttpTransport::OtlpHttpTransport(PassKey, std::unique_ptr<Handles> handles,
                                     const OtlpExporterConfig& config, std::string description)
    : handles_(std::move(handles)),
      gzip_(config.compression == OtlpCompression::kGzip ? std::make_unique<GzipCompressor>() : nullptr),
      description_(std::move(description)) {
  CURL* c = handles_->easy.get();
  // Callbacks' user pointers refer to members, so set them once the object has its address.
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &response_);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &retry_after_);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &cancelled_);
}

OtlpHttpTransport::~OtlpHttpTransport() = default;

ExportResult OtlpHttpTransport::Send(std::string_view request, std::chrono::steady_clock::time_point deadline) {
  if (cancelled_.load()) return ExportResult::Retryable("export cancelled (shutdown)");
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return ExportResult::Retryable("deadline passed before the request was sent");

  std::string_view body = request;
  if (gzip_) {
    Result<std::string_view> compressed = gzip_->Compress(request);
    if (!compressed.ok()) return ExportResult::Permanent(compressed.error().message);
    body = *compressed;
  }
  response_.clear();
  retry_after_.clear();
  handles_->error_buffer[0] = '\0';  // curl writes it only on some failures

  CURL* c = handles_->easy.get();
  // curl does not copy POSTFIELDS: `body` stays valid until curl_easy_perform returns.
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(left.count()));
  const CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    std::string message = curl_easy_strerror(rc);
    const std::string detail(handles_->error_buffer.data());
    if (!detail.empty()) message += ": " + detail;
    if (rc == CURLE_ABORTED_BY_CALLBACK) message = "export cancelled (shutdown)";
    // The specification: no answer (connection refused, reset, timed out) may be retried.
    // TLS setup problems will not fix themselves.
    switch (rc) {
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_CIPHER:
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return ExportResult::Permanent(std::move(message));
      default:
        return ExportResult::Retryable(std::move(message));
    }
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  return ClassifyHttpResponse(status, response_, retry_after_, std::time(nullptr));
}

}  // namespace threadline
