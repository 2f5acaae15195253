// The agent's span pipeline for HTTP/1 unit tests (agent/app/agent.cpp's wiring): connection
// table -> dispatcher -> span builder -> RED metrics -> sampled filter -> output, fed with
// generated kernel events (conn_test_util.h), with a tap after the builder.
#pragma once

#include <unistd.h>

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

namespace threadline::http_test {

using conn_test::EventGenerator;
using conn_test::MockClock;

struct Collect : SpanSink {
  std::vector<Span> spans;
  void OnSpan(Span&& s) override { spans.push_back(std::move(s)); }
};

// Records every span the builder emits, then passes it on.
struct Tap : SpanSink {
  explicit Tap(SpanSink& next) : next(next) {}
  void OnSpan(Span&& s) override {
    spans.push_back(s);
    next.OnSpan(std::move(s));
  }
  std::vector<Span> spans;
  SpanSink& next;
};

inline SpanBuilderConfig ConfigWithRatio(double ratio) {
  SpanBuilderConfig c;
  c.sampling_ratio = ratio;
  c.parents.same_node_linking = false;  // one process here; nothing to link
  return c;
}

// The agent's wiring (agent/app/agent.cpp): builder -> RED metrics -> sampled filter -> output,
// with a tap after the builder.
struct SampledPipeline {
  explicit SampledPipeline(double ratio)
      : resources(ResourceCacheOptions{}, metrics),
        filter(out, metrics),
        red(filter, metrics),
        tap(red),
        builder(ConfigWithRatio(ratio), resources, boot_clock, tap, metrics),
        dispatcher(DispatcherConfig{}, builder, metrics),
        table(ConnectionTableConfig{}, dispatcher, metrics, nullptr),
        gen(clock) {}

  ConnId Open(Role role) {
    ConnId id = gen.NewId(pid, next_fd++);
    table.OnConnOpen(gen.Open(id, role, role == Role::kServer ? ConnSource::kAccept : ConnSource::kConnect));
    return id;
  }
  // The kernel's ids for the request whose bytes come next on `id` (agent: OnTraceContext).
  void KernelIds(const ConnId& id, uint8_t kind, const std::string& trace_hex, uint8_t trace_flags,
                 bool has_parent) {
    TraceCtxEvent e;
    e.id = id;
    e.tid = id.tgid;
    e.enter_ts_ns = clock.now();  // the next data event's entry
    e.direction = kind == TL_CTX_SERVER ? Direction::kIngress : Direction::kEgress;
    e.pos = gen.PosOf(id, e.direction);  // its first byte's stream position
    e.trace_id = TraceIdFromHex(trace_hex)->bytes;
    e.span_id = SpanId::Random().bytes;
    if (has_parent) e.parent_span_id = SpanId::Random().bytes;
    e.kind = kind;
    e.flags = has_parent ? TL_CTX_F_HAS_PARENT : 0;
    e.trace_flags = trace_flags;
    builder.OnKernelTraceContext(e);
  }
  // `ctx_tag`: the kernel's context verdict on the request (bpf/capture/ctx.bpf.h).
  void ServerRequest(const ConnId& id, const std::string& path, const std::string& headers = "",
                     uint32_t ctx_tag = 0) {
    DataEvent e = gen.Data(id, Direction::kIngress, "GET " + path + " HTTP/1.1\r\nHost: a\r\n" + headers + "\r\n");
    e.ctx_tag = ctx_tag;
    table.OnData(e);
  }
  void ServerResponse(const ConnId& id) { table.OnData(gen.Data(id, Direction::kEgress, kResponse)); }
  void ClientRequest(const ConnId& id, const std::string& path, const std::string& headers = "",
                     uint32_t ctx_tag = 0) {
    DataEvent e = gen.Data(id, Direction::kEgress, "GET " + path + " HTTP/1.1\r\nHost: b\r\n" + headers + "\r\n");
    e.ctx_tag = ctx_tag;
    table.OnData(e);
  }
  void ClientResponse(const ConnId& id) { table.OnData(gen.Data(id, Direction::kIngress, kResponse)); }

  uint64_t RedCount(const std::string& name) const {
    uint64_t n = 0;
    for (const auto& h : metrics.SnapshotAll().histograms)
      if (h.name == name) n += h.data.count;
    return n;
  }
  uint64_t NotSampled() {
    return metrics.GetCounter("threadline_spans_dropped_total", {{"reason", "not_sampled"}}).Value();
  }

  static constexpr const char* kResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  const uint32_t pid = static_cast<uint32_t>(getpid());
  int32_t next_fd = 5;
  MetricsRegistry metrics;
  BootClock boot_clock;
  Collect out;
  ResourceCache resources;
  SampledSpanFilter filter;
  RedMetricsSink red;
  Tap tap;
  SpanBuilder builder;
  ProtocolDispatcher dispatcher;
  ConnectionTable table;
  MockClock clock;
  EventGenerator gen;
};

inline std::string SourceOf(const Span& s) {
  const AttributeValue* v = FindAttribute(s.attributes, "threadline.parent.source");
  return v ? std::get<std::string>(*v) : "";
}

}  // namespace threadline::http_test
