// The web view's JSON API over a trace store (the trace list's filters, one trace with its
// critical path, endpoints, the aggregated flame graph and the bottom-up table) and the
// server's Host guard and static files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/traces/trace_store.h"
#include "agent/ui/trace_api.h"
#include "agent/ui/ui_server.h"
#include "tests/unit/trace_test_util.h"

namespace threadline {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

using namespace trace_test;

struct StoreWithTraces {
  StoreWithTraces() {
    for (const Span& s : ThreeServiceTraces()) store.Add(s);
    store.CompleteAll();
  }
  MetricsRegistry metrics;
  TraceStore store{TraceStoreOptions{}, metrics};
  TraceApi api{store, "test"};
};

HttpRequest Get(const std::string& path, std::map<std::string, std::string> query = {}) {
  HttpRequest r;
  r.method = "GET";
  r.path = path;
  r.query = std::move(query);
  r.host = "127.0.0.1:9465";
  return r;
}

Json Answer(const TraceApi& api, const HttpRequest& r) {
  auto answer = api.Handle(r);
  EXPECT_TRUE(answer.has_value());
  if (!answer) return Json();
  EXPECT_EQ(answer->status, 200u) << answer->body;
  EXPECT_EQ(answer->content_type, "application/json");
  return Json::parse(answer->body);
}

TEST(TraceApiTest, TraceListIsSlowestFirstAndFilters) {
  StoreWithTraces s;
  Json all = Answer(s.api, Get("/api/traces"));
  ASSERT_EQ(all["traces"].size(), 3u);
  EXPECT_EQ(all["traces"][0]["trace_id"], Trace(2).Hex());
  EXPECT_EQ(all["traces"][0]["duration_ns"], 300 * kUs);
  EXPECT_EQ(all["traces"][0]["status"], "error");
  EXPECT_EQ(all["traces"][1]["service"], "frontend");
  EXPECT_EQ(all["traces"][1]["operation"], "GET /checkout");
  EXPECT_EQ(all["traces"][1]["span_count"], 5);
  EXPECT_EQ(all["traces"][1]["services"], Json({"cart", "frontend", "prices"}));
  EXPECT_EQ(all["services"], Json({"cart", "frontend", "prices"}));
  EXPECT_EQ(all["store"]["traces"], 3);

  EXPECT_EQ(Answer(s.api, Get("/api/traces", {{"service", "prices"}}))["traces"].size(), 1u);
  EXPECT_EQ(Answer(s.api, Get("/api/traces", {{"status", "error"}}))["traces"].size(), 1u);
  EXPECT_EQ(Answer(s.api, Get("/api/traces", {{"status", "ok"}}))["traces"].size(), 2u);
  EXPECT_EQ(Answer(s.api, Get("/api/traces", {{"min_ms", "0.2"}}))["traces"].size(), 1u);
  EXPECT_EQ(Answer(s.api, Get("/api/traces", {{"route", "HEALTH"}}))["traces"].size(), 1u);
  EXPECT_EQ(Answer(s.api, Get("/api/traces", {{"limit", "1"}}))["traces"].size(), 1u);
  // Nothing changed since the generation the page saw: a short answer.
  Json same = Answer(s.api, Get("/api/traces", {{"since", std::to_string(all["generation"].get<uint64_t>())}}));
  EXPECT_EQ(same["unchanged"], true);
  EXPECT_FALSE(same.contains("traces"));

  auto bad = s.api.Handle(Get("/api/traces", {{"status", "weird"}}));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400u);
  EXPECT_THAT(bad->body, HasSubstr("status=weird"));
  EXPECT_EQ(s.api.Handle(Get("/api/traces", {{"min_ms", "-1"}}))->status, 400u);
}

TEST(TraceApiTest, OneTraceWithItsCriticalPath) {
  StoreWithTraces s;
  Json t = Answer(s.api, Get("/api/traces/" + Trace(1).Hex()));
  EXPECT_EQ(t["duration_ns"], 100 * kUs);
  EXPECT_EQ(t["critical_path_ns"], 100 * kUs);
  ASSERT_EQ(t["spans"].size(), 5u);
  const Json& client = t["spans"][1];
  EXPECT_EQ(client["kind"], "CLIENT");
  EXPECT_EQ(client["parent"], 0);
  EXPECT_EQ(client["edge"], "parent");
  EXPECT_EQ(client["network_before_ns"], 10 * kUs);
  EXPECT_EQ(client["network_after_ns"], 10 * kUs);
  EXPECT_EQ(client["critical_ns"], 20 * kUs);
  EXPECT_EQ(client["on_path"], true);
  EXPECT_EQ(t["spans"][2]["parent_source"], "tuple");
  EXPECT_EQ(t["spans"][4]["service"], "prices");
  EXPECT_EQ(t["spans"][4]["start_ns"], 35 * kUs);
  EXPECT_EQ(t["spans"][4]["attributes"]["http.response.status_code"], 200);
  uint64_t sum = 0;
  for (const auto& seg : t["segments"]) sum += seg[2].get<uint64_t>() - seg[1].get<uint64_t>();
  EXPECT_EQ(sum, 100 * kUs);
  EXPECT_FALSE(Answer(s.api, Get("/api/traces/" + Trace(1).Hex(), {{"attributes", "0"}}))["spans"][0].contains(
      "attributes"));
  Json one = Answer(s.api, Get("/api/traces/" + Trace(1).Hex() + "/spans/" + Id(5).Hex()));
  EXPECT_EQ(one["attributes"]["http.route"], "/prices");
  EXPECT_EQ(s.api.Handle(Get("/api/traces/" + Trace(1).Hex() + "/spans/" + Id(9).Hex()))->status, 404u);
  EXPECT_EQ(s.api.Handle(Get("/api/traces/" + Trace(1).Hex() + "/spans/zz"))->status, 400u);
  EXPECT_EQ(s.api.Handle(Get("/api/traces/" + Trace(9).Hex()))->status, 404u);
  EXPECT_EQ(s.api.Handle(Get("/api/traces/nothex"))->status, 400u);
}

