// The OTLP transports: how answers are classified (HTTP codes, Retry-After, gRPC codes,
// RetryInfo, partial success), gzip, and both transports end to end against in-process
// receivers (a grpc++ TraceService server; a libmicrohttpd HTTP server) on 127.0.0.1.
#include <curl/curl.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <microhttpd.h>

#include <deque>
#include <mutex>

#include "exporter/gzip.h"
#include "exporter/otlp_config.h"
#include "exporter/otlp_grpc_transport.h"
#include "exporter/otlp_http_transport.h"
#include "exporter/otlp_messages.h"
#include "exporter/otlp_protobuf.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"
#include "threadline/rpc/status.pb.h"

namespace threadline {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using SteadyClock = std::chrono::steady_clock;

std::string StatusWithRetryInfo(int64_t seconds, int32_t nanos, int code = 8) {
  rpc::Status status;
  status.set_code(code);
  status.set_message("slow down");
  rpc::RetryInfo info;
  info.mutable_retry_delay()->set_seconds(seconds);
  info.mutable_retry_delay()->set_nanos(nanos);
  rpc::Any* any = status.add_details();
  any->set_type_url("type.googleapis.com/google.rpc.RetryInfo");
  any->set_value(info.SerializeAsString());
  return status.SerializeAsString();
}

// A serialized ExportTraceServiceRequest, as the exporter hands it to a transport.
std::string RequestWithSpans(int n) {
  std::vector<Span> spans(n);
  for (int i = 0; i < n; ++i) {
    spans[i].trace_id = TraceId::Random();
    spans[i].span_id = SpanId::Random();
    spans[i].name = "span-" + std::to_string(i);
  }
  ByteBuffer wire;
  AppendOtlpProtobuf(spans, wire);
  return std::string(wire.view());
}

// ---- classification ------------------------------------------------------------------------

TEST(RetryAfter, SecondsOrHttpDate) {
  const std::time_t now = 1445412480;  // Wed, 21 Oct 2015 07:28:00 GMT
  EXPECT_EQ(ParseRetryAfter("120", now), 120000ms);
  EXPECT_EQ(ParseRetryAfter(" 0 ", now), 0ms);
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:28:30 GMT", now), 30000ms);
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:00:00 GMT", now), 0ms);  // in the past
  EXPECT_EQ(ParseRetryAfter("soon", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("-5", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("", now), std::nullopt);
}

TEST(HttpClassification, FollowsTheSpecification) {
  ExportResult ok = ClassifyHttpResponse(200, "", "", 0);
  EXPECT_TRUE(ok.ok);
  EXPECT_EQ(ok.rejected_spans, 0);

  otlp_pb::collector::ExportTraceServiceResponse partial;
  partial.mutable_partial_success()->set_rejected_spans(3);
  partial.mutable_partial_success()->set_error_message("too big");
  ExportResult p = ClassifyHttpResponse(200, partial.SerializeAsString(), "", 0);
  EXPECT_TRUE(p.ok);
  EXPECT_EQ(p.rejected_spans, 3);
  EXPECT_EQ(p.message, "too big");

  for (long code : {429L, 502L, 503L, 504L}) {
    ExportResult r = ClassifyHttpResponse(code, "", "7", 0);
    EXPECT_FALSE(r.ok) << code;
    EXPECT_TRUE(r.retryable) << code;
    EXPECT_EQ(r.retry_after, 7000ms) << code;
  }
  EXPECT_EQ(ClassifyHttpResponse(503, "", "", 0).retry_after, std::nullopt);

  rpc::Status bad;
  bad.set_code(3);
  bad.set_message("span without trace id");
  ExportResult r400 = ClassifyHttpResponse(400, bad.SerializeAsString(), "", 0);
  EXPECT_FALSE(r400.ok);
  EXPECT_FALSE(r400.retryable);
  EXPECT_EQ(r400.message, "HTTP 400: span without trace id");
  for (long code : {401L, 404L, 413L, 500L}) EXPECT_FALSE(ClassifyHttpResponse(code, "", "", 0).retryable) << code;
}

TEST(GrpcClassification, FollowsTheSpecification) {
  for (grpc::StatusCode c : {grpc::StatusCode::CANCELLED, grpc::StatusCode::DEADLINE_EXCEEDED,
                             grpc::StatusCode::ABORTED, grpc::StatusCode::OUT_OF_RANGE,
                             grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::DATA_LOSS}) {
    ExportResult r = ClassifyGrpcStatus(grpc::Status(c, "x"));
    EXPECT_TRUE(r.retryable) << GrpcStatusCodeName(c);
    EXPECT_EQ(r.retry_after, std::nullopt);
  }
  for (grpc::StatusCode c : {grpc::StatusCode::INVALID_ARGUMENT, grpc::StatusCode::UNAUTHENTICATED,
                             grpc::StatusCode::PERMISSION_DENIED, grpc::StatusCode::UNIMPLEMENTED,
                             grpc::StatusCode::INTERNAL, grpc::StatusCode::RESOURCE_EXHAUSTED}) {
    EXPECT_FALSE(ClassifyGrpcStatus(grpc::Status(c, "x")).retryable) << GrpcStatusCodeName(c);
  }
  // RESOURCE_EXHAUSTED with RetryInfo: retryable after the server's delay.
  ExportResult r = ClassifyGrpcStatus(
      grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "slow down", StatusWithRetryInfo(2, 500000000)));
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.retry_after, 2500ms);
  EXPECT_EQ(r.message, "gRPC RESOURCE_EXHAUSTED: slow down");
  EXPECT_EQ(RetryDelayFromStatusDetails("garbage\xff"), std::nullopt);
  EXPECT_EQ(RetryDelayFromStatusDetails(""), std::nullopt);
}

TEST(Gzip, RoundTrip) {
  std::string data;
  for (int i = 0; i < 10000; ++i) data += "span-" + std::to_string(i % 97);
  Result<std::string> z = GzipCompress(data);
  ASSERT_TRUE(z.ok());
  EXPECT_LT(z->size(), data.size() / 4);
  EXPECT_EQ(static_cast<uint8_t>((*z)[0]), 0x1f);  // gzip magic
  EXPECT_EQ(static_cast<uint8_t>((*z)[1]), 0x8b);
  EXPECT_EQ(GzipDecompress(*z).value(), data);
  EXPECT_EQ(GzipDecompress(GzipCompress("").value()).value(), "");
  EXPECT_FALSE(GzipDecompress("not gzip").ok());
}

TEST(Gzip, CompressorIsReusedAcrossRequests) {
  GzipCompressor compressor;
  const std::string big(100000, 'a');
  for (const std::string& data : {big, std::string("small"), std::string(), big + "b"}) {
    Result<std::string_view> z = compressor.Compress(data);
    ASSERT_TRUE(z.ok());
    EXPECT_EQ(GzipDecompress(*z).value(), data);
  }
}

// ---- gRPC against an in-process grpc++ server ----------------------------------------------

class ScriptedTraceService final : public otlp_pb::collector::TraceService::Service {
 public:
  grpc::Status Export(grpc::ServerContext* ctx, const otlp_pb::collector::ExportTraceServiceRequest* req,
                      otlp_pb::collector::ExportTraceServiceResponse* resp) override {
    std::lock_guard l(mu);
    int spans = 0;
    for (const auto& rs : req->resource_spans())
      for (const auto& ss : rs.scope_spans()) spans += ss.spans_size();
    received_spans.push_back(spans);
    auto it = ctx->client_metadata().find("x-api-key");
    api_key = it == ctx->client_metadata().end() ? "" : std::string(it->second.data(), it->second.size());
    if (script.empty()) return grpc::Status::OK;
    grpc::Status s = script.front().first;
    if (script.front().second > 0) resp->mutable_partial_success()->set_rejected_spans(script.front().second);
    script.pop_front();
    return s;
  }
  std::mutex mu;
  std::deque<std::pair<grpc::Status, int64_t>> script;
  std::vector<int> received_spans;
  std::string api_key;
};

TEST(OtlpGrpcTransport, ExportsAndClassifiesAgainstARealServer) {
  ScriptedTraceService service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  OtlpExporterConfig config;
  config.protocol = OtlpProtocol::kGrpc;
  config.endpoint = "http://127.0.0.1:" + std::to_string(port);
  config.headers = {{"X-Api-Key", "k1"}};
  config.compression = OtlpCompression::kGzip;
  auto transport = OtlpGrpcTransport::Create(config);
  ASSERT_TRUE(transport.ok()) << transport.error().message;
  EXPECT_EQ((*transport)->Describe(), "OTLP/gRPC to 127.0.0.1:" + std::to_string(port) + " (plaintext, gzip)");

  service.script = {{grpc::Status(grpc::StatusCode::UNAVAILABLE, "warming up"), 0},
                    {grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "slow down", StatusWithRetryInfo(1, 0)), 0},
                    {grpc::Status::OK, 2}};
  const auto request = RequestWithSpans(5);
  ExportResult a = (*transport)->Send(request, SteadyClock::now() + 5s);
  EXPECT_FALSE(a.ok);
  EXPECT_TRUE(a.retryable);
  EXPECT_EQ(a.message, "gRPC UNAVAILABLE: warming up");
  ExportResult b = (*transport)->Send(request, SteadyClock::now() + 5s);
  EXPECT_TRUE(b.retryable);
  EXPECT_EQ(b.retry_after, 1000ms);
  ExportResult c = (*transport)->Send(request, SteadyClock::now() + 5s);
  EXPECT_TRUE(c.ok);
  EXPECT_EQ(c.rejected_spans, 2);
  {
    std::lock_guard l(service.mu);
    EXPECT_EQ(service.received_spans, (std::vector<int>{5, 5, 5}));
    EXPECT_EQ(service.api_key, "k1");  // header names go lower-case as gRPC metadata
  }
  server->Shutdown(std::chrono::system_clock::now() + 1s);
  server.reset();

