// Which processes the agent traces. The decision is made per process in userspace and written
// to the kernel's "selected" map (tgid -> tl_selection); the kernel copies TL_SEL_INHERIT
// selections to forked children by itself, so userspace decides on start (InitialMatches) and
// on exec (Matches with the new executable).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/discovery/process_info.h"

namespace threadline {

struct SelectionConfig {
  std::vector<uint32_t> pids;            // trace these processes
  std::vector<std::string> exe_globs;    // fnmatch(3) globs on exe path, exe basename or comm
  std::vector<uint16_t> ports;           // connection filter applied by the kernel, not here
  uint32_t agent_pid = 0;                // never traced; set it to getpid()
};

class Selector {
 public:
  explicit Selector(SelectionConfig config);

  // True when the process should be traced: everything (but the agent and kernel threads) when
  // no pids and no globs are configured, else a listed pid or a glob matching the exe path, the
  // exe basename or comm. comm is included because it is what `ps` shows and what a process
  // renames itself to; the path because interpreters share basenames (python3 vs a venv's).
  bool Matches(const ProcessInfo& process) const;

  // The tl_selection flags (TL_SEL_*) to store for this process, 0 for "no entry": the agent
  // gets TL_SEL_EXCLUDE so the kernel skips it even under inheritance; matches get TL_SEL_TRACE |
  // TL_SEL_INHERIT so workers forked later are traced like their parent.
  uint32_t SelectionFlags(const ProcessInfo& process) const;

  // The pids to select at start: every process that Matches, plus the live descendants of those
  // processes (they were forked before the agent loaded, so the kernel could not inherit the
  // selection to them; `--pid <master>` must also trace the workers it already forked). The agent
  // and its descendants are never included. Ascending.
  std::vector<uint32_t> InitialMatches(const std::string& proc_root = "/proc") const;

  bool trace_all_processes() const { return trace_all_; }
  const std::vector<uint16_t>& ports() const { return config_.ports; }
  const SelectionConfig& config() const { return config_; }

 private:
  bool GlobMatches(const std::string& text) const;

  SelectionConfig config_;
  bool trace_all_;
};

}  // namespace threadline
