#include "agent/app/cpu_budget.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

namespace threadline {

namespace {

double Quantize(double f) {
  f = std::round(std::clamp(f, 0.0, 1.0) / CpuBudgetController::kResolution) * CpuBudgetController::kResolution;
  return std::clamp(f, 0.0, 1.0);
}

std::string Describe(const char* what, const CpuBudgetSample& s, double budget) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%s (agent CPU %.3f cores, budget %.3f, ring drops %llu)", what, s.cpu_cores,
                budget, static_cast<unsigned long long>(s.ring_drops));
  return buf;
}

}  // namespace

bool CpuBudgetController::Tick(const CpuBudgetSample& sample) {
  if (s_.budget_cores <= 0) return false;
  const double budget = s_.budget_cores;
  const bool dropped = sample.ring_drops > 0;
  const bool over = sample.cpu_cores > budget;
  const bool calm = !dropped && sample.cpu_cores < s_.low_water * budget;
  over_run_ = over ? over_run_ + 1 : 0;
  calm_run_ = calm ? calm_run_ + 1 : 0;

  const double kept = 1.0 - fraction_;
  // The share of the traced load that would bring usage to target*budget (cost ~ traced share).
  const double fit = sample.cpu_cores > 0 ? s_.target * budget / sample.cpu_cores : 2.0;
  double next_kept = kept;
  const char* why = nullptr;
  if (dropped) {
    next_kept = kept * std::min(kDropKeep, over ? std::max(fit, 0.25) : 1.0);
    why = "ring buffer full";
  } else if (over_run_ >= s_.over_ticks) {
    next_kept = kept * std::clamp(fit, 0.25, 0.9);
    why = "over CPU budget";
  } else if (calm_run_ >= s_.calm_ticks && fraction_ > 0) {
    // At most 2x, or +0.25 where the estimate allows that much: a blind +0.25 from a small
    // kept share (2.6% -> 27.6%) multiplied the traced load by 10 at once, and with keep-alive
    // connections resumed at their next request (bpf/capture/shed_turn.bpf.h) that load is back
    // within the tick, over budget again. From nothing kept there is no estimate: +0.25.
    const double allowed = kept > 0 ? kept * fit : 0.25;
    next_kept = std::min(1.0, std::max(kept * std::min(fit, 2.0), std::min(kept + 0.25, allowed)));
    why = "under CPU budget";
  }
  if (!why) return false;
  double next = Quantize(1.0 - next_kept);
  if (next < 0.01) next = 0;  // the last sliver is not worth a log line a tick
  over_run_ = calm_run_ = 0;  // the next decision waits for measurements under the new fraction
  if (next == fraction_) return false;
  fraction_ = next;
  reason_ = Describe(why, sample, budget);
  return true;
}

double ProcessCpuSeconds() {
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  auto seconds = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return seconds(ru.ru_utime) + seconds(ru.ru_stime);
}

bool BpfRunTimeStatsEnabled() {
  std::ifstream f("/proc/sys/kernel/bpf_stats_enabled");
  int v = 0;
  return f >> v && v != 0;
}

}  // namespace threadline
