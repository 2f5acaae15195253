// Prepared statements (and portals) a connection has named, with their text: what an Execute of
// PostgreSQL or a COM_STMT_EXECUTE of MySQL runs. Bounded: past `capacity` entries the oldest is
// forgotten (counted by the caller; its executions then have no text).
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace threadline::db {

struct StatementText {
  std::string text;  // capped by the protocol
  bool truncated = false;
};

template <class Key>
class StatementTable {
 public:
  explicit StatementTable(size_t capacity) : capacity_(capacity) {}

  // Returns true when an older entry had to be forgotten to make room.
  bool Put(const Key& key, StatementText value) {
    for (auto& e : entries_) {
      if (e.first == key) {
        e.second = std::move(value);
        return false;
      }
    }
    bool evicted = false;
    if (entries_.size() >= capacity_ && !entries_.empty()) {
      entries_.erase(entries_.begin());
      evicted = true;
    }
    entries_.emplace_back(key, std::move(value));
    return evicted;
  }

  // `key`: anything comparable with a Key (a string_view for string keys: no copy to look up).
  template <class K>
  const StatementText* Find(const K& key) const {
    for (const auto& e : entries_)
      if (e.first == key) return &e.second;
    return nullptr;
  }

  template <class K>
  void Erase(const K& key) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->first == key) {
        entries_.erase(it);
        return;
      }
    }
  }


 private:
  size_t capacity_;
  std::vector<std::pair<Key, StatementText>> entries_;  // oldest first; few, searched linearly
};

}  // namespace threadline::db
