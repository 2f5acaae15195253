// The agent's own counters and gauges. Every drop, eviction and loss in the agent is counted
// here under a name and labels, so `--stats` lines and (later) /metrics show them.
//
// Hot paths look a counter up once and keep the reference: references stay valid for the
// registry's lifetime, and Add() is one relaxed atomic increment.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
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
  std::deque<Counter> counter_storage_;
  std::deque<Gauge> gauge_storage_;
};

}  // namespace threadline
