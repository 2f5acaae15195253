// What every database protocol's connection parser decides the same way: which direction its
// requests travel (the connection's role when known, else what the first bytes show) and
// whether the connection is parsed at all (a traced database server's own connections give
// SERVER spans only with db_server_spans on).
#pragma once

#include <optional>

#include "agent/conn/stream_consumer.h"
#include "agent/protocols/db/metrics.h"

namespace threadline::db {

inline Direction Other(Direction d) { return d == Direction::kEgress ? Direction::kIngress : Direction::kEgress; }

class RequestSide {
 public:
  // `metrics` must outlive the object.
  RequestSide(Role role, bool server_spans, Metrics& metrics)
      : server_spans_(server_spans), metrics_(metrics) {
    if (auto d = DirectionOf(role)) Decide(*d);
  }

  // A client sends its requests; a server receives them.
  static std::optional<Direction> DirectionOf(Role role) {
    if (role == Role::kClient) return Direction::kEgress;
    if (role == Role::kServer) return Direction::kIngress;
    return std::nullopt;
  }

  bool Decided() const { return requests_.has_value(); }
  // The requests travel `requests` (learned from the first bytes when the role is unknown).
  void Decide(Direction requests) {
    requests_ = requests;
    if (requests == Direction::kIngress && !server_spans_) {
      skipped_ = true;
      metrics_.server_side->Add(1);
    }
  }
  Direction requests() const { return *requests_; }
  std::optional<Direction> request_direction() const { return requests_; }
  // The database server's side with server spans off: nothing is parsed.
  bool skipped() const { return skipped_; }

 private:
  bool server_spans_;
  Metrics& metrics_;
  std::optional<Direction> requests_;
  bool skipped_ = false;
};

}  // namespace threadline::db