TEST(TraceApiTest, EndpointFlameGraphAndOperations) {
  StoreWithTraces s;
  Json endpoints = Answer(s.api, Get("/api/endpoints"));
  ASSERT_EQ(endpoints["endpoints"].size(), 2u);
  EXPECT_EQ(endpoints["endpoints"][0]["service"], "frontend");
  EXPECT_EQ(endpoints["endpoints"][0]["traces"], 2);
  EXPECT_EQ(endpoints["endpoints"][0]["errors"], 1);
  EXPECT_EQ(endpoints["endpoints"][0]["max_ns"], 300 * kUs);

  Json flame = Answer(s.api, Get("/api/flame", {{"service", "frontend"}, {"operation", "GET /checkout"}}));
  EXPECT_EQ(flame["traces"], 2);
  EXPECT_EQ(flame["total_ns"], 400 * kUs);
  const Json& top = flame["root"]["children"];
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0]["name"], "frontend: GET /checkout");
  EXPECT_EQ(top[0]["children"][0]["name"], "frontend: GET");
  EXPECT_EQ(top[0]["children"][0]["children"][0]["name"], "cart: GET /cart");

  // The slowest 50%: only the 300 µs trace, which never reached prices.
  Json tail = Answer(s.api, Get("/api/flame", {{"service", "frontend"}, {"operation", "GET /checkout"}, {"slowest", "50"}}));
  EXPECT_EQ(tail["traces"], 1);
  EXPECT_EQ(tail["candidates"], 2);
  EXPECT_EQ(tail["threshold_ns"], 300 * kUs);
  auto folded = s.api.Handle(Get("/api/flame", {{"service", "frontend"}, {"operation", "GET /checkout"}, {"format", "folded"}}));
  ASSERT_TRUE(folded);
  EXPECT_THAT(folded->body, HasSubstr("frontend: GET /checkout;frontend: GET;cart: GET /cart;cart: GET;prices: GET /prices 30\n"));

  Json ops = Answer(s.api, Get("/api/operations"));
  ASSERT_FALSE(ops["operations"].empty());
  EXPECT_EQ(ops["traces"], 3);
  EXPECT_EQ(ops["operations"][0]["frame"], "cart: GET /cart");  // 260 in the slow trace + 20
  EXPECT_EQ(ops["operations"][0]["endpoints"], 1);
}

TEST(UiServerTest, RefusesForeignHostsAndServesThePage) {
  EXPECT_TRUE(IsLocalHostHeader(""));
  EXPECT_TRUE(IsLocalHostHeader("127.0.0.1:9465"));
  EXPECT_TRUE(IsLocalHostHeader("localhost:9465"));
  EXPECT_TRUE(IsLocalHostHeader("LOCALHOST"));
  EXPECT_TRUE(IsLocalHostHeader("[::1]:9465"));
  EXPECT_TRUE(IsLocalHostHeader("10.1.2.3:9465"));  // an address names no DNS entry to rebind
  EXPECT_FALSE(IsLocalHostHeader("evil.example:9465"));
  EXPECT_FALSE(IsLocalHostHeader("localhost.evil.example"));

  MetricsRegistry metrics;
  TraceStore store(TraceStoreOptions{}, metrics);
  auto ui = UiServer::Start("127.0.0.1:0", store, "test", metrics);
  ASSERT_TRUE(ui.ok()) << ui.error().message;
  EXPECT_EQ((*ui)->url(), "http://127.0.0.1:" + std::to_string((*ui)->port()) + "/");
  HttpRequest page = Get("/");
  HttpResponse r = (*ui)->Handle(page);
  EXPECT_EQ(r.status, 200u);
  EXPECT_THAT(r.content_type, HasSubstr("text/html"));
  EXPECT_THAT(r.body, HasSubstr("threadline"));
  EXPECT_EQ((*ui)->Handle(Get("/app.js")).status, 200u);
  EXPECT_EQ((*ui)->Handle(Get("/nope")).status, 404u);
  page.host = "rebound.example:9465";
  EXPECT_EQ((*ui)->Handle(page).status, 403u);
  EXPECT_EQ(metrics.GetCounter("threadline_ui_requests_total", {{"kind", "refused"}}).Value(), 1u);
  EXPECT_EQ(metrics.GetCounter("threadline_ui_requests_total", {{"kind", "page"}}).Value(), 2u);
}

}  // namespace
}  // namespace threadline
