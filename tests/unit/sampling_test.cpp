// Head sampling: the ratio rule (TraceIdRatioSampler: threshold from the ratio, decision from the
// trace id's 56 rightmost bits), parent-based decisions in SpanBuilder (roots by the rule,
// every span with a parent by its parent's flag: header, thread, kernel ids), and the agent's
// wiring after the builder: RED metrics count every span, SampledSpanFilter drops the unsampled
// ones and counts them. The kernel's side of the same rule: tests/kernel/sampling_test.cpp.
#include "agent/spans/sampler.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "agent/conn/connection_table.h"
#include "agent/discovery/resource.h"
#include "agent/pipeline/red_metrics.h"
#include "agent/pipeline/sampled_filter.h"
#include "agent/protocols/dispatcher.h"
#include "agent/spans/span_builder.h"
#include "agent/spans/trace_context.h"
#include "conn_test_util.h"
#include "http_pipeline_util.h"

namespace threadline {
namespace {

using http_test::Collect;
using http_test::SampledPipeline;
using http_test::SourceOf;

constexpr uint64_t k2To56 = uint64_t{1} << 56;

// A valid trace id whose 56 rightmost bits are `r` (its first bytes are 0x4b, so never zero).
TraceId WithRandomness(uint64_t r) {
  TraceId id;
  id.bytes.fill(0x4b);
  for (int i = 15; i >= 9; --i, r >>= 8) id.bytes[i] = static_cast<uint8_t>(r & 0xff);
  return id;
}

TEST(TraceIdRatioSamplerTest, ThresholdIsRoundOfOneMinusRatioTimes2To56) {
  EXPECT_EQ(TraceIdRatioSampler::ThresholdFor(1.0), 0u);
  EXPECT_EQ(TraceIdRatioSampler::ThresholdFor(0.0), k2To56);
  EXPECT_EQ(TraceIdRatioSampler::ThresholdFor(0.5), 0x80000000000000u);
  EXPECT_EQ(TraceIdRatioSampler::ThresholdFor(0.25), 0xc0000000000000u);
  EXPECT_EQ(TraceIdRatioSampler::ThresholdFor(0.1), 0xe6666666666666u);  // the spec's 10%
  // Small ratios keep their precision (no 1 - ratio cancellation).
  EXPECT_EQ(TraceIdRatioSampler::ThresholdFor(std::ldexp(1.0, -40)), k2To56 - (uint64_t{1} << 16));
  // Out of range (the configuration rejects these): clamped; NaN keeps everything.
  EXPECT_EQ(TraceIdRatioSampler::ThresholdFor(-0.5), k2To56);
  EXPECT_EQ(TraceIdRatioSampler::ThresholdFor(2.0), 0u);
  EXPECT_EQ(TraceIdRatioSampler::ThresholdFor(std::numeric_limits<double>::quiet_NaN()), 0u);
  EXPECT_TRUE(TraceIdRatioSampler(1.0).keeps_all());
  EXPECT_FALSE(TraceIdRatioSampler(0.999).keeps_all());
}

TEST(TraceIdRatioSamplerTest, RandomnessIsTheLast14HexDigits) {
  auto id = TraceIdFromHex("ffffffffffffffffff0102030405060f");
  ASSERT_TRUE(id);
  EXPECT_EQ(TraceIdRatioSampler::Randomness(*id), 0x0102030405060fu);
  id = TraceIdFromHex("000000000000000001ffffffffffffff");  // byte 8 is not part of it
  ASSERT_TRUE(id);
  EXPECT_EQ(TraceIdRatioSampler::Randomness(*id), k2To56 - 1);
  EXPECT_EQ(TraceIdRatioSampler::Randomness(WithRandomness(12345)), 12345u);
}

TEST(TraceIdRatioSamplerTest, KeepsExactlyWhenRandomnessReachesTheThreshold) {
  const TraceIdRatioSampler half(0.5);
  EXPECT_FALSE(half.Sampled(WithRandomness(0)));
  EXPECT_FALSE(half.Sampled(WithRandomness(0x7fffffffffffff)));
  EXPECT_TRUE(half.Sampled(WithRandomness(0x80000000000000)));
  EXPECT_TRUE(half.Sampled(WithRandomness(k2To56 - 1)));
  EXPECT_EQ(half.FlagsFor(WithRandomness(0x80000000000000)), kTraceFlagSampled);
  EXPECT_EQ(half.FlagsFor(WithRandomness(0x7fffffffffffff)), 0u);

  const TraceIdRatioSampler none(0.0), all(1.0);
  EXPECT_FALSE(none.Sampled(WithRandomness(k2To56 - 1)));  // the largest R: still below 2^56
  EXPECT_TRUE(all.Sampled(WithRandomness(0)));              // the smallest R: still >= 0
}

TEST(TraceIdRatioSamplerTest, KeptFractionOfRandomTraceIdsIsTheRatio) {
  constexpr int kIds = 20000;
  for (double ratio : {0.1, 0.5, 0.9}) {
    const TraceIdRatioSampler sampler(ratio);
    int kept = 0;
    for (int i = 0; i < kIds; ++i) kept += sampler.Sampled(TraceId::Random());
    EXPECT_NEAR(static_cast<double>(kept) / kIds, ratio, 0.02) << "ratio " << ratio;
  }
}

// ---- The spans stage and the pipeline after it -------------------------------------------

TEST(HttpSpanSamplingTest, RootsAreKeptOrDroppedByTheRuleOnTheirTraceId) {
  SampledPipeline p(0.5);
  const ConnId srv = p.Open(Role::kServer);
  constexpr size_t kRequests = 200;
  for (size_t i = 0; i < kRequests; ++i) {
    p.ServerRequest(srv, "/r/" + std::to_string(i));
    p.ServerResponse(srv);
  }
  ASSERT_EQ(p.tap.spans.size(), kRequests);  // every request became a span
  const TraceIdRatioSampler rule(0.5);
  size_t sampled = 0;
  for (const Span& s : p.tap.spans) {
    EXPECT_EQ(SourceOf(s), "root");
    EXPECT_EQ(s.flags, rule.FlagsFor(s.trace_id)) << s.trace_id.Hex();
    sampled += s.sampled();
  }
  EXPECT_GT(sampled, 50u);  // binomial(200, 0.5): 5 sigma is 35
  EXPECT_LT(sampled, 150u);
  ASSERT_EQ(p.out.spans.size(), sampled);
  for (const Span& s : p.out.spans) EXPECT_TRUE(rule.Sampled(s.trace_id)) << s.trace_id.Hex();
  EXPECT_EQ(p.NotSampled(), kRequests - sampled);
  EXPECT_EQ(p.RedCount("http_server_request_duration_seconds"), kRequests);
}

TEST(HttpSpanSamplingTest, RatioZeroKeepsNoRootRatioOneKeepsEvery) {
  for (double ratio : {0.0, 1.0}) {
    SampledPipeline p(ratio);
    const ConnId srv = p.Open(Role::kServer);
    const ConnId cli = p.Open(Role::kClient);
    for (int i = 0; i < 20; ++i) {
      p.ServerRequest(srv, "/s");
      p.ServerResponse(srv);  // answered before the call below: the call is a root too
      p.ClientRequest(cli, "/c");
      p.ClientResponse(cli);
    }
    ASSERT_EQ(p.tap.spans.size(), 40u);
    for (const Span& s : p.tap.spans) EXPECT_EQ(SourceOf(s), "root");
    EXPECT_EQ(p.out.spans.size(), ratio == 1.0 ? 40u : 0u) << "ratio " << ratio;
    EXPECT_EQ(p.NotSampled(), ratio == 1.0 ? 0u : 40u);
    EXPECT_EQ(p.RedCount("http_server_request_duration_seconds"), 20u);
    EXPECT_EQ(p.RedCount("http_client_request_duration_seconds"), 20u);
    EXPECT_EQ(p.metrics.CounterTotal("threadline_spans_created_total"), 40u);
  }
}

// Trace ids whose roots the rule at 0.5 would drop (R = 1) and keep (R = 2^56 - 1).
const std::string kRuleDrops = "4bf92f3577b34da6a300000000000001";
const std::string kRuleKeeps = "4bf92f3577b34da6a3ffffffffffffff";

TEST(HttpSpanSamplingTest, AHeaderParentDecidesNotTheRule) {
  SampledPipeline p(0.5);
  ASSERT_FALSE(TraceIdRatioSampler(0.5).Sampled(*TraceIdFromHex(kRuleDrops)));
  ASSERT_TRUE(TraceIdRatioSampler(0.5).Sampled(*TraceIdFromHex(kRuleKeeps)));
  const ConnId srv = p.Open(Role::kServer);
  p.ServerRequest(srv, "/kept", "traceparent: 00-" + kRuleDrops + "-00f067aa0ba902b7-01\r\n");
  p.ServerResponse(srv);
  p.ServerRequest(srv, "/dropped", "traceparent: 00-" + kRuleKeeps + "-00f067aa0ba902b7-00\r\n");
  p.ServerResponse(srv);
  ASSERT_EQ(p.tap.spans.size(), 2u);
  for (const Span& s : p.tap.spans) EXPECT_EQ(SourceOf(s), "header");
  ASSERT_EQ(p.out.spans.size(), 1u);
  EXPECT_EQ(p.out.spans[0].trace_id.Hex(), kRuleDrops);
  EXPECT_EQ(p.NotSampled(), 1u);
  EXPECT_EQ(p.RedCount("http_server_request_duration_seconds"), 2u);  // the dropped one too
}

TEST(HttpSpanSamplingTest, ACallMadeWhileServingFollowsTheServerSpan) {
  // Ratio 1 keeps every root, yet the call made for an unsampled request is dropped; ratio 0
  // keeps no root, yet the call made for a sampled request is kept.
  for (auto [ratio, flags] : {std::pair{1.0, std::string("00")}, std::pair{0.0, std::string("01")}}) {
    SampledPipeline p(ratio);
    const ConnId srv = p.Open(Role::kServer);
    const ConnId cli = p.Open(Role::kClient);
    p.ServerRequest(srv, "/front", "traceparent: 00-" + kRuleKeeps + "-00f067aa0ba902b7-" + flags + "\r\n",
                    TL_CTX_TAG(TL_CTAG_SERVER, 1));
    // The kernel: the same thread, request 1 not answered yet.
    p.ClientRequest(cli, "/back", "", TL_CTX_TAG(TL_CTAG_THREAD, 1));
    p.ClientResponse(cli);
    p.ServerResponse(srv);
    ASSERT_EQ(p.tap.spans.size(), 2u);
    const Span& call = p.tap.spans[0];
    ASSERT_EQ(call.kind, SpanKind::kClient);
    EXPECT_EQ(SourceOf(call), "thread");
    EXPECT_EQ(call.trace_id.Hex(), kRuleKeeps);
    const bool sampled = flags == "01";
    EXPECT_EQ(call.sampled(), sampled);
    EXPECT_EQ(p.out.spans.size(), sampled ? 2u : 0u) << "ratio " << ratio;
    EXPECT_EQ(p.NotSampled(), sampled ? 0u : 2u);
    EXPECT_EQ(p.RedCount("http_server_request_duration_seconds"), 1u);
    EXPECT_EQ(p.RedCount("http_client_request_duration_seconds"), 1u);
  }
}

TEST(HttpSpanSamplingTest, KernelChosenIdsKeepTheKernelsDecision) {
  // The kernel decided these roots by the same rule (tests/kernel/sampling_test.cpp); userspace
  // takes its flag as it takes its ids, whatever its own ratio says.
  SampledPipeline p(1.0);
  const ConnId srv = p.Open(Role::kServer);
  const ConnId cli = p.Open(Role::kClient);
  p.KernelIds(srv, TL_CTX_SERVER, kRuleDrops, 0x00, false);
  p.ServerRequest(srv, "/front");
  p.KernelIds(cli, TL_CTX_CLIENT, kRuleDrops, 0x00, true);
  p.ClientRequest(cli, "/back");  // capture sees the application's bytes, not the injected line
  p.ClientResponse(cli);
  p.ServerResponse(srv);
  p.KernelIds(srv, TL_CTX_SERVER, kRuleKeeps, 0x01, false);
  p.ServerRequest(srv, "/kept");
  p.ServerResponse(srv);
  ASSERT_EQ(p.tap.spans.size(), 3u);
  EXPECT_FALSE(p.tap.spans[0].sampled());
  EXPECT_FALSE(p.tap.spans[1].sampled());
  EXPECT_TRUE(p.tap.spans[2].sampled());
  ASSERT_EQ(p.out.spans.size(), 1u);
  EXPECT_EQ(p.out.spans[0].trace_id.Hex(), kRuleKeeps);
  EXPECT_EQ(p.NotSampled(), 2u);
  EXPECT_EQ(p.RedCount("http_server_request_duration_seconds"), 2u);
  EXPECT_EQ(p.RedCount("http_client_request_duration_seconds"), 1u);
}

TEST(SampledSpanFilterTest, PassesSampledSpansAndCountsTheOthers) {
  MetricsRegistry metrics;
  Collect out;
  SampledSpanFilter filter(out, metrics);
  Span kept, dropped, also_kept;
  kept.name = "a";
  dropped.flags = 0;
  also_kept.flags = kTraceFlagSampled | 0x02;  // W3C level 2 random bit alongside
  also_kept.parent_span_id.bytes[7] = 1;        // follows its parent's decision
  filter.OnSpan(std::move(kept));
  filter.OnSpan(std::move(dropped));
  filter.OnSpan(std::move(also_kept));
  ASSERT_EQ(out.spans.size(), 2u);
  EXPECT_EQ(out.spans[0].name, "a");
  EXPECT_EQ(metrics.GetCounter("threadline_spans_dropped_total", {{"reason", "not_sampled"}}).Value(), 1u);
  EXPECT_EQ(metrics.GetCounter("threadline_spans_kept_total", {{"reason", "ratio"}}).Value(), 1u);
  EXPECT_EQ(metrics.GetCounter("threadline_spans_kept_total", {{"reason", "parent"}}).Value(), 1u);
}

}  // namespace
}  // namespace threadline
