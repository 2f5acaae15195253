// --output=console: tree shape and ordering, orphans, parent cycles, the quiet windows with a
// fake clock, the bounds on what is held, and Flush().
#include "agent/output/console_tree.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace threadline {
namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kT0 = 1700000000000000000ULL;

TraceId Trace(uint8_t n) {
  TraceId t;
  t.bytes[0] = 0xab;
  t.bytes[15] = n;
  return t;
}
SpanId Id(uint8_t n) {
  SpanId s;
  if (n) s.bytes[7] = n;
  return s;
}

std::shared_ptr<const Resource> Service(std::string name) {
  return std::make_shared<const Resource>(Resource{.attributes = {{"service.name", std::move(name)}}});
}

Span MakeSpan(uint8_t trace, uint8_t id, uint8_t parent, std::string name, uint64_t start_ms,
              uint64_t dur_us, SpanKind kind = SpanKind::kServer,
              std::shared_ptr<const Resource> r = Service("svc")) {
  Span s;
  s.trace_id = Trace(trace);
  s.span_id = Id(id);
  s.parent_span_id = Id(parent);
  s.name = std::move(name);
  s.kind = kind;
  s.start_unix_ns = kT0 + start_ms * kMs;
  s.end_unix_ns = s.start_unix_ns + dur_us * 1000;
  s.resource = std::move(r);
  return s;
}

