#include "agent/spans/sampler.h"

#include <cmath>

namespace threadline {

namespace {
double Clamp(double ratio) {
  if (std::isnan(ratio)) return 1.0;
  return ratio < 0.0 ? 0.0 : (ratio > 1.0 ? 1.0 : ratio);
}
}  // namespace

TraceIdRatioSampler::TraceIdRatioSampler(double ratio)
    : ratio_(Clamp(ratio)), threshold_(ThresholdFor(ratio_)) {}

uint64_t TraceIdRatioSampler::ThresholdFor(double ratio) {
  ratio = Clamp(ratio);
  // 2^56 - round(ratio * 2^56) is round((1 - ratio) * 2^56) without the rounding error of
  // 1 - ratio: scaling by a power of two is exact, so a ratio of 2^-40 still keeps 2^16 of
  // every 2^56 trace ids.
  const double kept = std::round(std::ldexp(ratio, kRandomnessBits));
  return kThresholdNone - static_cast<uint64_t>(kept);
}

}  // namespace threadline
