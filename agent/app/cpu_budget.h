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
//   - over budget for `over_ticks` ticks in a row: keep kept * target*budget/usage (clamped),
//     i.e. aim at `target` of the budget assuming the cost follows the traced share;
//   - under low_water*budget, with no drops, for `calm_ticks` ticks in a row: shed less, the
//     kept share growing by at most 2x, or by +0.25 when the estimate (cost ~ traced share)
//     says target*budget allows that much, so recovery from shedding everything takes a few
//     steps once the load is gone, and a step never jumps far past the budget under load;
//   - between low_water*budget and budget: hold.
// Pure logic (no clock, no kernel): the unit tests drive it tick by tick.
#pragma once

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
};

class CpuBudgetController {
 public:
  static constexpr double kDropKeep = 0.7;  // ring full: keep at most this share of what was kept
  static constexpr double kResolution = 0.001;

  explicit CpuBudgetController(CpuBudgetSettings settings) : s_(settings) {}

  // One tick. Returns true when the shed fraction changed; reason() then says why (one line).
  bool Tick(const CpuBudgetSample& sample);

  double fraction() const { return fraction_; }  // of connections shed, [0, 1]
  const std::string& reason() const { return reason_; }
  const CpuBudgetSettings& settings() const { return s_; }

 private:
  CpuBudgetSettings s_;
  double fraction_ = 0;
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
