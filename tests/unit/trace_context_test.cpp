#include "agent/spans/trace_context.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace threadline {
namespace {

constexpr std::string_view kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr std::string_view kSpan = "00f067aa0ba902b7";
constexpr std::string_view kExample = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceIdFromHex, RoundTripsAndRejectsInvalid) {
  auto t = TraceIdFromHex(kTrace);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Hex(), kTrace);
  EXPECT_EQ(t->bytes[0], 0x4b);
  EXPECT_EQ(t->bytes[15], 0x36);
  auto s = SpanIdFromHex(kSpan);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->Hex(), kSpan);

  EXPECT_FALSE(TraceIdFromHex("00000000000000000000000000000000"));
  EXPECT_FALSE(SpanIdFromHex("0000000000000000"));
  EXPECT_FALSE(TraceIdFromHex("4BF92F3577B34DA6A3CE929D0E0E4736"));  // uppercase
  EXPECT_FALSE(TraceIdFromHex(kTrace.substr(1)));
  EXPECT_FALSE(SpanIdFromHex("00f067aa0ba902b"));
  EXPECT_FALSE(SpanIdFromHex("00f067aa0ba902bz"));
  EXPECT_FALSE(SpanIdFromHex(""));
}

TEST(ParseTraceParent, SpecExample) {
  auto tp = ParseTraceParent(kExample);
  ASSERT_TRUE(tp);
  EXPECT_EQ(tp->version, 0);
  EXPECT_EQ(tp->trace_id.Hex(), kTrace);
  EXPECT_EQ(tp->parent_id.Hex(), kSpan);
  EXPECT_EQ(tp->flags, 0x01);
  EXPECT_TRUE(tp->sampled());
  EXPECT_EQ(FormatTraceParent(*tp), kExample);
}

TEST(ParseTraceParent, Flags) {
  auto not_sampled = ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(not_sampled);
  EXPECT_EQ(not_sampled->flags, 0x00);
  EXPECT_FALSE(not_sampled->sampled());
  // Level 2 random flag and unknown bits are carried, not rejected.
  auto random = ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03");
  ASSERT_TRUE(random);
  EXPECT_EQ(random->flags, 0x03);
  auto high = ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff");
  ASSERT_TRUE(high);
  EXPECT_EQ(high->flags, 0xff);
  EXPECT_TRUE(high->sampled());
}

TEST(ParseTraceParent, OwsIsTrimmed) {
  EXPECT_TRUE(ParseTraceParent(std::string(" \t") + std::string(kExample) + "\t "));
  EXPECT_TRUE(ParseTraceParent(std::string("   ") + std::string(kExample)));
}

