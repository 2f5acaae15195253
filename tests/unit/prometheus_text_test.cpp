// Histogram buckets, the registry's full snapshot, the Prometheus text rendering (exact text),
// and the /metrics + /healthz endpoint over real HTTP (libcurl as the client).
#include "exporter/prometheus_text.h"

#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <thread>
#include <vector>

#include "exporter/metrics_server.h"

namespace threadline {
namespace {

using ::testing::HasSubstr;

TEST(Histogram, BucketsAreCumulativeWithInclusiveUpperBounds) {
  Histogram h({0.1, 1, 10});
  for (double v : {0.05, 0.1, 0.5, 1.0, 3.0, 100.0}) h.Observe(v);
  Histogram::Data d = h.Read();
  EXPECT_EQ(d.upper_bounds, (std::vector<double>{0.1, 1, 10}));
  EXPECT_EQ(d.cumulative, (std::vector<uint64_t>{2, 4, 5, 6}));  // le=0.1, 1, 10, +Inf
  EXPECT_EQ(d.count, 6u);
  EXPECT_DOUBLE_EQ(d.sum, 104.65);
}

TEST(Histogram, TidiesBoundsAndCountsFromManyThreads) {
  Histogram h({5, 1, 1, std::numeric_limits<double>::infinity()});
  EXPECT_EQ(h.upper_bounds(), (std::vector<double>{1, 5}));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h] {
      for (int i = 0; i < 10000; ++i) h.Observe(i % 2 == 0 ? 0.5 : 2.0);
    });
  }
  for (auto& t : threads) t.join();
  Histogram::Data d = h.Read();
  EXPECT_EQ(d.count, 40000u);
  EXPECT_EQ(d.cumulative, (std::vector<uint64_t>{20000, 40000, 40000}));
  EXPECT_DOUBLE_EQ(d.sum, 20000 * 0.5 + 20000 * 2.0);
}

TEST(Histogram, RegistryReturnsTheSameHistogramAndSnapshotsIt) {
  MetricsRegistry m;
  Histogram& a = m.GetHistogram("lat_seconds", {{"op", "x"}}, {1, 2}, "help");
  Histogram& b = m.GetHistogram("lat_seconds", {{"op", "x"}}, {7}, "ignored");
  EXPECT_EQ(&a, &b);
  a.Observe(1.5);
  m.GetCounter("c_total").Add(2);
  MetricsRegistry::FullSnapshot s = m.SnapshotAll();
  ASSERT_EQ(s.histograms.size(), 1u);
  EXPECT_EQ(s.histograms[0].name, "lat_seconds");
  EXPECT_EQ(s.histograms[0].help, "help");
  EXPECT_EQ(s.histograms[0].data.cumulative, (std::vector<uint64_t>{0, 1, 1}));
  ASSERT_EQ(s.scalars.size(), 1u);
  EXPECT_EQ(s.scalars[0].value, 2);
  EXPECT_EQ(m.Snapshot().size(), 1u);  // the old API still lists counters and gauges only
}

TEST(PrometheusText, ExactRendering) {
  MetricsRegistry m;
  m.GetCounter("threadline_spans_dropped_total", {{"reason", "queue_full"}}, "Spans dropped.").Add(3);
  m.GetCounter("threadline_spans_dropped_total", {{"reason", "export_failed"}}, "Spans dropped.").Add(1);
  m.GetCounter("odd_total", {{"path", "C:\\dir \"x\"\nnext"}}, "Line one\nline \\two").Add(1);
  m.GetGauge("threadline_export_queue_depth", {}, "Spans waiting.").Set(-2);
  m.GetGauge("no_help");
  Histogram& h = m.GetHistogram("threadline_export_latency_seconds", {{"protocol", "grpc"}}, {0.005, 0.25, 1},
                                "Export latency.");
  h.Observe(0.00390625);  // 2^-8: the sum below is exact
  h.Observe(0.25);
  h.Observe(7);
  EXPECT_EQ(RenderPrometheusText(m),
            "# TYPE no_help gauge\n"
            "no_help 0\n"
            "# HELP odd_total Line one\\nline \\\\two\n"
            "# TYPE odd_total counter\n"
            "odd_total{path=\"C:\\\\dir \\\"x\\\"\\nnext\"} 1\n"
            "# HELP threadline_export_latency_seconds Export latency.\n"
            "# TYPE threadline_export_latency_seconds histogram\n"
            "threadline_export_latency_seconds_bucket{protocol=\"grpc\",le=\"0.005\"} 1\n"
            "threadline_export_latency_seconds_bucket{protocol=\"grpc\",le=\"0.25\"} 2\n"
            "threadline_export_latency_seconds_bucket{protocol=\"grpc\",le=\"1\"} 2\n"
            "threadline_export_latency_seconds_bucket{protocol=\"grpc\",le=\"+Inf\"} 3\n"
            "threadline_export_latency_seconds_sum{protocol=\"grpc\"} 7.25390625\n"
            "threadline_export_latency_seconds_count{protocol=\"grpc\"} 3\n"
            "# HELP threadline_export_queue_depth Spans waiting.\n"
            "# TYPE threadline_export_queue_depth gauge\n"
            "threadline_export_queue_depth -2\n"
            "# HELP threadline_spans_dropped_total Spans dropped.\n"
            "# TYPE threadline_spans_dropped_total counter\n"
            "threadline_spans_dropped_total{reason=\"export_failed\"} 1\n"
            "threadline_spans_dropped_total{reason=\"queue_full\"} 3\n");
}

