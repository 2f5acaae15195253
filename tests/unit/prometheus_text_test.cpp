// Histogram buckets, the registry's full snapshot, the Prometheus text rendering (exact text),
// and the /metrics + /healthz endpoint over real HTTP (libcurl as the client).
#include "exporter/prometheus_text.h"

#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
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

HttpAnswer Fetch(const std::string& url, bool post = false) {
  HttpAnswer a;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> c(curl_easy_init(), &curl_easy_cleanup);
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