TEST(ParseTraceParent, InvalidValues) {
  const std::vector<std::string> invalid = {
      "",
      "00",
      // all-zero ids
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      // uppercase anywhere
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
      "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      // version ff is forbidden; non-hex versions are not versions
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      // wrong lengths
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
      "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      // version 00 allows nothing after the flags
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be",
      // wrong separators / non-hex
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
      "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
      // OWS inside the value is not OWS
      "00 -4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  };
  for (const auto& v : invalid) EXPECT_FALSE(ParseTraceParent(v)) << v;
}

TEST(ParseTraceParent, FutureVersions) {
  // A higher version is read by the version-00 rules; later fields must follow a '-'.
  auto same_length = ParseTraceParent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ASSERT_TRUE(same_length);
  EXPECT_EQ(same_length->version, 0xcc);
  EXPECT_EQ(same_length->trace_id.Hex(), kTrace);

  auto extra = ParseTraceParent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like");
  ASSERT_TRUE(extra);
  EXPECT_EQ(extra->parent_id.Hex(), kSpan);
  EXPECT_EQ(extra->flags, 0x01);
  // Re-emitted as version 00, the only layout we know.
  EXPECT_EQ(FormatTraceParent(*extra), kExample);

  EXPECT_FALSE(ParseTraceParent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what-the-future-will-be-like"));
  EXPECT_FALSE(ParseTraceParent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0"));
  EXPECT_FALSE(ParseTraceParent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"));
  EXPECT_FALSE(ParseTraceParent("cc-00000000000000000000000000000000-00f067aa0ba902b7-01-x"));
}

TEST(FormatTraceParent, FromIds) {
  auto t = TraceIdFromHex(kTrace);
  auto s = SpanIdFromHex(kSpan);
  ASSERT_TRUE(t && s);
  EXPECT_EQ(FormatTraceParent(*t, *s, 0x00), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  EXPECT_EQ(FormatTraceParent(*t, *s, 0x0b), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0b");
  // Random ids round-trip through the parser.
  TraceId rt = TraceId::Random();
  SpanId rs = SpanId::Random();
  auto back = ParseTraceParent(FormatTraceParent(rt, rs, 1));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->trace_id, rt);
  EXPECT_EQ(back->parent_id, rs);
}

TEST(TraceState, Valid) {
  const std::vector<std::string> valid = {
      "",
      "rojo=00f067aa0ba902b7",
      "congo=t61rcWkgMzE",
      "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
      "rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE",
      "\trojo=1\t,\tcongo=2\t",
      "rojo=1,,congo=2",  // empty list-members are allowed
      ",rojo=1,",
      "fw529a3039@dt=1",  // multi-tenant key
      "0tenant@sys=1",    // tenant may start with a digit
      "a_b-c*d/e=x",
      "k=value with spaces",
      "k=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~",
  };
  for (const auto& v : valid) EXPECT_TRUE(IsValidTraceState(v)) << v;
}

TEST(TraceState, Invalid) {
  const std::vector<std::string> invalid = {
      "rojo",                 // no '='
      "=1",                   // empty key
      "Rojo=1",               // uppercase key
      "1rojo=1",              // simple key must start with a letter
      "rojo=",                // empty value
      "rojo=a,b",             // ',' ends the member, "b" has no '='
      "rojo=a=b",             // '=' in value
      "rojo=1,rojo=2",        // duplicate key
      "t@=1",                 // empty system
      "@s=1",                 // empty tenant
      "t@1s=1",               // system must start with a letter
      "t@abcdefghijklmno=1",  // system longer than 14
      "k=caf\xc3\xa9",        // non-ASCII value
      "k=a\x01",              // control character
  };
  for (const auto& v : invalid) EXPECT_FALSE(IsValidTraceState(v)) << v;
  // A value may hold spaces but not end in one; a trailing space is OWS around the member.
  EXPECT_TRUE(IsValidTraceState("rojo=trailing "));
  EXPECT_FALSE(IsValidTraceState("k=" + std::string(257, 'a')));
  EXPECT_TRUE(IsValidTraceState("k=" + std::string(256, 'a')));
  EXPECT_TRUE(IsValidTraceState(std::string(256, 'k') + "=1"));
  EXPECT_FALSE(IsValidTraceState(std::string(257, 'k') + "=1"));
}

TEST(TraceState, MemberLimit) {
  std::string v;
  for (int i = 0; i < 32; ++i) v += (i ? "," : "") + std::string("k") + std::to_string(i) + "=v";
  EXPECT_TRUE(IsValidTraceState(v));
  EXPECT_FALSE(IsValidTraceState(v + ",k32=v"));
}

TEST(ExtractTraceContext, CombinesTraceStateLines) {
  std::vector<std::string_view> tp = {kExample};
  std::vector<std::string_view> ts = {"rojo=00f067aa0ba902b7", " congo=t61rcWkgMzE ", ""};
  auto ctx = ExtractTraceContext(tp, ts);
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->parent.trace_id.Hex(), kTrace);
  EXPECT_EQ(ctx->trace_state, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
}

TEST(ExtractTraceContext, InvalidTraceStateIsDroppedNotTheParent) {
  std::vector<std::string_view> tp = {kExample};
  std::vector<std::string_view> ts = {"rojo=1", "Bad Key=2"};
  auto ctx = ExtractTraceContext(tp, ts);
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->trace_state, "");
}

TEST(ExtractTraceContext, NoParentNoContext) {
  std::vector<std::string_view> none = {};
  std::vector<std::string_view> ts = {"rojo=1"};
  EXPECT_FALSE(ExtractTraceContext(none, ts));
  std::vector<std::string_view> bad = {"00-00000000000000000000000000000000-00f067aa0ba902b7-01"};
  EXPECT_FALSE(ExtractTraceContext(bad, ts));
  // Two traceparent headers: the spec says the value is invalid.
  std::vector<std::string_view> two = {kExample, kExample};
  EXPECT_FALSE(ExtractTraceContext(two, ts));
}

}  // namespace
}  // namespace threadline
