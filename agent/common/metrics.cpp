#include "agent/common/metrics.h"

#include <algorithm>
#include <tuple>

namespace threadline {

Counter& MetricsRegistry::GetCounter(const std::string& name, const Labels& labels,
                                     const std::string& help) {
  std::lock_guard lock(mu_);
  Key key{name, labels};
  auto it = counters_.find(key);
  if (it != counters_.end()) return *it->second.second;
  Counter& c = counter_storage_.emplace_back();
  counters_.emplace(std::move(key), std::make_pair(help, &c));
  return c;
}

Gauge& MetricsRegistry::GetGauge(const std::string& name, const Labels& labels,
                                 const std::string& help) {
  std::lock_guard lock(mu_);
  Key key{name, labels};
  auto it = gauges_.find(key);
  if (it != gauges_.end()) return *it->second.second;
  Gauge& g = gauge_storage_.emplace_back();
  gauges_.emplace(std::move(key), std::make_pair(help, &g));
  return g;
}

std::vector<MetricsRegistry::Sample> MetricsRegistry::Snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<Sample> out;
  out.reserve(counters_.size() + gauges_.size());
  for (const auto& [k, v] : counters_)
    out.push_back({k.name, k.labels, v.first, true, static_cast<int64_t>(v.second->Value())});
  for (const auto& [k, v] : gauges_)
    out.push_back({k.name, k.labels, v.first, false, v.second->Value()});
  std::sort(out.begin(), out.end(), [](const Sample& a, const Sample& b) {
    return std::tie(a.name, a.labels) < std::tie(b.name, b.labels);
  });
  return out;
}

uint64_t MetricsRegistry::CounterTotal(const std::string& name) const {
  std::lock_guard lock(mu_);
  uint64_t total = 0;
  for (auto it = counters_.lower_bound(Key{name, {}}); it != counters_.end() && it->first.name == name; ++it)
    total += it->second.second->Value();
  return total;
}

MetricsRegistry& MetricsRegistry::Global() {
  static MetricsRegistry* registry = new MetricsRegistry();  // never destroyed: used at exit
  return *registry;
}

}  // namespace threadline
