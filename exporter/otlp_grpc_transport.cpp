#include "exporter/otlp_grpc_transport.h"

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <sstream>

#include "agent/common/text.h"
#include "agent/spans/span.h"
#include "exporter/otlp_messages.h"
#include "threadline/rpc/status.pb.h"

namespace threadline {

namespace {

constexpr std::string_view kRetryInfoType = "type.googleapis.com/google.rpc.RetryInfo";
// The full method name of TraceService.Export (trace_service.proto).
const std::string kExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

Result<std::string> ReadPemFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"cannot read " + std::string(what) + " file " + path};
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Error{"cannot read " + std::string(what) + " file " + path};
  return ss.str();
}

std::chrono::system_clock::time_point ToSystemClock(std::chrono::steady_clock::time_point t) {
  const auto left = t - std::chrono::steady_clock::now();
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(left);
}

}  // namespace

std::string_view GrpcStatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN_CODE";
  }
}

std::optional<std::chrono::milliseconds> RetryDelayFromStatusDetails(std::string_view status_details) {
  if (status_details.empty()) return std::nullopt;
  rpc::Status status;
  if (!status.ParseFromArray(status_details.data(), static_cast<int>(status_details.size()))) return std::nullopt;
  for (const rpc::Any& any : status.details()) {
    if (any.type_url() != kRetryInfoType) continue;
    rpc::RetryInfo info;
    if (!info.ParseFromString(any.value())) return std::nullopt;
    const int64_t ms = info.retry_delay().seconds() * 1000 + info.retry_delay().nanos() / 1000000;
    return std::chrono::milliseconds(std::max<int64_t>(ms, 0));
  }
  return std::nullopt;
}

ExportResult ClassifyGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return ExportResult::Success();
  std::string message = "gRPC " + std::string(GrpcStatusCodeName(status.error_code()));
  if (!status.error_message().empty()) message += ": " + status.error_message();
  const std::optional<std::chrono::milliseconds> delay = RetryDelayFromStatusDetails(status.error_details());
  switch (status.error_code()) {
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DATA_LOSS:
      return ExportResult::Retryable(std::move(message), delay);
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // The specification: retryable only when the server says when (it can recover).
      if (delay.has_value()) return ExportResult::Retryable(std::move(message), delay);
      return ExportResult::Permanent(std::move(message));
    default:
      return ExportResult::Permanent(std::move(message));
  }
}

Result<std::unique_ptr<OtlpGrpcTransport>> OtlpGrpcTransport::Create(const OtlpExporterConfig& config) {
  ASSIGN_OR_RETURN(GrpcTarget target, ParseGrpcEndpoint(config.endpoint, config.insecure));
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (target.tls) {
    grpc::SslCredentialsOptions ssl;
    if (!config.certificate_file.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(config.certificate_file, "CA certificate"));
    }
    if (!config.client_key_file.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile(config.client_key_file, "client key"));
      ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPemFile(config.client_certificate_file, "client certificate"));
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetUserAgentPrefix("threadline/" + std::string(kScopeVersion));
  // gRPC's own reconnect backoff grows to 120 s by default (and starts at 20 s minimum): a
  // receiver that comes back would stay unused that long, with every export failing at once
  // meanwhile. A reconnect attempt to a receiver that is down is cheap; our retries pace the
  // exports.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 500);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(target.target, credentials, args);
  if (channel == nullptr) return Error{"cannot create a gRPC channel to " + target.target};

  std::string description = "OTLP/gRPC to " + target.target + (target.tls ? " (TLS" : " (plaintext");
  if (!config.client_key_file.empty()) description += ", mTLS";
  description += config.compression == OtlpCompression::kGzip ? ", gzip)" : ")";
  return std::make_unique<OtlpGrpcTransport>(PassKey(), std::move(channel), config, std::move(description));
}

OtlpGrpcTransport::OtlpGrpcTransport(PassKey, std::shared_ptr<grpc::Channel> channel,
                                     const OtlpExporterConfig& config, std::string description)
    : channel_(std::move(channel)),
      stub_(channel_),
      gzip_(config.compression == OtlpCompression::kGzip),
      description_(std::move(description)) {
  for (const auto& [k, v] : config.headers) metadata_.emplace_back(AsciiLower(k), v);
}

ExportResult OtlpGrpcTransport::Send(std::string_view request, std::chrono::steady_clock::time_point deadline) {
  grpc::ClientContext ctx;
  ctx.set_deadline(ToSystemClock(deadline));
  // Fail at once (UNAVAILABLE) while the channel cannot connect rather than wait out the
  // deadline: the exporter's backoff paces the attempts.
  ctx.set_wait_for_ready(false);
  if (gzip_) ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);
  for (const auto& [k, v] : metadata_) ctx.AddMetadata(k, v);
  {
    std::lock_guard lock(in_flight_mu_);
    if (cancelled_.load()) return ExportResult::Retryable("export cancelled (shutdown)");
    in_flight_ = &ctx;
  }
  grpc::Slice slice(request.data(), request.size());
  const grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  std::mutex done_mu;
  std::condition_variable done_cv;
  std::optional<grpc::Status> status;
  stub_.UnaryCall(&ctx, kExportMethod, grpc::StubOptions(), &request_buffer, &response_buffer,
                  [&](grpc::Status s) {
                    std::lock_guard lock(done_mu);
                    status = std::move(s);
                    done_cv.notify_one();
                  });
  {
    std::unique_lock lock(done_mu);
    done_cv.wait(lock, [&] { return status.has_value(); });
  }
  {
    std::lock_guard lock(in_flight_mu_);
    in_flight_ = nullptr;
  }
  if (!status->ok()) return ClassifyGrpcStatus(*status);
  std::vector<grpc::Slice> slices;
  std::string body;
  if (response_buffer.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) body.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  otlp_pb::collector::ExportTraceServiceResponse response;
  if (!body.empty() && response.ParseFromString(body) && response.has_partial_success()) {
    return ExportResult::Success(response.partial_success().rejected_spans(),
                                 response.partial_success().error_message());
  }
  return ExportResult::Success();
}

void OtlpGrpcTransport::Cancel() {
  std::lock_guard lock(in_flight_mu_);
  cancelled_.store(true);
  if (in_flight_ != nullptr) in_flight_->TryCancel();
}

}  // namespace threadline
