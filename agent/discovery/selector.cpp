#include "agent/discovery/selector.h"

#include <fnmatch.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "threadline/events.h"

namespace threadline {

Selector::Selector(SelectionConfig config)
    : config_(std::move(config)), trace_all_(config_.pids.empty() && config_.exe_globs.empty()) {
  std::sort(config_.pids.begin(), config_.pids.end());
}

bool Selector::GlobMatches(const std::string& text) const {
  // An unreadable exe leaves an empty string, which "*" would match; absence is not a match.
  if (text.empty()) return false;
  // No FNM_PATHNAME: "*" crosses '/', so "*/venv/*" matches a full path as users expect.
  return std::any_of(config_.exe_globs.begin(), config_.exe_globs.end(),
                     [&](const std::string& glob) { return ::fnmatch(glob.c_str(), text.c_str(), 0) == 0; });
}

bool Selector::Matches(const ProcessInfo& process) const {
  if (process.pid == config_.agent_pid || process.is_kernel_thread) return false;
  if (trace_all_) return true;
  if (std::binary_search(config_.pids.begin(), config_.pids.end(), process.pid)) return true;
  if (config_.exe_globs.empty()) return false;
  const std::string& exe = process.exe_path;
  const size_t slash = exe.rfind('/');
  const std::string basename = slash == std::string::npos ? exe : exe.substr(slash + 1);
  return GlobMatches(exe) || GlobMatches(basename) || GlobMatches(process.comm);
}

uint32_t Selector::SelectionFlags(const ProcessInfo& process) const {
  if (process.pid == config_.agent_pid) return TL_SEL_EXCLUDE;
  return Matches(process) ? (TL_SEL_TRACE | TL_SEL_INHERIT) : 0u;
}

std::vector<uint32_t> Selector::InitialMatches(const std::string& proc_root) const {
  std::unordered_map<uint32_t, std::vector<uint32_t>> children;
  std::vector<uint32_t> pending;
  for (uint32_t pid : ListPids(proc_root)) {
    auto info = ReadProcessInfo(pid, proc_root);
    if (!info.ok() || info->is_kernel_thread) continue;  // gone meanwhile, or never traced
    children[info->ppid].push_back(pid);
    if (Matches(*info)) pending.push_back(pid);
  }
  // Walks the subtrees under `roots`, adding every pid not in `skip` to `out`.
  auto collect_subtrees = [&children](std::vector<uint32_t> roots, const std::unordered_set<uint32_t>& skip,
                                      std::unordered_set<uint32_t>& out) {
    while (!roots.empty()) {
      uint32_t pid = roots.back();
      roots.pop_back();
      if (skip.contains(pid) || !out.insert(pid).second) continue;
      auto it = children.find(pid);
      if (it != children.end()) roots.insert(roots.end(), it->second.begin(), it->second.end());
    }
  };
  // The agent's own subtree first, so a helper it spawned is never traced even in trace-all mode.
  std::unordered_set<uint32_t> agent_tree;
  if (config_.agent_pid != 0) collect_subtrees({config_.agent_pid}, {}, agent_tree);
  std::unordered_set<uint32_t> selected;
  collect_subtrees(std::move(pending), agent_tree, selected);
  std::vector<uint32_t> out(selected.begin(), selected.end());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace threadline