// Both formats of one registry with an exemplar: the plain text is exactly what it was without
// exemplars; OpenMetrics names counter families without _total, puts TYPE first, writes le in
// the canonical form, floats with a point, the exemplar on its bucket and # EOF at the end.
TEST(OpenMetricsText, ExactRenderingWithExemplars) {
  MetricsRegistry m;
  m.GetCounter("threadline_spans_exported_total", {}, "Spans exported.").Add(3);
  m.GetCounter("x").Add(1);  // a counter registered without _total gets it on its sample
  m.GetGauge("threadline_export_queue_limit", {}, "Queue size.").Set(2048);
  Histogram& h = m.GetHistogram("http_server_request_duration_seconds", {{"http_route", "/a"}},
                                {0.005, 0.25, 1, 30}, "Duration.");
  h.Observe(0.00390625);  // 2^-8: the sum below is exact
  Exemplar e;
  for (uint8_t i = 0; i < 16; ++i) e.trace_id[i] = static_cast<uint8_t>(0x10 + i);
  for (uint8_t i = 0; i < 8; ++i) e.span_id[i] = static_cast<uint8_t>(0xa0 + i);
  e.value = 0.125;
  e.time_unix_ns = 1700000000'012345678;
  h.ObserveWithExemplar(e);
  e.value = 2;  // in le=30.0, written with a point
  h.ObserveWithExemplar(e);
  const std::string plain = RenderPrometheusText(m);
  EXPECT_THAT(plain, HasSubstr("http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"0.25\"} 2\n"));
  EXPECT_THAT(plain, HasSubstr("le=\"1\"} 2\n"));
  EXPECT_EQ(plain.find(" # {"), std::string::npos) << "no exemplar in the plain text";
  EXPECT_EQ(plain.find("# EOF"), std::string::npos);
  EXPECT_EQ(RenderOpenMetricsText(m),
            "# TYPE http_server_request_duration_seconds histogram\n"
            "# HELP http_server_request_duration_seconds Duration.\n"
            "http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"0.005\"} 1\n"
            "http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"0.25\"} 2"
            " # {trace_id=\"101112131415161718191a1b1c1d1e1f\",span_id=\"a0a1a2a3a4a5a6a7\"} 0.125 1700000000.012345678\n"
            "http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"1.0\"} 2\n"
            "http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"30.0\"} 3"
            " # {trace_id=\"101112131415161718191a1b1c1d1e1f\",span_id=\"a0a1a2a3a4a5a6a7\"} 2.0 1700000000.012345678\n"
            "http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"+Inf\"} 3\n"
            "http_server_request_duration_seconds_sum{http_route=\"/a\"} 2.12890625\n"
            "http_server_request_duration_seconds_count{http_route=\"/a\"} 3\n"
            "# TYPE threadline_export_queue_limit gauge\n"
            "# HELP threadline_export_queue_limit Queue size.\n"
            "threadline_export_queue_limit 2048\n"
            "# TYPE threadline_spans_exported counter\n"
            "# HELP threadline_spans_exported Spans exported.\n"
            "threadline_spans_exported_total 3\n"
            "# TYPE x counter\n"
            "x_total 1\n"
            "# EOF\n");
  EXPECT_EQ(RenderOpenMetricsText(MetricsRegistry()), "# EOF\n");
}

