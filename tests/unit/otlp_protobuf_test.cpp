// Span model -> OTLP protobuf bytes (our direct wire encoder), decoded with the generated
// protobuf classes: every field, resource grouping, parent-less spans, the remote parent flag
// bits; and the bytes are canonical (decoding and re-serializing gives exactly our bytes), for
// shapes whose lengths cross the varint boundaries the encoder guesses at.
#include "exporter/otlp_protobuf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "exporter/otlp_messages.h"

namespace threadline {
namespace {

namespace pb = otlp_pb;

template <size_t N>
std::array<uint8_t, N> FromHex(std::string_view hex) {
  std::array<uint8_t, N> b{};
  for (size_t i = 0; i < N; ++i) b[i] = static_cast<uint8_t>(std::stoi(std::string(hex.substr(2 * i, 2)), nullptr, 16));
  return b;
}
TraceId Tid(std::string_view hex) { return TraceId{FromHex<16>(hex)}; }
SpanId Sid(std::string_view hex) { return SpanId{FromHex<8>(hex)}; }
std::string Bytes(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  return out;
}

std::shared_ptr<const Resource> MakeResource(std::string service) {
  return std::make_shared<const Resource>(Resource{
      .attributes = {{"service.name", std::move(service)}, {"process.pid", int64_t{4242}}}});
}

Span FullSpan() {
  Span s;
  s.trace_id = Tid("4bf92f3577b34da6a3ce929d0e0e4736");
  s.span_id = Sid("00f067aa0ba902b7");
  s.parent_span_id = Sid("53995c3f42cd8ad8");
  s.trace_state = "congo=t61rcWkgMzE";
  s.flags = kTraceFlagSampled;
  s.parent_is_remote = true;
  s.name = "GET /users";
  s.kind = SpanKind::kServer;
  s.start_unix_ns = 1700000000000000000ULL;
  s.end_unix_ns = 1700000000012345678ULL;
  s.attributes = {{"http.request.method", std::string("GET")},
                  {"http.response.status_code", int64_t{200}},
                  {"sampling.ratio", 0.25},
                  {"tl.retry", true}};
  s.events = {SpanEvent{.name = "exception",
                        .time_unix_ns = 1700000000010000000ULL,
                        .attributes = {{"exception.message", std::string("boom")}}}};
  s.links = {SpanLink{.trace_id = Tid("0af7651916cd43dd8448eb211c80319c"),
                      .span_id = Sid("b7ad6b7169203331"),
                      .trace_state = "rojo=00f067aa0ba902b7",
                      .flags = 0x101,
                      .attributes = {{"link.kind", std::string("follows")}}}};
  s.status = StatusCode::kError;
  s.status_message = "boom";
  s.resource = MakeResource("checkout");
  s.pid = 4242;
  return s;
}

// Our bytes for `spans`, decoded; fails the test unless the generated classes write exactly the
// same bytes back (so the field order, varints and omitted defaults are protobuf's own), and
// unless the exporter's two steps (AppendOtlpSpan, AppendOtlpRequest) write the same bytes.
pb::collector::ExportTraceServiceRequest Decode(const std::vector<Span>& spans) {
  ByteBuffer buffer;
  AppendOtlpProtobuf(spans, buffer);
  const std::string wire(buffer.view());
  // Appends to what the buffer holds.
  AppendOtlpProtobuf(spans, buffer);
  EXPECT_EQ(buffer.view(), wire + wire);
  // The batch exporter's way: each span encoded on its own, behind whatever the buffer already
  // holds, then the request written around those bytes. The same request.
  ByteBuffer encoded;
  const std::vector<Span> before = {FullSpan()};
  AppendOtlpProtobuf(before, encoded);
  std::vector<EncodedSpan> refs;
  for (const Span& s : spans) {
    const size_t offset = encoded.size();
    const size_t size = AppendOtlpSpan(s, encoded);
    EXPECT_EQ(encoded.size(), offset + size);
    refs.push_back(EncodedSpan{.resource = s.resource, .offset = static_cast<uint32_t>(offset),
                               .size = static_cast<uint32_t>(size)});
  }
  ByteBuffer two_step;
  AppendOtlpRequest(encoded.view(), refs, two_step);
  EXPECT_EQ(two_step.view(), wire) << "AppendOtlpSpan + AppendOtlpRequest differ from AppendOtlpProtobuf";
  pb::collector::ExportTraceServiceRequest req;
  EXPECT_TRUE(req.ParseFromString(wire));
  EXPECT_EQ(req.SerializeAsString(), wire) << "not what protobuf itself writes";
  return req;
}

Span SimpleSpan(std::shared_ptr<const Resource> r, uint8_t id) {
  Span s;
  s.trace_id = Tid("4bf92f3577b34da6a3ce929d0e0e4736");
  s.span_id.bytes[7] = id;
  s.name = "span" + std::to_string(id);
  s.resource = std::move(r);
  return s;
}

TEST(OtlpProtobufTest, EveryField) {
  const std::vector<Span> spans = {FullSpan()};
  const pb::collector::ExportTraceServiceRequest req = Decode(spans);

  ASSERT_EQ(req.resource_spans_size(), 1);
  const pb::trace::ResourceSpans& rs = req.resource_spans(0);
  EXPECT_EQ(rs.schema_url(), "");
  ASSERT_EQ(rs.resource().attributes_size(), 2);
  EXPECT_EQ(rs.resource().attributes(0).key(), "service.name");
  EXPECT_EQ(rs.resource().attributes(0).value().string_value(), "checkout");
  EXPECT_EQ(rs.resource().attributes(1).key(), "process.pid");
  EXPECT_EQ(rs.resource().attributes(1).value().int_value(), 4242);
  ASSERT_EQ(rs.scope_spans_size(), 1);
  EXPECT_EQ(rs.scope_spans(0).scope().name(), "threadline");
  EXPECT_EQ(rs.scope_spans(0).scope().version(), kScopeVersion);
  ASSERT_EQ(rs.scope_spans(0).spans_size(), 1);

  const pb::trace::Span& s = rs.scope_spans(0).spans(0);
  EXPECT_EQ(s.trace_id(), Bytes("4bf92f3577b34da6a3ce929d0e0e4736"));
  EXPECT_EQ(s.span_id(), Bytes("00f067aa0ba902b7"));
  EXPECT_EQ(s.parent_span_id(), Bytes("53995c3f42cd8ad8"));
  EXPECT_EQ(s.trace_state(), "congo=t61rcWkgMzE");
  // sampled | HAS_IS_REMOTE | IS_REMOTE
  EXPECT_EQ(s.flags(), 0x301u);
  EXPECT_EQ(s.name(), "GET /users");
  EXPECT_EQ(s.kind(), pb::trace::Span::SPAN_KIND_SERVER);
  EXPECT_EQ(s.start_time_unix_nano(), 1700000000000000000ULL);
  EXPECT_EQ(s.end_time_unix_nano(), 1700000000012345678ULL);

  ASSERT_EQ(s.attributes_size(), 4);
  EXPECT_EQ(s.attributes(0).key(), "http.request.method");
  EXPECT_EQ(s.attributes(0).value().value_case(), pb::common::AnyValue::kStringValue);
  EXPECT_EQ(s.attributes(0).value().string_value(), "GET");
  EXPECT_EQ(s.attributes(1).value().value_case(), pb::common::AnyValue::kIntValue);
  EXPECT_EQ(s.attributes(1).value().int_value(), 200);
  EXPECT_EQ(s.attributes(2).value().value_case(), pb::common::AnyValue::kDoubleValue);
  EXPECT_EQ(s.attributes(2).value().double_value(), 0.25);
  EXPECT_EQ(s.attributes(3).value().value_case(), pb::common::AnyValue::kBoolValue);
  EXPECT_TRUE(s.attributes(3).value().bool_value());
  EXPECT_EQ(s.dropped_attributes_count(), 0u);

  ASSERT_EQ(s.events_size(), 1);
  EXPECT_EQ(s.events(0).name(), "exception");
  EXPECT_EQ(s.events(0).time_unix_nano(), 1700000000010000000ULL);
  ASSERT_EQ(s.events(0).attributes_size(), 1);
  EXPECT_EQ(s.events(0).attributes(0).key(), "exception.message");
  EXPECT_EQ(s.events(0).attributes(0).value().string_value(), "boom");

  ASSERT_EQ(s.links_size(), 1);
  EXPECT_EQ(s.links(0).trace_id(), Bytes("0af7651916cd43dd8448eb211c80319c"));
  EXPECT_EQ(s.links(0).span_id(), Bytes("b7ad6b7169203331"));
  EXPECT_EQ(s.links(0).trace_state(), "rojo=00f067aa0ba902b7");
  EXPECT_EQ(s.links(0).flags(), 0x101u);
  ASSERT_EQ(s.links(0).attributes_size(), 1);
  EXPECT_EQ(s.links(0).attributes(0).value().string_value(), "follows");

  ASSERT_TRUE(s.has_status());
  EXPECT_EQ(s.status().code(), pb::trace::Status::STATUS_CODE_ERROR);
  EXPECT_EQ(s.status().message(), "boom");
}

TEST(OtlpProtobufTest, RootSpanHasEmptyParentAndLocalFlags) {
  Span s = FullSpan();
  s.parent_span_id = SpanId{};
  s.parent_is_remote = false;
  Span unsampled = s;
  unsampled.flags = 0;
  const std::vector<Span> spans = {s, unsampled};
  const auto req = Decode(spans);
  const auto& out = req.resource_spans(0).scope_spans(0).spans();
  ASSERT_EQ(out.size(), 2);
  EXPECT_TRUE(out[0].parent_span_id().empty());
  EXPECT_EQ(out[0].flags(), 0x101u);  // sampled | HAS_IS_REMOTE, not remote
  EXPECT_EQ(out[1].flags(), 0x100u);
}

TEST(OtlpProtobufTest, FlagsKeepOnlyTheW3cByteOfSpanFlags) {
  Span s = FullSpan();
  s.flags = 0xffff03;  // bits above the W3C byte are not ours to send
  s.parent_is_remote = false;
  EXPECT_EQ(OtlpSpanFlags(s), 0x103u);
}

TEST(OtlpProtobufTest, UnsetStatusIsLeftOut) {
  Span s = FullSpan();
  s.status = StatusCode::kUnset;
  s.status_message.clear();
  Span ok = FullSpan();
  ok.status = StatusCode::kOk;
  ok.status_message.clear();
  const std::vector<Span> spans = {s, ok};
  const auto req = Decode(spans);
  EXPECT_FALSE(req.resource_spans(0).scope_spans(0).spans(0).has_status());
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans(1).status().code(), pb::trace::Status::STATUS_CODE_OK);
}

TEST(OtlpProtobufTest, InvalidIdsAreEmptyBytes) {
  Span s;
  s.name = "no ids";
  s.resource = MakeResource("x");
  const std::vector<Span> spans = {s};
  const auto req = Decode(spans);  // kept: `out` refers into it
  const auto& out = req.resource_spans(0).scope_spans(0).spans(0);
  EXPECT_TRUE(out.trace_id().empty());
  EXPECT_TRUE(out.span_id().empty());
  EXPECT_TRUE(out.parent_span_id().empty());
  EXPECT_EQ(out.kind(), pb::trace::Span::SPAN_KIND_UNSPECIFIED);
}

TEST(OtlpProtobufTest, GroupsByResourcePointerThenEqualAttributes) {
  auto a = MakeResource("a");
  auto a_again = MakeResource("a");  // another object, same attributes
  auto b = MakeResource("b");
  const std::vector<Span> spans = {SimpleSpan(a, 1), SimpleSpan(b, 2), SimpleSpan(a_again, 3),
                                   SimpleSpan(a, 4), SimpleSpan(b, 5)};
  const auto req = Decode(spans);
  ASSERT_EQ(req.resource_spans_size(), 2);
  const auto names = [&](int i) {
    std::vector<std::string> n;
    for (const auto& s : req.resource_spans(i).scope_spans(0).spans()) n.push_back(s.name());
    return n;
  };
  EXPECT_EQ(req.resource_spans(0).resource().attributes(0).value().string_value(), "a");
  EXPECT_EQ(names(0), (std::vector<std::string>{"span1", "span3", "span4"}));
  EXPECT_EQ(req.resource_spans(1).resource().attributes(0).value().string_value(), "b");
  EXPECT_EQ(names(1), (std::vector<std::string>{"span2", "span5"}));
  for (const auto& rs : req.resource_spans()) {
    ASSERT_EQ(rs.scope_spans_size(), 1);
    EXPECT_EQ(rs.scope_spans(0).scope().name(), "threadline");
  }
}

TEST(OtlpProtobufTest, SpansWithoutResourceGetAnEmptyResource) {
  const std::vector<Span> spans = {SimpleSpan(nullptr, 1), SimpleSpan(MakeResource("a"), 2),
                                   SimpleSpan(nullptr, 3)};
  const auto req = Decode(spans);
  ASSERT_EQ(req.resource_spans_size(), 2);
  EXPECT_TRUE(req.resource_spans(0).has_resource());
  EXPECT_EQ(req.resource_spans(0).resource().attributes_size(), 0);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans_size(), 2);
}

