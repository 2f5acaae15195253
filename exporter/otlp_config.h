// The OTLP trace exporter's settings, from the standard environment variables of the
// OpenTelemetry specification ("OpenTelemetry Protocol Exporter" and "Environment Variable
// Specification"), read through a lookup function so tests inject their own environment and
// the CLI layers its flags on top (WithOverrides).
//
//   OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL      grpc | http/protobuf (default http/protobuf)
//   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT        used as is
//   OTEL_EXPORTER_OTLP_ENDPOINT               base URL; http/protobuf appends "v1/traces" to its
//                                             path; grpc uses it as is
//                                             defaults: http://localhost:4318/v1/traces (http),
//                                             http://localhost:4317 (grpc)
//   OTEL_EXPORTER_OTLP_[TRACES_]INSECURE      grpc, endpoint without scheme: true = plaintext
//   OTEL_EXPORTER_OTLP_[TRACES_]HEADERS       k1=v1,k2=v2 (W3C baggage format, values
//                                             percent-decoded); the TRACES_ one replaces the
//                                             generic one as a whole
//   OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT       ms per export request (default 10000)
//   OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION   gzip | none (default none)
//   OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE   PEM file of CAs to trust (default: system CAs)
//   OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_KEY / _CLIENT_CERTIFICATE   mTLS, PEM files, both or none
//   OTEL_BSP_MAX_QUEUE_SIZE (2048), OTEL_BSP_SCHEDULE_DELAY (5000 ms),
//   OTEL_BSP_MAX_EXPORT_BATCH_SIZE (512, <= queue size), OTEL_BSP_EXPORT_TIMEOUT (300000 ms: see batch_exporter.h)
//
// The signal-specific (TRACES_) variable wins over the generic one. An empty variable counts as
// unset (specification). Anything unparsable is an error naming the variable and the value.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/common/result.h"
#include "agent/common/text.h"
#include "exporter/batch_exporter.h"

namespace threadline {

enum class OtlpProtocol { kGrpc, kHttpProtobuf };
enum class OtlpCompression { kNone, kGzip };
std::string_view ToString(OtlpProtocol p);     // "grpc", "http/protobuf"
std::string_view ToString(OtlpCompression c);  // "none", "gzip"

using OtlpHeaders = KeyValueList;  // (name, value), in order

struct OtlpExporterConfig {
  OtlpProtocol protocol = OtlpProtocol::kHttpProtobuf;
  // http/protobuf: the URL requests are POSTed to. grpc: [scheme://]host:port.
  std::string endpoint = "http://localhost:4318/v1/traces";
  bool insecure = false;  // grpc, endpoint without scheme only
  OtlpHeaders headers;
  std::chrono::milliseconds timeout{10000};
  OtlpCompression compression = OtlpCompression::kNone;
  std::string certificate_file;
  std::string client_key_file;
  std::string client_certificate_file;
  // Queue, batching and the per-batch retry budget (OTEL_BSP_*). batch.request_timeout is not
  // read: CreateOtlpSpanExporter uses `timeout` above.
  BatchExporterOptions batch;
};

// Returns the value of an environment variable, or nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
// The process environment (getenv).
EnvLookup ProcessEnv();
// `overrides` first (e.g. CLI flags mapped to the variable they stand for), then `base`.
EnvLookup WithOverrides(std::map<std::string, std::string> overrides, EnvLookup base);

Result<OtlpExporterConfig> OtlpExporterConfigFromEnv(const EnvLookup& env);

// The whole OTLP exporter: the transport `config` names behind a BatchSpanExporter (started).
//   auto config = OtlpExporterConfigFromEnv(WithOverrides(flags, ProcessEnv()));
//   auto exporter = CreateOtlpSpanExporter(*config);   // a SpanSink
//   ... exporter->OnSpan(std::move(span)) ...; (*exporter)->Shutdown(steady_clock::now() + 5s);
Result<std::unique_ptr<BatchSpanExporter>> CreateOtlpSpanExporter(
    const OtlpExporterConfig& config, MetricsRegistry& metrics = MetricsRegistry::Global());

// Parses OTEL_EXPORTER_OTLP_HEADERS' format (ParseKeyValueList). Errors name `variable`.
Result<OtlpHeaders> ParseOtlpHeaders(std::string_view text, std::string_view variable);

// grpc endpoint -> channel target and whether to use TLS: https:// -> TLS, http:// ->
// plaintext, no scheme -> TLS unless `insecure`. A path is not allowed.
struct GrpcTarget {
  std::string target;  // host:port, for grpc::CreateChannel
  bool tls = false;
};
Result<GrpcTarget> ParseGrpcEndpoint(std::string_view endpoint, bool insecure);

}  // namespace threadline
