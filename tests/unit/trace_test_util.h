// Spans for the tests of the trace view's parts (API, OTLP JSON reader): a three-service
// trace, a slower one with an error, and a one-span health check.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "agent/spans/span.h"

namespace threadline::trace_test {

inline constexpr uint64_t kUs = 1000;
inline constexpr uint64_t kT0 = 1'700'000'000'000'000'000ULL;

inline TraceId Trace(uint8_t n) {
  TraceId t;
  t.bytes[0] = 0x4b;
  t.bytes[15] = n;
  return t;
}
inline SpanId Id(uint8_t n) {
  SpanId s;
  if (n) {
    s.bytes[0] = 0x0f;
    s.bytes[7] = n;
  }
  return s;
}

inline std::shared_ptr<const Resource> Service(const std::string& name) {
  return std::make_shared<const Resource>(
      Resource{.attributes = {{"service.name", name}, {"process.pid", int64_t{4242}}}});
}

inline Span MakeSpan(uint8_t trace, uint8_t id, uint8_t parent, const std::string& service, const std::string& name,
              SpanKind kind, uint64_t start_us, uint64_t end_us, StatusCode status = StatusCode::kUnset) {
  Span s;
  s.trace_id = Trace(trace);
  s.span_id = Id(id);
  s.parent_span_id = Id(parent);
  s.name = name;
  s.kind = kind;
  s.start_unix_ns = kT0 + start_us * kUs;
  s.end_unix_ns = kT0 + end_us * kUs;
  s.status = status;
  s.resource = Service(service);
  s.attributes = {{"threadline.parent.source", std::string(parent ? "tuple" : "root")},
                  {"http.response.status_code", int64_t{status == StatusCode::kError ? 500 : 200}},
                  {"http.route", std::string(name.substr(name.find(' ') + 1))}};
  return s;
}

// frontend -> cart (SERVER via CLIENT) and a second, slower trace with an error.
inline std::vector<Span> ThreeServiceTraces() {
  return {
      MakeSpan(1, 1, 0, "frontend", "GET /checkout", SpanKind::kServer, 0, 100),
      MakeSpan(1, 2, 1, "frontend", "GET", SpanKind::kClient, 10, 90),
      MakeSpan(1, 3, 2, "cart", "GET /cart", SpanKind::kServer, 20, 80),
      MakeSpan(1, 4, 3, "cart", "GET", SpanKind::kClient, 30, 70),
      MakeSpan(1, 5, 4, "prices", "GET /prices", SpanKind::kServer, 35, 65),
      MakeSpan(2, 1, 0, "frontend", "GET /checkout", SpanKind::kServer, 1000, 1300, StatusCode::kError),
      MakeSpan(2, 2, 1, "frontend", "GET", SpanKind::kClient, 1010, 1290),
      MakeSpan(2, 3, 2, "cart", "GET /cart", SpanKind::kServer, 1020, 1280, StatusCode::kError),
      MakeSpan(3, 1, 0, "cart", "GET /health", SpanKind::kServer, 2000, 2001),
  };
}

}  // namespace threadline::trace_test