TEST(OtlpProtobufTest, EmptyInputGivesEmptyRequest) {
  ByteBuffer wire;
  AppendOtlpProtobuf({}, wire);
  EXPECT_TRUE(wire.empty());
  EXPECT_EQ(Decode({}).resource_spans_size(), 0);
}

TEST(OtlpProtobufTest, ValuesProtobufWritesSpecially) {
  Span s = SimpleSpan(MakeResource("v"), 1);
  s.attributes = {{"empty", std::string()},      // a oneof member is written even when empty
                  {"zero", int64_t{0}},
                  {"negative", int64_t{-1}},     // ten-byte varint
                  {"min", INT64_MIN},
                  {"false", false},
                  {"nan", std::numeric_limits<double>::quiet_NaN()},
                  {"", std::string("no key")}};  // an empty key is omitted, the value kept
  const auto req = Decode({s});
  const auto& a = req.resource_spans(0).scope_spans(0).spans(0).attributes();
  ASSERT_EQ(a.size(), 7);
  EXPECT_EQ(a[0].value().value_case(), pb::common::AnyValue::kStringValue);
  EXPECT_EQ(a[1].value().value_case(), pb::common::AnyValue::kIntValue);
  EXPECT_EQ(a[2].value().int_value(), -1);
  EXPECT_EQ(a[3].value().int_value(), INT64_MIN);
  EXPECT_EQ(a[4].value().value_case(), pb::common::AnyValue::kBoolValue);
  EXPECT_FALSE(a[4].value().bool_value());
  EXPECT_TRUE(std::isnan(a[5].value().double_value()));
  EXPECT_EQ(a[6].key(), "");
  EXPECT_EQ(a[6].value().string_value(), "no key");
}

