// Parent rules under concurrency (agent/spans/context_rules.h) on recorded event sequences: the
// kernel's context verdict, forwarded header and target evidence, and ambiguous. Several server
// requests are in flight in one process in every test; the point is that a client request gets
// the right one of them or none, never another one.
#include "agent/spans/context_rules.h"

#include <gtest/gtest.h>

#include <string>

#include "http_pipeline_util.h"
#include "threadline/events.h"

namespace threadline {
namespace {

using http_test::SampledPipeline;
using http_test::SourceOf;

const Span& ByPath(const std::vector<Span>& spans, const std::string& path) {
  for (const Span& s : spans) {
    const AttributeValue* v = FindAttribute(s.attributes, "url.path");
    if (v && std::get<std::string>(*v) == path) return s;
  }
  ADD_FAILURE() << "no span for " << path;
  static const Span none;
  return none;
}

bool ChildOf(const Span& child, const Span& parent) {
  return child.trace_id == parent.trace_id && child.parent_span_id == parent.span_id;
}

// One process serving two requests at once (kernel numbers 1 and 2), each still in flight
// while the test's client calls are made.
struct TwoInFlight {
  explicit TwoInFlight(const std::string& path1 = "/a/4f2c9e81d0", const std::string& headers1 = "",
                       const std::string& path2 = "/a/77aa0b3c5e", const std::string& headers2 = "")
      : p(1.0), srv1(p.Open(Role::kServer)), srv2(p.Open(Role::kServer)) {
    p.ServerRequest(srv1, path1, headers1, TL_CTX_TAG(TL_CTAG_SERVER, 1));
    p.ServerRequest(srv2, path2, headers2, TL_CTX_TAG(TL_CTAG_SERVER, 2));
  }
  void Call(const std::string& path, uint32_t ctx_tag, const std::string& headers = "") {
    const ConnId cli = p.Open(Role::kClient);
    p.ClientRequest(cli, path, headers, ctx_tag);
    p.ClientResponse(cli);
  }
  void Finish() {
    p.ServerResponse(srv1);
    p.ServerResponse(srv2);
  }
  uint64_t Counter(const std::string& name, const Labels& labels = {}) {
    return p.metrics.GetCounter(name, labels).Value();
  }

