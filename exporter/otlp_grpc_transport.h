// OTLP/gRPC: TraceService/Export over one long-lived grpc++ channel, the request sent as the
// serialized bytes the encoder wrote (no message objects).
//
// TLS (grpc::SslCredentials) when the endpoint is https://, or has no scheme and INSECURE is not
// true; the CA file, when given, replaces the system roots, and a client key + certificate make
// it mTLS. gzip is gRPC message compression. Each call carries the config's headers as metadata
// and the caller's deadline.
//
// Answers, as the OTLP specification classifies them:
//   OK                                  success (partial_success counted by the caller)
//   CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS   retryable
//   RESOURCE_EXHAUSTED                  retryable only when the server sent RetryInfo
//   everything else                     permanent
// A google.rpc.RetryInfo in the status details (grpc-status-details-bin) gives the delay.
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "exporter/otlp_config.h"
#include "exporter/otlp_transport.h"

namespace threadline {

class OtlpGrpcTransport : public OtlpTransport {
 public:
  static Result<std::unique_ptr<OtlpGrpcTransport>> Create(const OtlpExporterConfig& config);

  ExportResult Send(std::string_view request, std::chrono::steady_clock::time_point deadline) override;
  std::string Describe() const override { return description_; }
  void Cancel() override;

  struct PassKey {
   private:
    friend class OtlpGrpcTransport;
    PassKey() = default;
  };
  OtlpGrpcTransport(PassKey, std::shared_ptr<grpc::Channel> channel, const OtlpExporterConfig& config,
                    std::string description);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  // The request is already serialized (otlp_protobuf.h): a generic stub sends bytes as they are.
  grpc::GenericStub stub_;
  OtlpHeaders metadata_;  // keys lower-cased, as gRPC requires
  bool gzip_;
  std::string description_;

  std::mutex in_flight_mu_;
  grpc::ClientContext* in_flight_ = nullptr;
  std::atomic<bool> cancelled_{false};
};

// The status code's name as in the gRPC specification ("UNAVAILABLE").
std::string_view GrpcStatusCodeName(grpc::StatusCode code);

// The delay of a google.rpc.RetryInfo among the details of a serialized google.rpc.Status (the
// grpc-status-details-bin trailer, grpc::Status::error_details()); nullopt when there is none
// or the bytes do not parse.
std::optional<std::chrono::milliseconds> RetryDelayFromStatusDetails(std::string_view status_details);

// A failed call's status -> ExportResult (retryable or not, with the server's delay).
ExportResult ClassifyGrpcStatus(const grpc::Status& status);

}  // namespace threadline