  // Nobody listening: UNAVAILABLE, retryable, and at once (no waiting for the channel, which
  // would last until the deadline). The deadline is far, so the check holds on a machine slowed
  // by the fuzzers running beside the unit tests; a connection refused takes milliseconds.
  const auto start = SteadyClock::now();
  ExportResult down = (*transport)->Send(request, SteadyClock::now() + 60s);
  EXPECT_FALSE(down.ok);
  EXPECT_TRUE(down.retryable) << down.message;
  EXPECT_LT(SteadyClock::now() - start, 20s);
}

TEST(OtlpGrpcTransport, MissingCaFileIsAnError) {
  OtlpExporterConfig config;
  config.protocol = OtlpProtocol::kGrpc;
  config.endpoint = "https://127.0.0.1:1";
  config.certificate_file = "/nonexistent/ca.pem";
  auto t = OtlpGrpcTransport::Create(config);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().message, "cannot read CA certificate file /nonexistent/ca.pem");
}

// ---- HTTP against an in-process libmicrohttpd server ---------------------------------------

struct FakeHttpReceiver {
  struct Answer {
    unsigned status;
    std::string body;
    std::string retry_after;
  };
  std::mutex mu;
  std::deque<Answer> script;
  std::vector<std::string> bodies;  // as received (maybe gzip)
  std::vector<std::map<std::string, std::string>> headers;
  MHD_Daemon* daemon = nullptr;
  uint16_t port = 0;

