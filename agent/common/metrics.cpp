#include "agent/common/metrics.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace threadline {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)),
      buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  // An unsorted or +Inf-terminated list would make Observe() and the rendering lie; tidy it
  // rather than fail, since a histogram is made on paths that cannot report errors.
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  while (!bounds_.empty() && !std::isfinite(bounds_.back())) bounds_.pop_back();
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

size_t Histogram::BucketOf(double v) const {
  return static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
}

void Histogram::Observe(double v) {
  buckets_[BucketOf(v)].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

void Histogram::ObserveWithExemplar(const Exemplar& e) {
  Observe(e.value);
  SetExemplar(e);
}

void Histogram::SetExemplar(const Exemplar& e) {
  const size_t i = BucketOf(e.value);
  std::lock_guard lock(exemplars_mu_);
  if (exemplars_.empty()) exemplars_.resize(bounds_.size() + 1);
  exemplars_[i] = e;
}

Histogram::Data Histogram::Read() const {
  Data d;
  d.upper_bounds = bounds_;
  d.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    d.cumulative[i] = running;
  }
  d.count = running;
  d.sum = sum_.load(std::memory_order_relaxed);
  std::lock_guard lock(exemplars_mu_);
  d.exemplars = exemplars_;
  return d;
}

std::vector<double> DefaultLatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}

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

Histogram& MetricsRegistry::GetHistogram(const std::string& name, const Labels& labels,
                                         std::vector<double> upper_bounds, const std::string& help) {
  std::lock_guard lock(mu_);
  Key key{name, labels};
  auto it = histograms_.find(key);
  if (it != histograms_.end()) return *it->second.second;
  Histogram& h = histogram_storage_.emplace_back(std::move(upper_bounds));
  histograms_.emplace(std::move(key), std::make_pair(help, &h));
  return h;
}

MetricsRegistry::FullSnapshot MetricsRegistry::SnapshotAll() const {
  FullSnapshot out;
  out.scalars = Snapshot();
  std::lock_guard lock(mu_);
  out.histograms.reserve(histograms_.size());
  // histograms_ is a map ordered by (name, labels): already sorted.
  for (const auto& [k, v] : histograms_) out.histograms.push_back({k.name, k.labels, v.first, v.second->Read()});
  return out;
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