TEST(OpenMetricsText, CanonicalBoundsAsTheSpecificationListsThem) {
  // The examples of the OpenMetrics specification's "Canonical Numbers".
  const std::vector<std::pair<double, std::string>> cases = {
      {0.0, "0.0"}, {0.001, "0.001"}, {0.002, "0.002"}, {0.01, "0.01"}, {0.1, "0.1"}, {0.9, "0.9"},
      {0.95, "0.95"}, {0.99, "0.99"}, {0.999, "0.999"}, {1.0, "1.0"}, {1.7, "1.7"}, {10.0, "10.0"},
      {1e-10, "1e-10"}, {1e-9, "1e-09"}, {1e-5, "1e-05"}, {1e-4, "0.0001"}, {100000.0, "100000.0"},
      {1e6, "1e+06"}, {1e10, "1e+10"}, {0.0025, "0.0025"}, {2.5, "2.5"}, {30, "30.0"}, {-2, "-2.0"},
      {1234567, "1.234567e+06"}, {std::numeric_limits<double>::infinity(), "+Inf"}};
  for (const auto& [v, want] : cases) EXPECT_EQ(FormatOpenMetricsCanonical(v), want) << v;
  for (double b : DefaultLatencyBuckets()) EXPECT_EQ(std::stod(FormatOpenMetricsCanonical(b)), b);
}

TEST(OpenMetricsText, NegotiatedFromTheAcceptHeader) {
  using F = ExpositionFormat;
  EXPECT_EQ(NegotiateExposition(""), F::kPrometheusText);
  EXPECT_EQ(NegotiateExposition("*/*"), F::kPrometheusText);
  EXPECT_EQ(NegotiateExposition("text/plain"), F::kPrometheusText);
  EXPECT_EQ(NegotiateExposition("application/openmetrics-text"), F::kOpenMetrics);
  // What Prometheus 2.x sends by default.
  EXPECT_EQ(NegotiateExposition("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                                "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            F::kOpenMetrics);
  EXPECT_EQ(NegotiateExposition("Application/OpenMetrics-Text; version=1.0.0; q=0.9, text/plain"),
            F::kPrometheusText);
  EXPECT_EQ(NegotiateExposition("text/plain;q=0.5, application/openmetrics-text;q=0.6"), F::kOpenMetrics);
  EXPECT_EQ(NegotiateExposition("application/openmetrics-text;q=0"), F::kPrometheusText);
  EXPECT_EQ(NegotiateExposition("application/openmetrics-text;q=bogus"), F::kPrometheusText);
  EXPECT_EQ(NegotiateExposition("application/json"), F::kPrometheusText);
}

TEST(Histogram, ExemplarsOnePerBucketTheLatestWins) {
  Histogram h({0.1, 1});
  EXPECT_TRUE(h.Read().exemplars.empty());
  Exemplar a;
  a.value = 0.5;
  a.time_unix_ns = 1;
  Exemplar b = a;
  b.value = 0.7;
  b.time_unix_ns = 2;
  Exemplar c = a;
  c.value = 5;
  c.time_unix_ns = 3;
  h.ObserveWithExemplar(a);
  h.ObserveWithExemplar(b);
  h.SetExemplar(c);  // an exemplar for a span observed before: not counted again
  Histogram::Data d = h.Read();
  EXPECT_EQ(d.count, 2u);
  ASSERT_EQ(d.exemplars.size(), 3u);
  EXPECT_EQ(d.exemplars[0].time_unix_ns, 0u);  // none in le=0.1
  EXPECT_EQ(d.exemplars[1], b);
  EXPECT_EQ(d.exemplars[2], c);
}

TEST(PrometheusText, NumbersAndTypeClashes) {
  EXPECT_EQ(FormatPrometheusNumber(0.1), "0.1");
  EXPECT_EQ(FormatPrometheusNumber(1e-9), "1e-09");
  EXPECT_EQ(FormatPrometheusNumber(30), "30");
  EXPECT_EQ(FormatPrometheusNumber(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatPrometheusNumber(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatPrometheusNumber(std::nan("")), "NaN");
  MetricsRegistry m;
  m.GetCounter("x").Add(1);
  m.GetGauge("x").Set(5);  // the same name as another type: left out
  EXPECT_EQ(RenderPrometheusText(m), "# TYPE x counter\nx 1\n");
  EXPECT_EQ(RenderPrometheusText(MetricsRegistry()), "");
}

// ---- the HTTP endpoint ---------------------------------------------------------------------

size_t Collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct HttpAnswer {
  long status = 0;
  std::string body;
  std::string content_type;
};

HttpAnswer Fetch(const std::string& url, bool post = false, const std::string& accept = "") {
  HttpAnswer a;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> c(curl_easy_init(), &curl_easy_cleanup);
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(nullptr, &curl_slist_free_all);
  if (!accept.empty()) {
    headers.reset(curl_slist_append(nullptr, ("Accept: " + accept).c_str()));
    curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, headers.get());
  }
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &a.body);
  curl_easy_setopt(c.get(), CURLOPT_TIMEOUT_MS, 5000L);
  if (post) curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, "x=1");
  if (curl_easy_perform(c.get()) != CURLE_OK) return a;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &a.status);
  char* ct = nullptr;
  curl_easy_getinfo(c.get(), CURLINFO_CONTENT_TYPE, &ct);
  if (ct != nullptr) a.content_type = ct;
  return a;
}

