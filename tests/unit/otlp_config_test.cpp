// OTEL_EXPORTER_OTLP_* / OTEL_BSP_* -> OtlpExporterConfig: defaults, the specification's endpoint
// rules, TRACES_ precedence, header parsing, and every validation error.
#include "exporter/otlp_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

namespace threadline {
namespace {

using ::testing::HasSubstr;

EnvLookup Env(std::map<std::string, std::string> vars) { return WithOverrides(std::move(vars), nullptr); }

OtlpExporterConfig Load(std::map<std::string, std::string> vars) {
  Result<OtlpExporterConfig> c = OtlpExporterConfigFromEnv(Env(std::move(vars)));
  EXPECT_TRUE(c.ok()) << c.error().message;
  return c.ok() ? c.value() : OtlpExporterConfig{};
}

std::string LoadError(std::map<std::string, std::string> vars) {
  Result<OtlpExporterConfig> c = OtlpExporterConfigFromEnv(Env(std::move(vars)));
  EXPECT_FALSE(c.ok());
  return c.ok() ? "" : c.error().message;
}

TEST(OtlpConfig, DefaultsFollowTheSpecification) {
  OtlpExporterConfig c = Load({});
  EXPECT_EQ(c.protocol, OtlpProtocol::kHttpProtobuf);
  EXPECT_EQ(c.endpoint, "http://localhost:4318/v1/traces");
  EXPECT_FALSE(c.insecure);
  EXPECT_TRUE(c.headers.empty());
  EXPECT_EQ(c.timeout, std::chrono::milliseconds(10000));
  EXPECT_EQ(c.compression, OtlpCompression::kNone);
  EXPECT_EQ(c.certificate_file, "");
  EXPECT_EQ(c.batch.max_queue_size, 2048u);
  EXPECT_EQ(c.batch.schedule_delay, std::chrono::milliseconds(5000));
  EXPECT_EQ(c.batch.max_export_batch_size, 512u);
  EXPECT_EQ(c.batch.export_timeout, std::chrono::milliseconds(300000));

  OtlpExporterConfig g = Load({{"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}});
  EXPECT_EQ(g.protocol, OtlpProtocol::kGrpc);
  EXPECT_EQ(g.endpoint, "http://localhost:4317");
}

TEST(OtlpConfig, GenericEndpointGetsSignalPathForHttp) {
  EXPECT_EQ(Load({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"}}).endpoint,
            "http://collector:4318/v1/traces");
  EXPECT_EQ(Load({{"OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318/"}}).endpoint,
            "https://collector:4318/v1/traces");
  EXPECT_EQ(Load({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://gw/otlp"}}).endpoint, "http://gw/otlp/v1/traces");
}

TEST(OtlpConfig, SignalEndpointIsUsedAsIs) {
  EXPECT_EQ(Load({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:1"},
                  {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/custom"}})
                .endpoint,
            "http://collector:4318/custom");
}

TEST(OtlpConfig, GrpcEndpointIsUsedAsIs) {
  EXPECT_EQ(Load({{"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}, {"OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4317"}}).endpoint,
            "https://c:4317");
  OtlpExporterConfig c = Load({{"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
                               {"OTEL_EXPORTER_OTLP_ENDPOINT", "c:4317"},
                               {"OTEL_EXPORTER_OTLP_INSECURE", "TRUE"}});
  EXPECT_EQ(c.endpoint, "c:4317");
  EXPECT_TRUE(c.insecure);
}

TEST(OtlpConfig, TracesVariablesWinOverGenericOnes) {
  OtlpExporterConfig c = Load({
      {"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"},
      {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"},
      {"OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2"},
      {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "c=3"},
      {"OTEL_EXPORTER_OTLP_TIMEOUT", "1000"},
      {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"},
      {"OTEL_EXPORTER_OTLP_COMPRESSION", "none"},
      {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"},
      {"OTEL_EXPORTER_OTLP_CERTIFICATE", "/generic.pem"},
      {"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/traces.pem"},
      {"OTEL_EXPORTER_OTLP_INSECURE", "false"},
      {"OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true"},
  });
  EXPECT_EQ(c.protocol, OtlpProtocol::kGrpc);
  EXPECT_EQ(c.headers, (OtlpHeaders{{"c", "3"}}));
  EXPECT_EQ(c.timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(c.compression, OtlpCompression::kGzip);
  EXPECT_EQ(c.certificate_file, "/traces.pem");
  EXPECT_TRUE(c.insecure);
}

TEST(OtlpConfig, EmptyValueCountsAsUnset) {
  OtlpExporterConfig c = Load({{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", ""},
                               {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
                               {"OTEL_EXPORTER_OTLP_TIMEOUT", "  "}});
  EXPECT_EQ(c.protocol, OtlpProtocol::kGrpc);
  EXPECT_EQ(c.timeout, std::chrono::milliseconds(10000));
}

TEST(OtlpConfig, TlsFiles) {
  OtlpExporterConfig c = Load({{"OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"},
                               {"OTEL_EXPORTER_OTLP_CLIENT_KEY", "/key.pem"},
                               {"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "/cert.pem"}});
  EXPECT_EQ(c.certificate_file, "/ca.pem");
  EXPECT_EQ(c.client_key_file, "/key.pem");
  EXPECT_EQ(c.client_certificate_file, "/cert.pem");
  EXPECT_THAT(LoadError({{"OTEL_EXPORTER_OTLP_CLIENT_KEY", "/key.pem"}}), HasSubstr("must be set together"));
}

TEST(OtlpConfig, BatchSettings) {
  OtlpExporterConfig c = Load({{"OTEL_BSP_MAX_QUEUE_SIZE", "100"},
                               {"OTEL_BSP_SCHEDULE_DELAY", "250"},
                               {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"},
                               {"OTEL_BSP_EXPORT_TIMEOUT", "7000"}});
  EXPECT_EQ(c.batch.max_queue_size, 100u);
  EXPECT_EQ(c.batch.schedule_delay, std::chrono::milliseconds(250));
  EXPECT_EQ(c.batch.max_export_batch_size, 10u);
  EXPECT_EQ(c.batch.export_timeout, std::chrono::milliseconds(7000));
  // Only the queue made smaller than the default batch: the batch follows it.
  EXPECT_EQ(Load({{"OTEL_BSP_MAX_QUEUE_SIZE", "64"}}).batch.max_export_batch_size, 64u);
  EXPECT_THAT(LoadError({{"OTEL_BSP_MAX_QUEUE_SIZE", "64"}, {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "65"}}),
              HasSubstr("OTEL_BSP_MAX_EXPORT_BATCH_SIZE=\"65\": must not exceed OTEL_BSP_MAX_QUEUE_SIZE (64)"));
}

TEST(OtlpConfig, ErrorsNameTheVariableAndValue) {
  EXPECT_EQ(LoadError({{"OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"}}),
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"thrift\": must be grpc or http/protobuf");
  EXPECT_THAT(LoadError({{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"}}), HasSubstr("not supported"));
  EXPECT_EQ(LoadError({{"OTEL_EXPORTER_OTLP_TIMEOUT", "10s"}}), "OTEL_EXPORTER_OTLP_TIMEOUT=\"10s\": not an integer");
  EXPECT_EQ(LoadError({{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0"}}),
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=\"0\": must be greater than 0");
  EXPECT_EQ(LoadError({{"OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"}}),
            "OTEL_EXPORTER_OTLP_COMPRESSION=\"zstd\": must be gzip or none");
  EXPECT_EQ(LoadError({{"OTEL_EXPORTER_OTLP_INSECURE", "yes"}}),
            "OTEL_EXPORTER_OTLP_INSECURE=\"yes\": must be true or false");
  EXPECT_THAT(LoadError({{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"}}), HasSubstr("must start with http://"));
  EXPECT_THAT(LoadError({{"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}, {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317/x"}}),
              HasSubstr("without a path"));
  EXPECT_THAT(LoadError({{"OTEL_EXPORTER_OTLP_HEADERS", "a=1,broken"}}),
              HasSubstr("OTEL_EXPORTER_OTLP_HEADERS: \"broken\" is not key=value"));
  EXPECT_THAT(LoadError({{"OTEL_BSP_MAX_QUEUE_SIZE", "-1"}}), HasSubstr("OTEL_BSP_MAX_QUEUE_SIZE"));
}

TEST(OtlpHeaders, BaggageFormatPercentDecoded) {
  Result<OtlpHeaders> h = ParseOtlpHeaders(" api-key = s3cr%3Dt%2C1 ,, X-Tenant=a%20b;prop=1, e= ", "V");
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h.value(), (OtlpHeaders{{"api-key", "s3cr=t,1"}, {"X-Tenant", "a b"}, {"e", ""}}));
  EXPECT_THAT(ParseOtlpHeaders("=v", "V").error().message, HasSubstr("empty key"));
  EXPECT_THAT(ParseOtlpHeaders("k=%4", "V").error().message, HasSubstr("truncated percent-escape"));
  EXPECT_THAT(ParseOtlpHeaders("k=%zz", "V").error().message, HasSubstr("bad percent-escape"));
  EXPECT_TRUE(ParseOtlpHeaders("", "V").value().empty());
}

TEST(GrpcEndpoint, SchemeDecidesTls) {
  auto t = ParseGrpcEndpoint("https://collector:4317", false);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->target, "collector:4317");
  EXPECT_TRUE(t->tls);
  t = ParseGrpcEndpoint("http://127.0.0.1:4317/", false);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->target, "127.0.0.1:4317");
  EXPECT_FALSE(t->tls);
  EXPECT_TRUE(ParseGrpcEndpoint("collector:4317", false)->tls);
  EXPECT_FALSE(ParseGrpcEndpoint("collector:4317", true)->tls);
  EXPECT_FALSE(ParseGrpcEndpoint("unix:///tmp/x", false).ok());
  EXPECT_FALSE(ParseGrpcEndpoint("http://", false).ok());
}

TEST(OtlpConfig, OverridesComeBeforeTheEnvironment) {
  EnvLookup env = WithOverrides({{"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}},
                                Env({{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"}, {"OTEL_BSP_MAX_QUEUE_SIZE", "9"}}));
  Result<OtlpExporterConfig> c = OtlpExporterConfigFromEnv(env);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->protocol, OtlpProtocol::kGrpc);
  EXPECT_EQ(c->batch.max_queue_size, 9u);
}

TEST(OtlpConfig, ExporterTakesTheRequestTimeoutFromTimeout) {
  MetricsRegistry metrics;
  OtlpExporterConfig config = Load({{"OTEL_EXPORTER_OTLP_TIMEOUT", "2500"}, {"OTEL_BSP_MAX_QUEUE_SIZE", "7"}});
  auto exporter = CreateOtlpSpanExporter(config, metrics);
  ASSERT_TRUE(exporter.ok()) << exporter.error().message;
  EXPECT_EQ((*exporter)->options().request_timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ((*exporter)->options().max_queue_size, 7u);
}

}  // namespace
}  // namespace threadline