TEST(OtlpProtobufTest, InvalidUtf8BecomesReplacementCharacters) {
  Span s = SimpleSpan(MakeResource("u"), 1);
  s.name = "GET /caf\xc3\xa9/\xff\xfe";  // valid two-byte sequence, then two stray bytes
  s.attributes = {{"url.path", std::string("/a\x80" "b")}, {"k\xc3", std::string("v")}};
  const auto req = Decode({s});
  const auto& out = req.resource_spans(0).scope_spans(0).spans(0);
  EXPECT_EQ(out.name(), "GET /caf\xc3\xa9/\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(out.attributes(0).value().string_value(), "/a\xef\xbf\xbd" "b");
  EXPECT_EQ(out.attributes(1).key(), "k\xef\xbf\xbd");
}

// Nested lengths are reserved before the contents are known: sizes around 127/128 and
// 16383/16384 bytes, and a full batch (hundreds of KiB), must still give protobuf's bytes.
TEST(OtlpProtobufTest, CanonicalAcrossLengthBoundaries) {
  for (size_t len : {0, 1, 60, 100, 110, 126, 127, 128, 129, 200, 16300, 16383, 16384, 16500, 70000}) {
    Span s = FullSpan();
    s.name = std::string(len, 'n');
    s.events[0].name = std::string(len, 'e');
    s.links[0].trace_state = std::string(len, 'l');
    s.status_message = std::string(len, 'm');
    s.resource = std::make_shared<const Resource>(Resource{.attributes = {{"r", std::string(len, 'r')}}});
    SCOPED_TRACE(len);
    const auto req = Decode({s});
    EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans(0).name().size(), len);
  }
  std::mt19937 rng(7);
  std::vector<Span> batch;
  auto a = MakeResource("a");
  auto b = MakeResource("b");
  for (int i = 0; i < 512; ++i) {
    Span s = FullSpan();
    s.resource = i % 3 ? a : b;
    s.name = std::string(rng() % 300, 'x');
    if (i % 5 == 0) s.events.clear();
    if (i % 7 == 0) s.links.clear();
    batch.push_back(std::move(s));
  }
  const auto req = Decode(batch);
  ASSERT_EQ(req.resource_spans_size(), 2);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans_size() + req.resource_spans(1).scope_spans(0).spans_size(), 512);
}

}  // namespace
}  // namespace threadline
