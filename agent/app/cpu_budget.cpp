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
  char buf[256];
  int n = std::snprintf(buf, sizeof(buf), "%s (agent CPU %.3f cores, budget %.3f, ring drops %llu", what,
                        s.cpu_cores, budget, static_cast<unsigned long long>(s.ring_drops));
  if (s.load_known && n > 0 && static_cast<size_t>(n) < sizeof(buf))
    n += std::snprintf(buf + n, sizeof(buf) - n, ", spans %.0f/s, shed requests %.0f/s", s.traced_per_s,
                       s.shed_per_s);
  if (n > 0 && static_cast<size_t>(n) < sizeof(buf)) std::snprintf(buf + n, sizeof(buf) - n, ")");
  return buf;
}

}  // namespace

void CpuBudgetController::Learn(const CpuBudgetSample& sample) {
  if (!sample.load_known) return;
  const double cap = 0.5 * s_.low_water * s_.budget_cores;
  if (sample.traced_per_s <= 0) {
    // Nothing traced: what the agent uses now is its floor (timers, scrapes, the kernel's shed
    // bookkeeping when BPF time is counted).
    const double f = std::min(sample.cpu_cores, cap);
    floor_ = floor_ < 0 ? f : 0.5 * floor_ + 0.5 * f;
  } else if (sample.traced_per_s >= kMinTracedPerS) {
    const double c = std::max(0.0, sample.cpu_cores - Floor()) / sample.traced_per_s;
    span_cost_ = span_cost_ > 0 ? 0.5 * span_cost_ + 0.5 * c : c;
  }
}