TEST(MetricsServer, ServesMetricsAndHealth) {
  MetricsRegistry m;
  m.GetCounter("threadline_spans_exported_total", {}, "Spans exported.").Add(42);
  auto server = MetricsServer::Start("127.0.0.1:0", m);
  ASSERT_TRUE(server.ok()) << server.error().message;
  const uint16_t port = (*server)->port();
  ASSERT_NE(port, 0);
  EXPECT_EQ((*server)->bound_address(), "127.0.0.1:" + std::to_string(port));
  const std::string base = "http://127.0.0.1:" + std::to_string(port);

  HttpAnswer metrics = Fetch(base + "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(metrics.body, RenderPrometheusText(m));
  EXPECT_THAT(metrics.body, HasSubstr("threadline_spans_exported_total 42\n"));
  m.GetCounter("threadline_spans_exported_total").Add(1);  // a scrape sees live values
  EXPECT_THAT(Fetch(base + "/metrics").body, HasSubstr("threadline_spans_exported_total 43\n"));

  // A scraper that asks for OpenMetrics gets it; one that prefers the text gets the text.
  HttpAnswer om = Fetch(base + "/metrics", false, "application/openmetrics-text;version=1.0.0,text/plain;q=0.5");
  EXPECT_EQ(om.status, 200);
  EXPECT_EQ(om.content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
  EXPECT_EQ(om.body, RenderOpenMetricsText(m));
  EXPECT_THAT(om.body, HasSubstr("threadline_spans_exported_total 43\n# EOF\n"));
  EXPECT_EQ(Fetch(base + "/metrics", false, "text/plain, application/openmetrics-text;q=0.5").content_type,
            "text/plain; version=0.0.4; charset=utf-8");

  HttpAnswer health = Fetch(base + "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  EXPECT_EQ(Fetch(base + "/nope").status, 404);
  EXPECT_EQ(Fetch(base + "/metrics", /*post=*/true).status, 405);

  (*server)->Stop();
  EXPECT_EQ(Fetch(base + "/healthz").status, 0);  // connection refused
}

TEST(MetricsServer, ReportsWhyItCannotListen) {
  MetricsRegistry m;
  auto first = MetricsServer::Start("127.0.0.1:0", m);
  ASSERT_TRUE(first.ok());
  auto second = MetricsServer::Start("127.0.0.1:" + std::to_string((*first)->port()), m);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.error().message, HasSubstr("cannot bind 127.0.0.1:"));
  EXPECT_THAT(second.error().message, HasSubstr("in use"));
  EXPECT_FALSE(MetricsServer::Start("9464", m).ok());
  EXPECT_FALSE(MetricsServer::Start("127.0.0.1:99999", m).ok());
  auto v6 = MetricsServer::Start("[::1]:0", m);
  if (v6.ok()) {  // no IPv6 on this machine: fine
    EXPECT_THAT((*v6)->bound_address(), HasSubstr("[::1]:"));
  }
}

}  // namespace
}  // namespace threadline