  static MHD_Result CollectHeader(void* cls, MHD_ValueKind, const char* key, const char* value) {
    (*static_cast<std::map<std::string, std::string>*>(cls))[key] = value ? value : "";
    return MHD_YES;
  }

  static MHD_Result Handle(void* cls, MHD_Connection* conn, const char* /*url*/, const char* /*method*/,
                           const char* /*version*/, const char* upload, size_t* upload_size, void** req) {
    auto* self = static_cast<FakeHttpReceiver*>(cls);
    if (*req == nullptr) {  // first call for this request: headers only
      *req = new std::string();  // NOLINT: libmicrohttpd's per-request slot; freed below
      return MHD_YES;
    }
    auto* body = static_cast<std::string*>(*req);
    if (*upload_size > 0) {
      body->append(upload, *upload_size);
      *upload_size = 0;
      return MHD_YES;
    }
    std::unique_ptr<std::string> owned(body);  // request complete
    *req = nullptr;
    Answer a{200, "", ""};
    {
      std::lock_guard l(self->mu);
      self->bodies.push_back(*owned);
      self->headers.emplace_back();
      MHD_get_connection_values(conn, MHD_HEADER_KIND, &CollectHeader, &self->headers.back());
      if (!self->script.empty()) {
        a = self->script.front();
        self->script.pop_front();
      }
    }
    MHD_Response* r = MHD_create_response_from_buffer(a.body.size(), a.body.data(), MHD_RESPMEM_MUST_COPY);
    if (!a.retry_after.empty()) MHD_add_response_header(r, "Retry-After", a.retry_after.c_str());
    MHD_Result q = MHD_queue_response(conn, a.status, r);
    MHD_destroy_response(r);
    return q;
  }

