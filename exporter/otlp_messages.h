// The generated OTLP message classes (exporter/proto/), under short names. The exporter sends
// bytes written by otlp_protobuf.h and uses these only to read a receiver's small answers; the
// tests use them to decode what we send.
#pragma once

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace threadline::otlp_pb {
namespace common = ::opentelemetry::proto::common::v1;
namespace trace = ::opentelemetry::proto::trace::v1;
namespace collector = ::opentelemetry::proto::collector::trace::v1;
}  // namespace threadline::otlp_pb
