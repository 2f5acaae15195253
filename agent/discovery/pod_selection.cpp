#include "agent/discovery/pod_selection.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <spdlog/spdlog.h>

#include "agent/discovery/cgroup_id.h"

namespace threadline {

Result<PodSelectionRule> PodSelectionRule::Create(std::vector<std::string> namespaces,
                                                  const std::vector<std::string>& label_items) {
  PodSelectionRule rule;
  rule.namespaces = std::move(namespaces);
  for (const std::string& item : label_items) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      return Error{"label selector \"" + item + "\" is not key=value", EINVAL};
    rule.labels.emplace_back(item.substr(0, eq), item.substr(eq + 1));
  }
  return rule;
}

bool PodSelectionRule::Matches(const K8sPodMetadata& pod) const {
  if (!namespaces.empty() &&
      std::none_of(namespaces.begin(), namespaces.end(), [&](const std::string& glob) {
        return ::fnmatch(glob.c_str(), pod.namespace_name.c_str(), 0) == 0;
      }))
    return false;
  return std::all_of(labels.begin(), labels.end(), [&](const auto& kv) {
    auto it = pod.labels.find(kv.first);
    return it != pod.labels.end() && it->second == kv.second;
  });
}

std::string PodSelectionRule::Describe() const {
  std::string out;
  auto list = [&out](const char* what, const std::vector<std::string>& items) {
    if (items.empty()) return;
    if (!out.empty()) out += ", ";
    out += what;
    out += " [";
    for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
    out += "]";
  };
  list("namespaces", namespaces);
  std::vector<std::string> items;
  for (const auto& [k, v] : labels) items.push_back(k + "=" + v);
  list("labels", items);
  return out;
}

namespace {

// Depth-first walk with one open directory per level; d_ino of a cgroup v2 directory entry is
// the kernfs node id, i.e. the cgroup id, so no stat per directory is needed.
void Walk(int dir_fd, std::string& path, int depth, size_t max_dirs, int max_depth,
          CgroupScanResult& out) {
  DIR* dir = ::fdopendir(dir_fd);
  if (!dir) {
    ::close(dir_fd);
    return;
  }
  while (dirent* e = ::readdir(dir)) {
    if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
    if (out.directories >= max_dirs || depth >= max_depth) {
      out.truncated = true;
      break;
    }
    ++out.directories;
    const size_t len = path.size();
    path += '/';
    path += e->d_name;
    if (auto c = discovery::ParseCgroupPath(path))
      out.containers.push_back({static_cast<uint64_t>(e->d_ino), std::move(c->container_id), path});
    int child = ::openat(::dirfd(dir), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (child >= 0) Walk(child, path, depth + 1, max_dirs, max_depth, out);
    path.resize(len);
  }
  ::closedir(dir);
}

}  // namespace

CgroupScanResult ScanContainerCgroups(const std::string& root, size_t max_directories, int max_depth) {
  CgroupScanResult out;
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return out;
  std::string path;
  Walk(fd, path, 0, max_directories, max_depth, out);
  return out;
}

PodCgroupSelector::PodCgroupSelector(PodSelectionRule rule, const ContainerMetadataSource& pods,
                                     CgroupSetWriter writer, PodCgroupSelectorOptions options,
                                     MetricsRegistry& metrics)
    : rule_(std::move(rule)),
      pods_(pods),
      writer_(std::move(writer)),
      options_(std::move(options)),
      selected_gauge_(metrics.GetGauge("threadline_selection_cgroups",
                                       {}, "Container cgroups selected by namespace/label (kernel set)")),
      passes_counter_(metrics.GetCounter("threadline_selection_passes_total", {},
                                         "Passes over the cgroup tree for namespace/label selection")),
      failures_(metrics.GetCounter("threadline_selection_cgroup_errors_total", {},
                                   "Container cgroups that could not be added to or removed from the kernel set")),
      truncated_(metrics.GetCounter("threadline_selection_scans_truncated_total", {},
                                    "cgroup tree walks stopped at the directory or depth bound")) {}

PodCgroupSelector::~PodCgroupSelector() { Stop(); }

PodCgroupSelector::SyncReport PodCgroupSelector::Sync() {
  std::lock_guard lock(mu_);
  SyncReport r;
  CgroupScanResult scan = ScanContainerCgroups(options_.cgroup_root);
  if (scan.truncated) {
    truncated_.Add(1);
    if (!logged_truncation_)
      spdlog::warn("namespace/label selection: the walk of {} stopped after {} directories; containers "
                   "past that bound are not selected", options_.cgroup_root, scan.directories);
    logged_truncation_ = true;
  }
  std::unordered_set<uint64_t> want;
  r.containers_seen = scan.containers.size();
  for (const ContainerCgroupDir& c : scan.containers) {
    auto meta = pods_.Lookup(c.container_id);
    if (!meta || !meta->pod) {
      ++r.unknown;
      continue;
    }
    if (rule_.Matches(*meta->pod)) want.insert(c.cgroup_id);
  }
  for (auto it = selected_.begin(); it != selected_.end();) {
    if (want.contains(*it)) {
      ++it;
      continue;
    }
    if (writer_.remove(*it).ok()) {
      ++r.removed;
      it = selected_.erase(it);
    } else {
      ++r.failed;
      ++it;
    }
  }
  for (uint64_t id : want) {
    if (selected_.contains(id)) continue;
    Status s = writer_.add(id);
    if (s.ok()) {
      selected_.insert(id);
      ++r.added;
    } else {
      ++r.failed;
      if (failures_.Value() == 0) spdlog::warn("namespace/label selection: {}", s.error().message);
    }
  }
  failures_.Add(r.failed);
  r.selected = selected_.size();
  selected_gauge_.Set(static_cast<int64_t>(r.selected));
  passes_counter_.Add(1);
  passes_.fetch_add(1, std::memory_order_acq_rel);
  if (r.added || r.removed)
    spdlog::info("namespace/label selection: {} container cgroups selected (+{} -{}; {} containers seen, "
                 "{} not known to the API yet)", r.selected, r.added, r.removed, r.containers_seen, r.unknown);
  return r;
}

void PodCgroupSelector::Start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
}

void PodCgroupSelector::Stop() {
  {
    std::lock_guard lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

size_t PodCgroupSelector::selected() const {
  std::lock_guard lock(mu_);
  return selected_.size();
}

void PodCgroupSelector::Run() {
  uint64_t seen_generation = pods_.generation();
  auto last_pass = std::chrono::steady_clock::now();
  Sync();
  std::unique_lock lock(stop_mu_);
  while (!stop_) {
    stop_cv_.wait_for(lock, options_.poll_interval, [this] { return stop_.load(); });
    if (stop_) break;
    const uint64_t generation = pods_.generation();
    const auto now = std::chrono::steady_clock::now();
    if (generation == seen_generation && now - last_pass < options_.rescan_interval) continue;
    seen_generation = generation;
    last_pass = now;
    lock.unlock();
    Sync();
    lock.lock();
  }
}

}  // namespace threadline