TEST(ConsoleTreeTest, FormatsDurations) {
  EXPECT_EQ(ConsoleTreeSink::FormatDuration(0), "0.0\xc2\xb5s");
  EXPECT_EQ(ConsoleTreeSink::FormatDuration(850'500), "850.5\xc2\xb5s");
  EXPECT_EQ(ConsoleTreeSink::FormatDuration(12'345'678), "12.3ms");
  EXPECT_EQ(ConsoleTreeSink::FormatDuration(1'250'000'000), "1.25s");
}

TEST(ConsoleTreeTest, RendersTreeWithChildrenByStartTime) {
  Span root = MakeSpan(1, 1, 0, "GET /users", 0, 12'300, SpanKind::kServer, Service("frontend"));
  root.attributes = {{"http.request.method", std::string("GET")},
                     {"url.path", std::string("/users")},
                     {"http.response.status_code", int64_t{200}}};
  Span second = MakeSpan(1, 2, 1, "GET", 5, 2'000, SpanKind::kClient, Service("frontend"));
  Span first = MakeSpan(1, 3, 1, "SELECT", 1, 850, SpanKind::kClient, Service("frontend"));
  Span grandchild = MakeSpan(1, 4, 2, "GET /api", 6, 1'500, SpanKind::kServer, Service("backend"));
  grandchild.status = StatusCode::kError;
  grandchild.status_message = "bad\ngateway";
  grandchild.attributes = {{"http.response.status_code", int64_t{502}}, {"url.path", std::string("/api")}};
  // Arrival order: children end first.
  const std::vector<Span> spans = {grandchild, second, first, root};
  EXPECT_EQ(ConsoleTreeSink::RenderTrace(spans),
            "trace ab000000000000000000000000000001 (4 spans)\n"
            "  GET /users [SERVER] frontend 12.3ms UNSET http.response.status_code=200 url.path=/users\n"
            "    SELECT [CLIENT] frontend 850.0\xc2\xb5s UNSET\n"
            "    GET [CLIENT] frontend 2.0ms UNSET\n"
            "      GET /api [SERVER] backend 1.5ms ERROR \"bad?gateway\" http.response.status_code=502 url.path=/api\n");
}

TEST(ConsoleTreeTest, OrphansArePrintedAsRootsWithTheirParentId) {
  Span root = MakeSpan(1, 1, 0, "root", 10, 100);
  Span orphan_early = MakeSpan(1, 2, 9, "early orphan", 5, 100);  // parent 9 never seen
  Span orphan_child = MakeSpan(1, 3, 2, "child of orphan", 6, 10, SpanKind::kClient, nullptr);
  const std::vector<Span> spans = {root, orphan_child, orphan_early};
  EXPECT_EQ(ConsoleTreeSink::RenderTrace(spans),
            "trace ab000000000000000000000000000001 (3 spans)\n"
            "  early orphan [SERVER] svc 100.0\xc2\xb5s UNSET (parent 0000000000000009 not seen)\n"
            "    child of orphan [CLIENT] unknown_service 10.0\xc2\xb5s UNSET\n"
            "  root [SERVER] svc 100.0\xc2\xb5s UNSET\n");
}

TEST(ConsoleTreeTest, ParentCyclesAndSelfParentsDoNotHang) {
  const std::vector<Span> spans = {MakeSpan(1, 1, 2, "a", 0, 1), MakeSpan(1, 2, 1, "b", 1, 1),
                                   MakeSpan(1, 3, 3, "self", 2, 1)};
  const std::string text = ConsoleTreeSink::RenderTrace(spans);
  EXPECT_EQ(text,
            "trace ab000000000000000000000000000001 (3 spans)\n"
            "  self [SERVER] svc 1.0\xc2\xb5s UNSET (parent 0000000000000003 not seen)\n"
            "  a [SERVER] svc 1.0\xc2\xb5s UNSET (parent 0000000000000002 not seen)\n"
            "    b [SERVER] svc 1.0\xc2\xb5s UNSET\n");
}

class MemFile {
 public:
  MemFile() : f_(open_memstream(&buf_, &size_)) {}
  ~MemFile() {
    std::fclose(f_);
    std::free(buf_);
  }
  std::FILE* get() { return f_; }
  std::string text() {
    std::fflush(f_);
    return std::string(buf_, size_);
  }

 private:
  char* buf_ = nullptr;
  size_t size_ = 0;
  std::FILE* f_;
};

class ConsoleTreeSinkTest : public ::testing::Test {
 protected:
  void Make(ConsoleTreeOptions options = {}) {
    sink_ = std::make_unique<ConsoleTreeSink>(file_.get(), options, [this] { return now_; }, metrics_);
  }
  uint64_t Printed(const std::string& reason) {
    return metrics_.GetCounter("threadline_console_traces_printed_total", {{"reason", reason}}).Value();
  }
  // Trace ids (last byte) in the order their trees were printed.
  std::vector<int> PrintedTraces() {
    std::vector<int> out;
    const std::string text = file_.text();
    size_t pos = 0;
    while ((pos = text.find("trace ab", pos)) != std::string::npos) {
      out.push_back(std::stoi(text.substr(pos + 6 + 30, 2), nullptr, 16));
      pos += 8;
    }
    return out;
  }

  MetricsRegistry metrics_;
  MemFile file_;
  uint64_t now_ = 1'000 * kMs;
  std::unique_ptr<ConsoleTreeSink> sink_;
};

TEST_F(ConsoleTreeSinkTest, PrintsATraceOnceItHasBeenQuietForTheWindow) {
  Make();
  sink_->OnSpan(MakeSpan(1, 2, 1, "child", 1, 10));
  now_ += 600 * kMs;
  sink_->OnSpan(MakeSpan(1, 3, 1, "child2", 2, 10));  // restarts the window
  now_ += 999 * kMs;
  sink_->Poll();
  EXPECT_EQ(file_.text(), "");
  EXPECT_EQ(sink_->held_spans(), 2u);
  now_ += 1 * kMs;
  sink_->Poll();
  EXPECT_EQ(PrintedTraces(), std::vector<int>{1});
  EXPECT_NE(file_.text().find("(2 spans)"), std::string::npos);
  EXPECT_EQ(sink_->held_traces(), 0u);
  EXPECT_EQ(sink_->held_spans(), 0u);
  EXPECT_EQ(Printed("quiet"), 1u);
}

TEST_F(ConsoleTreeSinkTest, ARootSpanShortensTheWindow) {
  Make();
  sink_->OnSpan(MakeSpan(1, 2, 1, "child", 1, 10));
  now_ += 10 * kMs;
  sink_->OnSpan(MakeSpan(1, 1, 0, "root", 0, 100));
  sink_->OnSpan(MakeSpan(2, 5, 4, "other trace, no root", 0, 100));
  now_ += 199 * kMs;
  sink_->Poll();
  EXPECT_EQ(file_.text(), "");
  now_ += 1 * kMs;
  sink_->Poll();
  EXPECT_EQ(PrintedTraces(), std::vector<int>{1});
  // A late span of trace 1 starts a new entry, printed alone later with its parent marked.
  sink_->OnSpan(MakeSpan(1, 6, 1, "late", 3, 1));
  now_ += 800 * kMs;  // trace 2 has been quiet 1 s now; the late span 800 ms
  sink_->Poll();
  EXPECT_EQ(PrintedTraces(), (std::vector<int>{1, 2}));
  now_ += 200 * kMs;
  sink_->Poll();
  EXPECT_EQ(PrintedTraces(), (std::vector<int>{1, 2, 1}));
  EXPECT_NE(file_.text().find("late [SERVER] svc 1.0\xc2\xb5s UNSET (parent 0000000000000001 not seen)"),
            std::string::npos);
}

TEST_F(ConsoleTreeSinkTest, DueTracesArePrintedFromOnSpanToo) {
  Make();
  sink_->OnSpan(MakeSpan(1, 1, 0, "root", 0, 1));
  now_ += 300 * kMs;
  sink_->OnSpan(MakeSpan(2, 1, 0, "root", 0, 1));
  EXPECT_EQ(PrintedTraces(), std::vector<int>{1});
}

TEST_F(ConsoleTreeSinkTest, MaxTracesPrintsTheOldestEarly) {
  Make({.max_traces = 2});
  sink_->OnSpan(MakeSpan(1, 2, 1, "a", 0, 1));
  now_ += 1 * kMs;
  sink_->OnSpan(MakeSpan(2, 2, 1, "b", 0, 1));
  now_ += 1 * kMs;
  sink_->OnSpan(MakeSpan(1, 3, 1, "a2", 0, 1));  // trace 1 is now the most recent
  sink_->OnSpan(MakeSpan(3, 2, 1, "c", 0, 1));
  EXPECT_EQ(PrintedTraces(), std::vector<int>{2});
  EXPECT_EQ(sink_->held_traces(), 2u);
  EXPECT_EQ(Printed("max_traces"), 1u);
}

TEST_F(ConsoleTreeSinkTest, MaxSpansPrintsOldestTracesUntilUnderTheBound) {
  Make({.max_spans = 3});
  sink_->OnSpan(MakeSpan(1, 2, 1, "a", 0, 1));
  sink_->OnSpan(MakeSpan(2, 2, 1, "b", 0, 1));
  sink_->OnSpan(MakeSpan(2, 3, 1, "b2", 0, 1));
  EXPECT_EQ(file_.text(), "");
  sink_->OnSpan(MakeSpan(3, 2, 1, "c", 0, 1));
  EXPECT_EQ(PrintedTraces(), std::vector<int>{1});
  EXPECT_EQ(sink_->held_spans(), 3u);
  // A trace that alone exceeds the bound is printed rather than held without limit.
  for (uint8_t i = 10; i < 14; ++i) sink_->OnSpan(MakeSpan(4, i, 1, "d", 0, 1));
  EXPECT_LE(sink_->held_spans(), 3u);
  EXPECT_EQ(Printed("max_spans"), 4u);  // traces 1, 2, 3, then 4 itself
}

TEST_F(ConsoleTreeSinkTest, FlushPrintsEverythingOldestFirst) {
  Make();
  sink_->OnSpan(MakeSpan(2, 2, 1, "b", 0, 1));
  sink_->OnSpan(MakeSpan(1, 2, 1, "a", 0, 1));
  sink_->OnSpan(MakeSpan(2, 3, 1, "b2", 0, 1));
  sink_->Flush();
  EXPECT_EQ(PrintedTraces(), (std::vector<int>{1, 2}));
  EXPECT_EQ(sink_->held_traces(), 0u);
  EXPECT_EQ(Printed("flush"), 2u);
  sink_->Flush();
  EXPECT_EQ(PrintedTraces(), (std::vector<int>{1, 2}));
}

}  // namespace
}  // namespace threadline
