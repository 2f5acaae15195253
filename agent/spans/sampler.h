// Head sampling of new traces: OpenTelemetry's consistent probability sampling form of
// TraceIdRatioBased (specification: trace/tracestate-probability-sampling). The randomness R is
// the trace id's 56 rightmost bits (bytes 9..15, big-endian: the last 14 hex digits); the
// threshold is T = round((1 - ratio) * 2^56); a trace is kept iff R >= T. Ratio 1 gives T = 0
// (every trace), ratio 0 gives T = 2^56 (none: R < 2^56).
//
// Only roots are decided here. A span with a parent (traceparent header, the thread's server
// span, the client span at the other end of the connection, ids the kernel chose with a
// parent) takes the parent's sampled flag: the decision is made once per trace, where it
// starts, and travels in the traceparent flags, so every agent and SDK downstream agrees.
//
// The kernel applies the same rule to the roots it starts when traceparent injection is on
// (bpf/inject/ids.bpf.h, sample__flags): the agent computes T here and sets it as the
// `sample_threshold` rodata of both BPF objects, so the one comparison R >= T is all that is
// written twice, and tests/kernel/sampling_test.cpp checks the two agree on real requests.
#pragma once

#include <cstdint>

#include "agent/spans/span.h"

namespace threadline {

class TraceIdRatioSampler {
 public:
  static constexpr int kRandomnessBits = 56;
  static constexpr uint64_t kThresholdNone = uint64_t{1} << kRandomnessBits;  // keeps nothing

  // `ratio` outside [0, 1] (or NaN) is clamped (NaN: 1); the configuration rejects such values.
  explicit TraceIdRatioSampler(double ratio = 1.0);

  // T = round((1 - ratio) * 2^56), in [0, 2^56].
  static uint64_t ThresholdFor(double ratio);
  // R: the trace id's 56 rightmost bits.
  static uint64_t Randomness(const TraceId& id) {
    uint64_t r = 0;
    for (int i = 16 - kRandomnessBits / 8; i < 16; ++i) r = (r << 8) | id.bytes[i];
    return r;
  }

  double ratio() const { return ratio_; }
  uint64_t threshold() const { return threshold_; }
  bool keeps_all() const { return threshold_ == 0; }

  bool Sampled(const TraceId& id) const { return Randomness(id) >= threshold_; }
  // W3C trace-flags for a new trace with this id: kTraceFlagSampled or 0.
  uint32_t FlagsFor(const TraceId& id) const { return Sampled(id) ? kTraceFlagSampled : 0; }

 private:
  double ratio_;
  uint64_t threshold_;
};

}  // namespace threadline
