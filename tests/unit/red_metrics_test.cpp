// RedMetricsSink: server and client spans observed into per-series duration histograms (service,
// method, route, status class), other spans ignored, every span passed on, and label sets past
// max_series folded into route="_other" (counted).
#include "agent/pipeline/red_metrics.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace threadline {
namespace {

struct Collect : SpanSink {
  std::vector<Span> spans;
  void OnSpan(Span&& s) override { spans.push_back(std::move(s)); }
};

Span HttpSpan(SpanKind kind, std::string name, std::string method, int64_t status, uint64_t duration_ns) {
  static const auto resource =
      std::make_shared<const Resource>(Resource{{{"service.name", std::string("shop")}}});
  Span s;
  s.kind = kind;
  s.name = std::move(name);
  s.start_unix_ns = 1'000'000'000;
  s.end_unix_ns = s.start_unix_ns + duration_ns;
  s.attributes.push_back({"http.request.method", std::move(method)});
  if (status != 0) s.attributes.push_back({"http.response.status_code", status});
  s.resource = resource;
  return s;
}

Histogram::Data Series(MetricsRegistry& m, const std::string& name, const std::string& method,
                       const std::string& route, const std::string& status) {
  return m.GetHistogram(name,
                        {{"service_name", "shop"},
                         {"http_request_method", method},
                         {"http_route", route},
                         {"http_response_status_class", status}},
                        {})
      .Read();
}

TEST(RedMetricsSink, ObservesServerAndClientSpansBySeries) {
  MetricsRegistry m;
  Collect next;
  RedMetricsSink red(next, m);
  red.OnSpan(HttpSpan(SpanKind::kServer, "GET /items/{id}", "GET", 200, 2'000'000));
  red.OnSpan(HttpSpan(SpanKind::kServer, "GET /items/{id}", "GET", 204, 4'000'000));
  red.OnSpan(HttpSpan(SpanKind::kServer, "GET /items/{id}", "GET", 503, 1'000'000));
  red.OnSpan(HttpSpan(SpanKind::kClient, "POST", "POST", 0, 1'000'000));  // no response, no route
  red.OnSpan(HttpSpan(SpanKind::kInternal, "work", "GET", 200, 1'000'000));
  EXPECT_EQ(next.spans.size(), 5u);
  // The internal span made no series. (Counted before Series(), which creates what it asks for.)
  EXPECT_EQ(m.SnapshotAll().histograms.size(), 3u);

  Histogram::Data ok = Series(m, "http_server_request_duration_seconds", "GET", "/items/{id}", "2xx");
  EXPECT_EQ(ok.count, 2u);
  EXPECT_DOUBLE_EQ(ok.sum, 0.006);
  EXPECT_EQ(Series(m, "http_server_request_duration_seconds", "GET", "/items/{id}", "5xx").count, 1u);
  EXPECT_EQ(Series(m, "http_client_request_duration_seconds", "POST", "/", "none").count, 1u);
}

TEST(RedMetricsSink, FoldsNewLabelSetsPastTheCapIntoOther) {
  MetricsRegistry m;
  Collect next;
  RedMetricsSink red(next, m, /*max_series=*/2);
  red.OnSpan(HttpSpan(SpanKind::kServer, "GET /a", "GET", 200, 1));
  red.OnSpan(HttpSpan(SpanKind::kServer, "GET /b", "GET", 200, 1));
  red.OnSpan(HttpSpan(SpanKind::kServer, "GET /c", "GET", 200, 1));
  red.OnSpan(HttpSpan(SpanKind::kServer, "GET /d", "GET", 200, 1));
  red.OnSpan(HttpSpan(SpanKind::kServer, "GET /a", "GET", 200, 1));  // known: still its own
  EXPECT_EQ(m.SnapshotAll().histograms.size(), 3u);  // /a, /b and _other
  EXPECT_EQ(m.GetCounter("threadline_red_series_overflow_total").Value(), 2u);
  const std::string name = "http_server_request_duration_seconds";
  EXPECT_EQ(Series(m, name, "GET", "/a", "2xx").count, 2u);
  EXPECT_EQ(Series(m, name, "GET", "/b", "2xx").count, 1u);
  EXPECT_EQ(Series(m, name, "GET", "_other", "2xx").count, 2u);
}

}  // namespace
}  // namespace threadline