bool CpuBudgetController::Tick(const CpuBudgetSample& sample) {
  if (s_.budget_cores <= 0) return false;
  const double budget = s_.budget_cores;
  const bool dropped = sample.ring_drops > 0;
  const bool over = sample.cpu_cores > budget;
  const bool calm = !dropped && sample.cpu_cores < s_.low_water * budget;
  over_run_ = over ? over_run_ + 1 : 0;
  calm_run_ = calm ? calm_run_ + 1 : 0;
  ++since_cut_;
  ++since_raise_;
  Learn(sample);

  const double floor = Floor();
  const double offered = sample.load_known ? sample.traced_per_s + sample.shed_per_s : 0;
  // Shedding less goes by the most offered over the last few ticks: the counts dip for a tick
  // under a busy machine (wrk's rate halves) and a dip is not room.
  recent_offered_[recent_at_++ % recent_offered_.size()] = offered;
  const double offered_hi = std::max(offered, *std::max_element(recent_offered_.begin(), recent_offered_.end()));
  const double kept = 1.0 - fraction_;
  // What the traced share may be scaled by for usage to reach target*budget: only the part of
  // usage above the floor follows the traced share.
  const double room = std::max(s_.target * budget - floor, 0.1 * s_.target * budget);
  const double fit = sample.cpu_cores > floor ? room / (sample.cpu_cores - floor) : 8.0;
  double next_kept = kept;
  double ceiling = 2;  // no step that sheds less may keep this share or more
  const char* why = nullptr;
  bool cut = false;
  if (dropped) {
    next_kept = kept * std::min(kDropKeep, over ? std::max(fit, 0.25) : 1.0);
    why = "ring buffer full";
    cut = true;
  } else if (over_run_ >= s_.over_ticks && sample.load_known && offered < 1) {
    // Over with no request traced or shed: the CPU goes to something shedding connections does
    // not touch (process events of a busy machine, a burst of scrapes). Shedding would only lose
    // the next requests' traces, and then restore at once ("the offered load fits").
    over_run_ = 0;
  } else if (over_run_ >= s_.over_ticks) {
    next_kept = kept * std::clamp(fit, 0.25, 0.9);
    // Over after shedding less: a step that failed. Unless the load grew since, the share
    // before that step held: back there (at least).
    if (raised_since_cut_) {
      ++failed_probes_;
      const bool same_load = !sample.load_known || offered <= 1.1 * raised_load_;
      if ((same_load || since_raise_ <= s_.over_ticks + 1) && raised_from_ < kept)
        next_kept = std::max(next_kept, raised_from_);
    }
    why = "over CPU budget";
    cut = true;
  } else if (calm_run_ >= s_.calm_ticks && fraction_ > 0) {
    // The whole offered load fits (nothing offered at all: the load is gone), predicted from the
    // cost per span; under low_water, not target, for the estimate's error.
    const bool fits = sample.load_known && (offered < 1 || (span_cost_ > 0 && floor + span_cost_ * offered_hi <=
                                                                                   s_.low_water * budget));
    if (fits) {
      next_kept = 1;
      why = "under CPU budget, the offered load fits";
      ceiling_ = -1;
      failed_probes_ = 0;
    } else if (since_cut_ >= s_.calm_ticks + kHoldAfterCut) {
      if (sample.load_known && span_cost_ > 0 && offered > 0) {
        // The model: usage = floor + cost per span x the traced part of the offered load. Add
        // the share of the offered load that brings usage to target*budget, at most doubling
        // the kept share. It holds where the kept share does not say what is traced (a few
        // keep-alive connections, whole ones shed: nothing traced at a 2% kept share) and where
        // usage is mostly the floor, which does not scale with the share.
        const double load_cost = span_cost_ * offered_hi;  // cores, were all of it traced
        next_kept = std::min(kept * 2, kept + (s_.target * budget - sample.cpu_cores) / load_cost);
        if (kept <= 0) next_kept = std::min(0.25, room / load_cost);
        if (ceiling_ > 0) {
          // The share that last went over, scaled to the load now: approach it halfway, never
          // onto it; and after kMaxFailedProbes steps that went over (a granular load: the next
          // connection is somewhere in the gap, and one of them does not fit), no further, until
          // the load falls.
          // (Scaled only once the load fell by a tenth: the load's wobble would move it.)
          if (ceiling_load_ > 0 && offered_hi < 0.75 * ceiling_load_) failed_probes_ = 0;
          ceiling = ceiling_load_ > 0 && offered_hi < 0.9 * ceiling_load_
                        ? std::min(1.0, ceiling_ * ceiling_load_ / offered_hi)
                        : ceiling_;
          next_kept = failed_probes_ < kMaxFailedProbes ? std::min(next_kept, kept + (ceiling - kept) / 2) : kept;
        }
      } else {
        // No counts (or no cost learnt yet): cost ~ traced share above the floor. At most 2x, or
        // +0.25 where the estimate allows that much; from nothing kept, +0.25.
        next_kept = kept > 0 ? std::max(kept * std::min(fit, 2.0), std::min(kept + 0.25, kept * fit)) : 0.25;
      }
      if (next_kept > kept) why = "under CPU budget";
    }
  }
  if (!why) return false;
  double next = Quantize(1.0 - next_kept);
  if (next < 0.01) next = 0;  // the last sliver is not worth a log line a tick
  // A cut sheds at least one step more (1.0 included: connections hashed above 0.999 exist).
  if (cut && next <= fraction_ && fraction_ < 1) next = std::min(1.0, fraction_ + kResolution);
  if (!cut && 1.0 - next >= ceiling) return false;  // rounded onto the ceiling
  over_run_ = calm_run_ = 0;  // the next decision waits for measurements under the new fraction
  if (cut && sample.load_known) {
    // The share kept while over: restoring approaches it from below, not past it.
    double earlier = ceiling_;  // the earlier one, scaled to the load now
    if (earlier > 0 && ceiling_load_ > 0 && offered > 0) earlier *= ceiling_load_ / offered;
    ceiling_ = earlier > 0 ? std::min(earlier, kept) : kept;
    ceiling_load_ = offered;
  }
  if (cut) {
    since_cut_ = 0;
    raised_since_cut_ = false;
  }
  if (next == fraction_) return false;
  if (next < fraction_) {
    raised_from_ = kept;
    raised_load_ = offered;
    since_raise_ = 0;
    raised_since_cut_ = true;
  }
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
