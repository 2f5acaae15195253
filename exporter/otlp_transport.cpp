#include "exporter/otlp_transport.h"

#include "exporter/otlp_config.h"
#include "exporter/otlp_grpc_transport.h"
#include "exporter/otlp_http_transport.h"

namespace threadline {

Result<std::unique_ptr<OtlpTransport>> CreateOtlpTransport(const OtlpExporterConfig& config) {
  if (config.protocol == OtlpProtocol::kGrpc) {
    ASSIGN_OR_RETURN(std::unique_ptr<OtlpGrpcTransport> t, OtlpGrpcTransport::Create(config));
    return std::unique_ptr<OtlpTransport>(std::move(t));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<OtlpHttpTransport> t, OtlpHttpTransport::Create(config));
  return std::unique_ptr<OtlpTransport>(std::move(t));
}

Result<std::unique_ptr<BatchSpanExporter>> CreateOtlpSpanExporter(const OtlpExporterConfig& config,
                                                                  MetricsRegistry& metrics) {
  ASSIGN_OR_RETURN(std::unique_ptr<OtlpTransport> transport, CreateOtlpTransport(config));
  BatchExporterOptions options = config.batch;
  options.request_timeout = config.timeout;
  return BatchSpanExporter::Create(options, std::move(transport), metrics);
}

}  // namespace threadline
