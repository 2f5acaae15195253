// OTLP/HTTP with binary protobuf: POST the serialized ExportTraceServiceRequest to the traces URL
// (Content-Type: application/x-protobuf), gzip-compressed with Content-Encoding: gzip when asked.
// libcurl does HTTP and TLS; one easy handle is kept so connections are reused.
//
// Answers, as the OTLP specification classifies them:
//   2xx                 success; an ExportTraceServiceResponse body may carry partial_success
//   429, 502, 503, 504  retryable; Retry-After (delta-seconds or an HTTP date) gives the delay
//   other 4xx/5xx       permanent (the body, a google.rpc.Status, gives the message)
//   no answer           retryable (connection refused or reset, timeout)
#pragma once

#include <atomic>
#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "exporter/gzip.h"
#include "exporter/otlp_config.h"
#include "exporter/otlp_transport.h"

namespace threadline {

class OtlpHttpTransport : public OtlpTransport {
 public:
  static Result<std::unique_ptr<OtlpHttpTransport>> Create(const OtlpExporterConfig& config);
  ~OtlpHttpTransport() override;

  ExportResult Send(std::string_view request, std::chrono::steady_clock::time_point deadline) override;
  std::string Describe() const override { return description_; }
  void Cancel() override { cancelled_.store(true); }

  struct Handles;  // curl handles (RAII), defined in the .cpp
  struct PassKey {
   private:
    friend class OtlpHttpTransport;
    PassKey() = default;
  };
  OtlpHttpTransport(PassKey, std::unique_ptr<Handles> handles, const OtlpExporterConfig& config,
                    std::string description);

 private:
  std::unique_ptr<Handles> handles_;
  std::unique_ptr<GzipCompressor> gzip_;  // null: no compression
  std::string description_;
  std::atomic<bool> cancelled_{false};
  std::string response_;  // reused between requests
  std::string retry_after_;
};

// A Retry-After value -> delay from `now`: delta-seconds ("120") or an HTTP date ("Wed, 21 Oct
// 2015 07:28:00 GMT"; a date in the past gives 0). nullopt when unparsable.
std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value, std::time_t now);

// An HTTP answer -> ExportResult. `body` is the response body (protobuf), `retry_after` the
// Retry-After header's value ("" when absent).
ExportResult ClassifyHttpResponse(long status, std::string_view body, std::string_view retry_after,
                                  std::time_t now);

}  // namespace threadline
