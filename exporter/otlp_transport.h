// One OTLP export request over the network, and what came of it. Implemented by the gRPC
// (otlp_grpc_transport.h) and HTTP/protobuf (otlp_http_transport.h) transports; the batch
// exporter (batch_exporter.h) decides about retries from the ExportResult, so the transports
// only classify answers the way the OTLP specification says.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agent/common/result.h"

namespace threadline {

struct OtlpExporterConfig;

struct ExportResult {
  bool ok = false;         // the receiver accepted the request (maybe only in part)
  bool retryable = false;  // !ok: the same request may succeed later
  // !ok && retryable: the delay the receiver asked for (RetryInfo, Retry-After), if any.
  std::optional<std::chrono::milliseconds> retry_after;
  // !ok: what went wrong (status, HTTP code, transport error). ok: the partial-success
  // error_message, if the receiver sent one.
  std::string message;
  int64_t rejected_spans = 0;  // ok: partial_success.rejected_spans

  static ExportResult Success(int64_t rejected = 0, std::string partial_message = {}) {
    return {.ok = true, .retryable = false, .retry_after = std::nullopt,
            .message = std::move(partial_message), .rejected_spans = rejected};
  }
  static ExportResult Retryable(std::string message,
                                std::optional<std::chrono::milliseconds> after = std::nullopt) {
    return {.ok = false, .retryable = true, .retry_after = after, .message = std::move(message)};
  }
  static ExportResult Permanent(std::string message) {
    return {.ok = false, .retryable = false, .retry_after = std::nullopt, .message = std::move(message)};
  }
};

class OtlpTransport {
 public:
  virtual ~OtlpTransport() = default;
  // Sends one request, a serialized ExportTraceServiceRequest (otlp_protobuf.h), and waits for
  // the answer until `deadline` at the latest. Never throws. Called from one thread at a time
  // (the exporter's worker).
  virtual ExportResult Send(std::string_view request, std::chrono::steady_clock::time_point deadline) = 0;
  // For logs: "OTLP/gRPC to collector:4317 (TLS, gzip)".
  virtual std::string Describe() const = 0;
  // From another thread: makes a Send() in progress, and every later one, return soon with a
  // failure. Used by the exporter's shutdown when its deadline has come.
  virtual void Cancel() = 0;
};

// The transport `config.protocol` names, set up from `config` (endpoint, TLS files, headers,
// compression). Fails when a TLS file cannot be read or the endpoint is unusable.
Result<std::unique_ptr<OtlpTransport>> CreateOtlpTransport(const OtlpExporterConfig& config);

}  // namespace threadline