  FakeHttpReceiver() {
    daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, nullptr, nullptr, &Handle, this,
                              MHD_OPTION_END);
    if (daemon != nullptr) port = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT)->port;
  }
  ~FakeHttpReceiver() {
    if (daemon != nullptr) MHD_stop_daemon(daemon);
  }
};

TEST(OtlpHttpTransport, PostsProtobufAndClassifiesAgainstARealServer) {
  FakeHttpReceiver receiver;
  ASSERT_NE(receiver.port, 0);
  otlp_pb::collector::ExportTraceServiceResponse partial;
  partial.mutable_partial_success()->set_rejected_spans(1);
  partial.mutable_partial_success()->set_error_message("one bad span");
  receiver.script = {{503, "", "2"}, {429, "", ""}, {200, partial.SerializeAsString(), ""}, {400, "", ""}};

  for (bool gzip : {false, true}) {
    OtlpExporterConfig config;
    config.endpoint = "http://127.0.0.1:" + std::to_string(receiver.port) + "/v1/traces";
    config.headers = {{"Authorization", "Bearer t0k"}};
    config.compression = gzip ? OtlpCompression::kGzip : OtlpCompression::kNone;
    auto transport = OtlpHttpTransport::Create(config);
    ASSERT_TRUE(transport.ok()) << transport.error().message;
    const auto request = RequestWithSpans(4);
    if (!gzip) {
      ExportResult r503 = (*transport)->Send(request, SteadyClock::now() + 5s);
      EXPECT_TRUE(r503.retryable);
      EXPECT_EQ(r503.retry_after, 2000ms);
      EXPECT_EQ(r503.message, "HTTP 503");
      ExportResult r429 = (*transport)->Send(request, SteadyClock::now() + 5s);
      EXPECT_TRUE(r429.retryable);
      EXPECT_EQ(r429.retry_after, std::nullopt);
      ExportResult r200 = (*transport)->Send(request, SteadyClock::now() + 5s);
      EXPECT_TRUE(r200.ok);
      EXPECT_EQ(r200.rejected_spans, 1);
      EXPECT_EQ(r200.message, "one bad span");
      ExportResult r400 = (*transport)->Send(request, SteadyClock::now() + 5s);
      EXPECT_FALSE(r400.ok);
      EXPECT_FALSE(r400.retryable);
    } else {
      EXPECT_TRUE((*transport)->Send(request, SteadyClock::now() + 5s).ok);
    }
    std::lock_guard l(receiver.mu);
    const std::map<std::string, std::string>& h = receiver.headers.back();
    EXPECT_EQ(h.at("Content-Type"), "application/x-protobuf");
    EXPECT_EQ(h.at("Authorization"), "Bearer t0k");
    EXPECT_THAT(h.at("User-Agent"), HasSubstr("threadline/"));
    std::string body = receiver.bodies.back();
    if (gzip) {
      EXPECT_EQ(h.at("Content-Encoding"), "gzip");
      body = GzipDecompress(body).value();
    } else {
      EXPECT_EQ(h.count("Content-Encoding"), 0u);
    }
    otlp_pb::collector::ExportTraceServiceRequest got;
    ASSERT_TRUE(got.ParseFromString(body));
    EXPECT_EQ(body, request);
    EXPECT_EQ(got.resource_spans(0).scope_spans(0).spans_size(), 4);
  }
}

TEST(OtlpHttpTransport, NoReceiverIsRetryableAndCancelStopsSends) {
  OtlpExporterConfig config;
  config.endpoint = "http://127.0.0.1:1/v1/traces";  // nothing listens on port 1
  auto transport = OtlpHttpTransport::Create(config);
  ASSERT_TRUE(transport.ok());
  ExportResult r = (*transport)->Send(RequestWithSpans(1), SteadyClock::now() + 2s);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.retryable);
  EXPECT_THAT(r.message, HasSubstr("onnect"));
  (*transport)->Cancel();
  EXPECT_EQ((*transport)->Send(RequestWithSpans(1), SteadyClock::now() + 2s).message, "export cancelled (shutdown)");

  config.certificate_file = "/nonexistent/ca.pem";
  EXPECT_FALSE(OtlpHttpTransport::Create(config).ok());
}

}  // namespace
}  // namespace threadline