namespace threadline {
namespace {

Span DbSpan(SpanKind kind, std::string operation, std::string collection, std::string error,
            uint64_t duration_ns) {
  static const auto resource =
      std::make_shared<const Resource>(Resource{{{"service.name", std::string("shop")}}});
  Span s;
  s.kind = kind;
  s.name = operation + " " + collection;
  s.start_unix_ns = 1'000'000'000;
  s.end_unix_ns = s.start_unix_ns + duration_ns;
  s.attributes.push_back({"db.system.name", std::string("postgresql")});
  s.attributes.push_back({"db.operation.name", std::move(operation)});
  s.attributes.push_back({"db.collection.name", std::move(collection)});
  if (!error.empty()) s.attributes.push_back({"error.type", std::move(error)});
  s.resource = resource;
  return s;
}

Histogram::Data DbSeries(MetricsRegistry& m, const std::string& operation, const std::string& collection,
                         const std::string& error) {
  return m.GetHistogram("db_client_operation_duration_seconds",
                        {{"service_name", "shop"},
                         {"db_system_name", "postgresql"},
                         {"db_operation_name", operation},
                         {"db_collection_name", collection},
                         {"error_type", error}},
                        {})
      .Read();
}

// Label sets that differ in any one value are distinct series; equal ones from different span
// strings and Resource objects are one. The service name is remembered for the last resource
// seen: a span of another resource (or of none) is counted under its own.
TEST(RedMetricsSink, SeriesByEveryLabelValue) {
  MetricsRegistry m;
  Collect next;
  RedMetricsSink red(next, m);
  auto span = [](std::shared_ptr<const Resource> resource, std::string name, std::string method, int64_t status) {
    Span s = HttpSpan(SpanKind::kServer, std::move(name), std::move(method), status, 1'000'000);
    s.resource = std::move(resource);
    return s;
  };
  auto shop = std::make_shared<const Resource>(Resource{{{"service.name", std::string("shop")}}});
  auto shop_again = std::make_shared<const Resource>(Resource{{{"service.name", std::string("shop")}}});
  auto shopx = std::make_shared<const Resource>(Resource{{{"service.name", std::string("shopx")}}});
  const std::string long_route = "/a/very/long/route/with/more/than/eight/bytes/{id}";
  for (int i = 0; i < 3; ++i) {
    red.OnSpan(span(shop, "GET " + long_route, "GET", 200));
    red.OnSpan(span(shop_again, "GET " + long_route, "GET", 200));
    red.OnSpan(span(shopx, "GET " + long_route, "GET", 200));
    red.OnSpan(span(shop, "GET " + long_route + "x", "GET", 200));
    red.OnSpan(span(shop, "GET " + long_route, "GET", 404));
    red.OnSpan(span(shop, "GETX " + long_route, "GETX", 200));
    red.OnSpan(span(nullptr, "GET " + long_route, "GET", 200));
  }
  auto count = [&m](const std::string& service, const std::string& method, const std::string& route,
                    const std::string& status) {
    return m.GetHistogram("http_server_request_duration_seconds",
                          {{"service_name", service},
                           {"http_request_method", method},
                           {"http_route", route},
                           {"http_response_status_class", status}},
                          {})
        .Read()
        .count;
  };
  EXPECT_EQ(m.SnapshotAll().histograms.size(), 6u);
  EXPECT_EQ(count("shop", "GET", long_route, "2xx"), 6u);
  EXPECT_EQ(count("shopx", "GET", long_route, "2xx"), 3u);
  EXPECT_EQ(count("shop", "GET", long_route + "x", "2xx"), 3u);
  EXPECT_EQ(count("shop", "GET", long_route, "4xx"), 3u);
  EXPECT_EQ(count("shop", "GETX", long_route, "2xx"), 3u);
  EXPECT_EQ(count("unknown_service", "GET", long_route, "2xx"), 3u);
}

TEST(RedMetricsSink, DatabaseClientSpansBySystemOperationCollection) {
  MetricsRegistry m;
  Collect next;
  RedMetricsSink red(next, m);
  red.OnSpan(DbSpan(SpanKind::kClient, "SELECT", "orders", "", 2'000'000));
  red.OnSpan(DbSpan(SpanKind::kClient, "SELECT", "orders", "", 4'000'000));
  red.OnSpan(DbSpan(SpanKind::kClient, "SELECT", "nope", "42P01", 1'000'000));
  red.OnSpan(DbSpan(SpanKind::kServer, "SELECT", "orders", "", 1'000'000));  // the server's side
  EXPECT_EQ(next.spans.size(), 4u);
  const auto all = m.SnapshotAll().histograms;
  EXPECT_EQ(all.size(), 2u);  // no HTTP series for database spans, none for the server's side
  EXPECT_EQ(DbSeries(m, "SELECT", "orders", "").count, 2u);
  EXPECT_EQ(DbSeries(m, "SELECT", "nope", "42P01").count, 1u);
}

TEST(RedMetricsSink, DatabaseSeriesAreCapped) {
  MetricsRegistry m;
  Collect next;
  RedMetricsSink red(next, m, 3);
  for (int i = 0; i < 10; ++i) red.OnSpan(DbSpan(SpanKind::kClient, "SELECT", "t" + std::to_string(i), "", 1'000'000));
  EXPECT_EQ(m.GetCounter("threadline_db_red_series_overflow_total").Value(), 7u);
  EXPECT_EQ(DbSeries(m, "SELECT", "_other", "").count, 7u);
}

TEST(RedMetricsSink, SpansOfOtherProtocolsPassUncounted) {
  MetricsRegistry m;
  Collect next;
  RedMetricsSink red(next, m);
  Span grpc;
  grpc.kind = SpanKind::kServer;
  grpc.name = "threadline.test.Echo/Say";
  grpc.attributes.push_back({"rpc.system", std::string("grpc")});
  red.OnSpan(std::move(grpc));
  EXPECT_EQ(next.spans.size(), 1u);
  for (const auto& h : m.SnapshotAll().histograms)
    EXPECT_NE(h.name, "http_server_request_duration_seconds");
}

}  // namespace
}  // namespace threadline