  SampledPipeline p;
  ConnId srv1, srv2;
};

TEST(ContextParentRuleTest, TheKernelsVerdictNamesTheRequestWhateverTheOrder) {
  TwoInFlight t;
  t.Call("/b/one", TL_CTX_TAG(TL_CTAG_GOROUTINE, 2));
  t.Call("/b/two", TL_CTX_TAG(TL_CTAG_THREAD, 1));
  t.Call("/b/three", TL_CTX_TAG(TL_CTAG_NODE_ASYNC, 2));
  t.Finish();
  const auto& spans = t.p.tap.spans;
  ASSERT_EQ(spans.size(), 5u);
  const Span& a1 = ByPath(spans, "/a/4f2c9e81d0");
  const Span& a2 = ByPath(spans, "/a/77aa0b3c5e");
  EXPECT_TRUE(ChildOf(ByPath(spans, "/b/one"), a2));
  EXPECT_EQ(SourceOf(ByPath(spans, "/b/one")), "goroutine");
  EXPECT_TRUE(ChildOf(ByPath(spans, "/b/two"), a1));
  EXPECT_EQ(SourceOf(ByPath(spans, "/b/two")), "thread");
  EXPECT_TRUE(ChildOf(ByPath(spans, "/b/three"), a2));
  EXPECT_EQ(SourceOf(ByPath(spans, "/b/three")), "node_async");
}

TEST(ContextParentRuleTest, AVerdictBeatsForwardedEvidenceForAnotherRequest) {
  TwoInFlight t;
  // The path tail is request 2's, but the kernel saw the thread of request 1 send it.
  t.Call("/b/77aa0b3c5e", TL_CTX_TAG(TL_CTAG_THREAD, 1));
  t.Finish();
  const Span& call = ByPath(t.p.tap.spans, "/b/77aa0b3c5e");
  EXPECT_TRUE(ChildOf(call, ByPath(t.p.tap.spans, "/a/4f2c9e81d0")));
  EXPECT_EQ(SourceOf(call), "thread");
}

TEST(ContextParentRuleTest, ANamedRequestThatIsGoneIsCountedNotGuessed) {
  TwoInFlight t;
  t.Call("/b/late", TL_CTX_TAG(TL_CTAG_THREAD, 9));  // request 9: lost, or answered already
  t.Finish();
  const Span& call = ByPath(t.p.tap.spans, "/b/late");
  EXPECT_FALSE(call.parent_span_id.valid());
  EXPECT_EQ(SourceOf(call), "root");
  EXPECT_EQ(t.Counter("threadline_parent_context_unmatched_total"), 1u);
}

TEST(ContextParentRuleTest, ARequestAnsweredBeforeTheCallIsNoLongerAParent) {
  SampledPipeline p(1.0);
  const ConnId srv = p.Open(Role::kServer);
  p.ServerRequest(srv, "/a/4f2c9e81d0", "", TL_CTX_TAG(TL_CTAG_SERVER, 1));
  p.ServerResponse(srv);
  const ConnId cli = p.Open(Role::kClient);
  p.ClientRequest(cli, "/b/4f2c9e81d0", "", TL_CTX_TAG(TL_CTAG_THREAD, 1));
  p.ClientResponse(cli);
  const Span& call = ByPath(p.tap.spans, "/b/4f2c9e81d0");
  EXPECT_FALSE(call.parent_span_id.valid());  // neither by context nor by the forwarded path
}

TEST(AmbiguousRuleTest, SeveralInFlightAndNothingDecidingMakesANewTraceSaidAsSuch) {
  TwoInFlight t;
  t.Call("/b/users/42", TL_CTX_TAG(TL_CTAG_AMBIGUOUS, 0));
  t.Call("/b/go", TL_CTX_TAG(TL_CTAG_UNTRACKED, 0));
  t.Finish();
  for (const char* path : {"/b/users/42", "/b/go"}) {
    const Span& call = ByPath(t.p.tap.spans, path);
    EXPECT_FALSE(call.parent_span_id.valid()) << path;
    EXPECT_EQ(SourceOf(call), "ambiguous") << path;
    EXPECT_NE(call.trace_id, ByPath(t.p.tap.spans, "/a/4f2c9e81d0").trace_id);
    EXPECT_NE(call.trace_id, ByPath(t.p.tap.spans, "/a/77aa0b3c5e").trace_id);
  }
  EXPECT_EQ(t.Counter("threadline_parent_ambiguous_total", {{"reason", "several_in_flight"}}), 1u);
  EXPECT_EQ(t.Counter("threadline_parent_ambiguous_total", {{"reason", "go_not_followed"}}), 1u);
}

TEST(ForwardedRuleTest, TheOneRequestWithTheSameSpecificPathTail) {
  TwoInFlight t;
  t.Call("/b/77aa0b3c5e", TL_CTX_TAG(TL_CTAG_AMBIGUOUS, 0));  // nginx proxy_pass /a/ -> /b/
  t.Call("/internal/v2/4f2c9e81d0?x=1", TL_CTX_TAG(TL_CTAG_ROOT, 0));  // query differs: no tail
  t.Finish();
  const auto& spans = t.p.tap.spans;
  const Span& call = ByPath(spans, "/b/77aa0b3c5e");
  EXPECT_TRUE(ChildOf(call, ByPath(spans, "/a/77aa0b3c5e")));
  EXPECT_EQ(SourceOf(call), "forwarded_target");
  EXPECT_FALSE(ByPath(spans, "/internal/v2/4f2c9e81d0").parent_span_id.valid());
}

TEST(ForwardedRuleTest, ShortOrSharedTailsDecideNothing) {
  {
    TwoInFlight t("/a/users/42", "", "/a/login");
    t.Call("/b/users/42", TL_CTX_TAG(TL_CTAG_AMBIGUOUS, 0));  // "42", "users": not specific
    t.Call("/b/login", TL_CTX_TAG(TL_CTAG_AMBIGUOUS, 0));
    t.Finish();
    EXPECT_EQ(SourceOf(ByPath(t.p.tap.spans, "/b/users/42")), "ambiguous");
    EXPECT_EQ(SourceOf(ByPath(t.p.tap.spans, "/b/login")), "ambiguous");
  }
  {
    TwoInFlight t("/a/order/ab12cd34", "", "/c/order/ab12cd34");  // two requests, same tail
    t.Call("/b/ab12cd34", TL_CTX_TAG(TL_CTAG_AMBIGUOUS, 0));
    t.Finish();
    EXPECT_EQ(SourceOf(ByPath(t.p.tap.spans, "/b/ab12cd34")), "ambiguous");
  }
  EXPECT_TRUE(SpecificPathTail("4f2c9e81d0"));
  EXPECT_TRUE(SpecificPathTail("users/ab12cd"));
  EXPECT_TRUE(SpecificPathTail("averyveryverylongwordsegment"));
  EXPECT_FALSE(SpecificPathTail("users/42"));
  EXPECT_FALSE(SpecificPathTail("checkout"));
}

TEST(ForwardedRuleTest, TheOneRequestThatArrivedWithTheSameCorrelationHeader) {
  TwoInFlight t("/a/x", "X-Request-Id: req-one\r\n", "/a/y", "X-Request-Id: req-two\r\n");
  t.Call("/b/z", TL_CTX_TAG(TL_CTAG_AMBIGUOUS, 0), "x-request-id: req-two\r\n");
  t.Call("/b/w", TL_CTX_TAG(TL_CTAG_AMBIGUOUS, 0), "X-Request-Id: req-three\r\n");
  t.Finish();
  const auto& spans = t.p.tap.spans;
  EXPECT_TRUE(ChildOf(ByPath(spans, "/b/z"), ByPath(spans, "/a/y")));
  EXPECT_EQ(SourceOf(ByPath(spans, "/b/z")), "forwarded_header");
  EXPECT_EQ(SourceOf(ByPath(spans, "/b/w")), "ambiguous");
}

TEST(ForwardedRuleTest, ACorrelationValueTwoRequestsArrivedWithDecidesNothing) {
  TwoInFlight t("/a/x", "X-Request-Id: same\r\n", "/a/y", "X-Request-Id: same\r\n");
  t.Call("/b/z", TL_CTX_TAG(TL_CTAG_AMBIGUOUS, 0), "X-Request-Id: same\r\n");
  t.Finish();
  EXPECT_EQ(SourceOf(ByPath(t.p.tap.spans, "/b/z")), "ambiguous");
}

}  // namespace
}  // namespace threadline
