// The agent's own counters, gauges and histograms. Every drop, eviction and loss in the agent is
// counted here under a name and labels, so `--stats` lines and /metrics show them.
//
// Hot paths look a counter up once and keep the reference: references stay valid for the
// registry's lifetime, and Add() is one relaxed atomic increment.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace threadline {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Add(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void Set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void Add(int64_t d) { v_.fetch_add(d, std::memory_order_relaxed); }
  int64_t Value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// One observation that stands for its bucket: the span it came from (OpenMetrics exemplar with
// the labels trace_id and span_id), its value and when it happened.
struct Exemplar {
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> span_id{};
  double value = 0;
  uint64_t time_unix_ns = 0;
  bool operator==(const Exemplar&) const = default;
};

// Fixed-bucket histogram (Prometheus semantics: bucket i counts observations <= bounds[i], and
// an implicit +Inf bucket takes the rest). Observe() is lock-free: a binary search of the bounds
// and two relaxed atomic adds, so hot paths can call it.
//
// Exemplars: ObserveWithExemplar() also keeps the observation as its bucket's exemplar (the
// latest one wins; one per bucket, as OpenMetrics allows). Their storage is made on the first
// exemplar and guarded by a mutex of its own, taken only on that path and by Read(): histograms
// that never get one cost nothing more.
class Histogram {
 public:
  // `upper_bounds` strictly increasing, finite; it need not list +Inf.
  explicit Histogram(std::vector<double> upper_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double v);
  // Observe(e.value) and keep `e` as the exemplar of the bucket it falls in.
  void ObserveWithExemplar(const Exemplar& e);
  // Keeps `e` as its bucket's exemplar without counting it (it was observed before).
  void SetExemplar(const Exemplar& e);

  struct Data {
    std::vector<double> upper_bounds;  // without +Inf
    std::vector<uint64_t> cumulative;  // size upper_bounds.size() + 1; the last is +Inf
    double sum = 0;
    uint64_t count = 0;                // == cumulative.back()
    // Empty, or one per bucket (same indexing as `cumulative`); time_unix_ns == 0: none.
    std::vector<Exemplar> exemplars;
  };
  Data Read() const;
  const std::vector<double>& upper_bounds() const { return bounds_; }

 private:
  size_t BucketOf(double v) const;

  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1, not cumulative
  std::atomic<double> sum_{0};
  mutable std::mutex exemplars_mu_;
  std::vector<Exemplar> exemplars_;  // empty until the first exemplar, then bounds_.size() + 1
};

// Seconds, 1 ms .. 30 s: latencies of network calls (up to the usual export timeouts).
std::vector<double> DefaultLatencyBuckets();

class MetricsRegistry {
 public:
  // Returns the counter for (name, labels), creating it on first use. Thread-safe.
  Counter& GetCounter(const std::string& name, const Labels& labels = {},
                      const std::string& help = "");
  Gauge& GetGauge(const std::string& name, const Labels& labels = {},
                  const std::string& help = "");

  struct Sample {
    std::string name;
    Labels labels;
    std::string help;
    bool is_counter;
    int64_t value;
  };
  // A consistent-enough snapshot (each value read atomically), sorted by name then labels.
  std::vector<Sample> Snapshot() const;
  // Returns the histogram for (name, labels), creating it with `upper_bounds` on first use (a
  // later call's bounds are ignored). Thread-safe; the reference stays valid.
  Histogram& GetHistogram(const std::string& name, const Labels& labels,
                          std::vector<double> upper_bounds, const std::string& help = "");

  struct HistogramSample {
    std::string name;
    Labels labels;
    std::string help;
    Histogram::Data data;
  };
  // Everything the registry holds, for renderers such as Prometheus' /metrics. Each list is
  // sorted by name then labels.
  struct FullSnapshot {
    std::vector<Sample> scalars;  // counters and gauges, as Snapshot() returns them
    std::vector<HistogramSample> histograms;
  };
  FullSnapshot SnapshotAll() const;

  // Sum of a counter over all label sets.
  uint64_t CounterTotal(const std::string& name) const;

  // The process-wide registry the agent uses; tests may make their own.
  static MetricsRegistry& Global();

 private:
  struct Key {
    std::string name;
    Labels labels;
    bool operator<(const Key& o) const {
      return std::tie(name, labels) < std::tie(o.name, o.labels);
    }
  };
  mutable std::mutex mu_;
  std::map<Key, std::pair<std::string, Counter*>> counters_;
  std::map<Key, std::pair<std::string, Gauge*>> gauges_;
  std::map<Key, std::pair<std::string, Histogram*>> histograms_;
  std::deque<Counter> counter_storage_;
  std::deque<Gauge> gauge_storage_;
  std::deque<Histogram> histogram_storage_;
};

}  // namespace threadline
