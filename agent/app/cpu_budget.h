// The agent's CPU budget (--cpu-budget): how much of the kernel's capture to shed so the agent
// stays under it.
//
// Once a second the agent measures the CPU it used (CpuUsageMeter: its own user + system time,
// plus the time the kernel spent in its BPF programs when kernel.bpf_stats_enabled is on) and
// whether the ring buffer dropped events, and asks the controller for the shed fraction: the
// share of connections the kernel does not capture, by a hash of the connection: new ones when
// they are first seen (bpf/capture/shed.bpf.h), established ones of known role at their next
// request boundary, where they are ended for userspace, and resumed at a later boundary once
// the fraction falls (bpf/capture/shed_turn.bpf.h). Never in the middle of an exchange.
//
// The rule, with hysteresis so it does not flap:
//   - events dropped (the ring was full): data is being lost at random right now, so shed more
//     at once, keeping at most kDropKeep of what was kept;
//   - over budget for `over_ticks` ticks in a row: keep kept * (target*budget - floor) /
//     (usage - floor) (at least a quarter of it per step), i.e. aim at `target` of the budget
//     assuming the cost above the idle floor follows the traced share; right after a step that
//     shed less, back to the share before that step at least (it held under the same load);
//     but not when no request was traced or shed (load known): shedding cannot touch that CPU;
//   - under low_water*budget, with no drops, for `calm_ticks` ticks in a row (and after a cut,
//     kHoldAfterCut ticks more): shed less, by the model below;
//   - between low_water*budget and budget: hold.
//
// Why a model, not "cost ~ kept share" alone (night of 2026-12-07, docs/performance.md): the
// kept share is a hash threshold over connections, and with few connections (wrk -c32
// keep-alive) it says little about what is traced: at 2% kept none of 32 connections is, and the
// agent's CPU falls to its idle floor (~2 millicores), which does not scale with the share. Read
// as "cost ~ kept share", that floor allowed 8x the share; ~8 connections came back at once
// (~120 millicores against a 20 millicore budget), were cut again, and so on every ~8 s (979 <->
// 730 per mille shed). So with each tick the agent also passes the load it counts: spans built
// per second (traced) and requests per second the kernel did not capture (shed, counted at
// request boundaries of shed connections); offered = traced + shed. The controller learns
//   - the idle floor: usage in ticks where nothing was traced;
//   - the cost per span: (usage - floor) / traced in ticks with at least kMinTracedPerS spans/s,
// and when calm (offered: the most over the last 3 ticks; the counts dip for a tick when the
// machine is busy, and a dip is not room):
//   - if floor + cost * offered <= low_water*budget, the whole offered load fits (nothing
//     offered: the load is gone): shed nothing, at once, without the hold after a cut. This is
//     what makes recovery after the load quick (two calm ticks, not a doubling every two);
//   - else add the share of the offered load that brings usage to target*budget,
//     (target*budget - usage) / (cost * offered), at most doubling the kept share. That works
//     whatever the kept share traces (nothing, or a clump of connections);
//   - and never onto the kept share that last went over (the ceiling; scaled by the offered
//     load then / now once that fell by a tenth), only halfway to it; after kMaxFailedProbes steps that went over anyway
//     (a granular load: the connection that does not fit is somewhere below the ceiling), hold
//     until the load falls by a quarter or the whole of it fits. A steady load thus ends at a
//     fraction that stays put, at most kMaxFailedProbes excursions over the budget after the
//     first cuts.
// Without the counts (CpuBudgetSample::load_known false, the unit tests' old samples) it falls
// back to cost ~ traced share above the floor: at most 2x, or +0.25 where that estimate allows.
// Pure logic (no clock, no kernel): the unit tests drive it tick by tick.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace threadline {

struct CpuBudgetSettings {
  double budget_cores = 0.5;  // 0: no budget, nothing is ever shed
  double target = 0.8;        // cut to / restore up to this share of the budget
  double low_water = 0.6;     // below this share of the budget the agent is calm
  int over_ticks = 2;         // consecutive ticks over budget before shedding more
  int calm_ticks = 2;         // consecutive calm ticks before shedding less
};

// What one tick measured.
struct CpuBudgetSample {
  double cpu_cores = 0;     // CPU seconds used per wall second over the tick
  uint64_t ring_drops = 0;  // events the kernel could not put in the ring during the tick
  // The load, when the caller counts it (load_known): spans the agent built per second over the
  // tick (traced work), and requests per second the kernel did not capture on shed connections.
  bool load_known = false;
  double traced_per_s = 0;
  double shed_per_s = 0;
};

class CpuBudgetController {
 public:
  static constexpr double kDropKeep = 0.7;  // ring full: keep at most this share of what was kept
  static constexpr double kResolution = 0.001;
  static constexpr int kHoldAfterCut = 2;           // extra calm ticks before restoring after a cut
  static constexpr int kMaxFailedProbes = 2;       // steps that went over before holding below
  static constexpr double kMinTracedPerS = 20;      // spans/s below which the cost per span is not learnt

  explicit CpuBudgetController(CpuBudgetSettings settings) : s_(settings) {}

  // One tick. Returns true when the shed fraction changed; reason() then says why (one line).
  bool Tick(const CpuBudgetSample& sample);

  double fraction() const { return fraction_; }  // of connections shed, [0, 1]
  // What the controller learnt (0 / -1 until it has): the agent's CPU per span built per second
  // above its idle floor, the floor, and the kept share that last went over (-1: none).
  double span_cost() const { return span_cost_; }
  double floor() const { return Floor(); }
  double ceiling() const { return ceiling_; }
  const std::string& reason() const { return reason_; }
  const CpuBudgetSettings& settings() const { return s_; }

 private:
  void Learn(const CpuBudgetSample& sample);
  double Floor() const { return floor_ > 0 ? floor_ : 0; }

  CpuBudgetSettings s_;
  double fraction_ = 0;
  double span_cost_ = 0;      // cores per (span/s) above the floor
  double floor_ = -1;         // cores, while nothing is traced
  double ceiling_ = -1;       // kept share that was over budget at the last cut
  double ceiling_load_ = 0;   // offered load (spans + shed requests per second) then
  int since_cut_ = 1 << 20;
  double raised_from_ = -1;   // kept share before the last step that shed less
  double raised_load_ = 0;    // offered load then
  int since_raise_ = 1 << 20;
  bool raised_since_cut_ = false;
  int failed_probes_ = 0;     // steps that shed less and went over, since the load last fell
  std::array<double, 3> recent_offered_{};  // the offered load of the last ticks
  size_t recent_at_ = 0;      // where the next tick's offered load goes in recent_offered_
  int over_run_ = 0;
  int calm_run_ = 0;
  std::string reason_;
};

// The agent's own CPU time so far, in seconds: getrusage(RUSAGE_SELF), every thread, user and
// system. Its BPF programs run in the traced processes' context, so this never includes them
// (CaptureProgram::ProgramRunTimeNs does, when BpfRunTimeStatsEnabled).
double ProcessCpuSeconds();

// kernel.bpf_stats_enabled: the kernel counts BPF programs' run time only while it is on (it
// costs two clock reads per program run, so the agent does not switch it on by itself).
bool BpfRunTimeStatsEnabled();

}  // namespace threadline
