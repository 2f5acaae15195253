#include "agent/protocols/http1/stitcher.h"

#include <string>
#include <utility>

#include "agent/protocols/http1/detect.h"

namespace threadline::http1 {

namespace {

constexpr std::array<Outcome, 6> kOutcomes = {
    Outcome::kComplete, Outcome::kClosedBeforeResponse, Outcome::kResponseWithoutRequest,
    Outcome::kResponseLost, Outcome::kUpgraded, Outcome::kTunnel};

Direction Other(Direction d) {
  return d == Direction::kEgress ? Direction::kIngress : Direction::kEgress;
}

}  // namespace

Http1Metrics::Http1Metrics(MetricsRegistry& metrics) {
  for (size_t i = 0; i < kFailureReasonCount; ++i) {
    failures[i] = &metrics.GetCounter(
        "threadline_parse_failures_total",
        {{"protocol", "http1"}, {"reason", std::string(ToString(static_cast<FailureReason>(i)))}},
        "Bytes or messages a protocol parser could not parse, by reason");
  }
  for (size_t i = 0; i < kOutcomes.size(); ++i) {
    exchanges[i] = &metrics.GetCounter("threadline_http1_exchanges_total",
                                       {{"outcome", std::string(ToString(kOutcomes[i]))}},
                                       "HTTP/1.x request/response exchanges, by outcome");
  }
  abandoned = &metrics.GetCounter("threadline_http1_requests_abandoned_total", {},
                                  "Requests whose connection the agent evicted before the response");
}

Http1Connection::Http1Connection(Role role, const Http1Limits& limits, Http1Metrics& metrics)
    : limits_(limits),
      metrics_(metrics),
      request_parser_(MessageKind::kRequest, limits.parser, request_side_),
      response_parser_(MessageKind::kResponse, limits.parser, response_side_) {
  if (role == Role::kServer) request_dir_ = Direction::kIngress;
  if (role == Role::kClient) request_dir_ = Direction::kEgress;
}

MessageParser* Http1Connection::ParserFor(Direction dir, std::span<const uint8_t> first_bytes) {
  if (done()) return nullptr;
  if (!request_dir_) {
    // Role unknown: whichever side speaks first and looks like HTTP decides.
    if (LooksLikeHttp1Request(first_bytes)) {
      request_dir_ = dir;
    } else if (LooksLikeHttp1Response(first_bytes)) {
      request_dir_ = Other(dir);
    } else {
      if (!first_bytes.empty()) OnRequestFailure(FailureReason::kBadStartLine, false);
      return nullptr;
    }
  }
  return dir == *request_dir_ ? &request_parser_ : &response_parser_;
}

void Http1Connection::OnData(Direction dir, std::span<const uint8_t> bytes,
                             const ChunkMeta& meta, Output& out) {
  if (MessageParser* p = ParserFor(dir, bytes)) p->Feed(bytes, meta);
  Deliver(out);
}

void Http1Connection::OnGap(Direction dir, uint64_t len, GapReason reason,
                            const ChunkMeta& meta, Output& out) {
  if (!request_dir_ || done()) return;  // nothing known yet: the first message will tell
  MessageParser& p = dir == *request_dir_ ? request_parser_ : response_parser_;
  p.Gap(len, reason, meta);
  Deliver(out);
}

void Http1Connection::OnClose(uint64_t ts_ns, Output& out) {
  if (closed_) return;
  // Requests first: a truncated request is registered before responses are matched.
  request_parser_.Close();
  response_parser_.Close();
  closed_ = true;
  MarkFinished();
  // Everything still waiting ends here (unanswered ones as closed before their response).
  closed_ts_ns_ = ts_ns;
  finished_ = pending_.size();
  Deliver(out);
}

void Http1Connection::Abandon() {
  if (closed_) return;
  metrics_.abandoned->Add(pending_.size());
  closed_ = true;
  pending_.clear();
  finished_ = 0;
}

size_t Http1Connection::CountRequests() const {
  size_t n = 0;
  for (auto it = pending_.begin() + static_cast<std::ptrdiff_t>(finished_); it != pending_.end(); ++it)
    if (it->kind != Pending::Kind::kDropped) ++n;
  return n;
}

bool Http1Connection::AddPlaceholder(Pending::Kind kind) {
  if (CountRequests() < limits_.max_pending_requests) {
    pending_.emplace_back().kind = kind;
    return true;
  }
  CountFailure(FailureReason::kTooManyPipelined);
  if (pending_.size() == finished_ || pending_.back().kind != Pending::Kind::kDropped)
    pending_.emplace_back().kind = Pending::Kind::kDropped;
  ++pending_.back().dropped;
  return false;
}

void Http1Connection::OnRequestHeaders(const Message& m) {
  dropping_request_ = !AddPlaceholder(Pending::Kind::kRequest);
  if (!dropping_request_) {
    pending_.back().context.head = m.method == "HEAD";
    pending_.back().context.connect = m.method == "CONNECT";
  }
}

void Http1Connection::OnRequest(Message&& m) {
  consecutive_failures_ = 0;
  if (dropping_request_) {
    dropping_request_ = false;
    return;
  }
  for (auto it = pending_.rbegin(); it != pending_.rend(); ++it) {
    if (it->kind == Pending::Kind::kRequest && !it->request) {
      it->request = std::move(m);
      break;
    }
  }
  MarkFinished();
}

void Http1Connection::OnRequestFailure(FailureReason r, bool lost) {
  CountFailure(r);
  // A lost request still gets a response: keep its slot so later pairs stay aligned.
  if (lost && !gave_up_) AddPlaceholder(Pending::Kind::kLost);
}

Http1Connection::Pending* Http1Connection::Unanswered() {
  for (Pending& p : pending_) {
    if (p.kind == Pending::Kind::kDropped ? p.answers < p.dropped : !p.answered) return &p;
  }
  return nullptr;
}

RequestContext Http1Connection::ContextForResponse() const {
  for (const Pending& p : pending_) {
    if (p.kind == Pending::Kind::kDropped) {
      if (p.answers < p.dropped) return {};
      continue;
    }
    if (!p.answered) return p.context;
  }
  return {};
}

void Http1Connection::OnResponse(Message&& m) {
  consecutive_failures_ = 0;
  Pending* p = Unanswered();
  bool switching = m.status_code == 101 ||
                   (p != nullptr && p->context.connect && m.status_code / 100 == 2);
  if (m.is_interim() && m.status_code != 101) {
    if (p != nullptr) ++p->interim;
    return;
  }
  if (p == nullptr) {
    // Answers nothing we know of: a finished entry of its own, delivered in order.
    Pending& lone = pending_.emplace_back();
    lone.kind = Pending::Kind::kLost;
    lone.answered = true;
    lone.outcome = m.status_code == 101 ? Outcome::kUpgraded : Outcome::kResponseWithoutRequest;
    lone.response = std::move(m);
  } else if (p->kind == Pending::Kind::kDropped) {
    ++p->answers;
  } else {
    p->answered = true;
    if (p->kind == Pending::Kind::kLost) {
      p->outcome = Outcome::kResponseWithoutRequest;
    } else if (m.status_code == 101) {
      p->outcome = Outcome::kUpgraded;
    } else if (p->context.connect) {
      p->outcome = switching ? Outcome::kTunnel : Outcome::kComplete;
      if (!switching) request_parser_.Resume();  // refused: requests may follow
    }
    p->response = std::move(m);
  }
  if (switching) SwitchProtocols();
  MarkFinished();
}

void Http1Connection::OnResponseFailure(FailureReason r, bool lost) {
  CountFailure(r);
  if (!lost || gave_up_) return;
  Pending* p = Unanswered();
  if (p == nullptr) return;
  if (p->kind == Pending::Kind::kDropped) {
    ++p->answers;
  } else {
    p->answered = true;
    p->outcome = Outcome::kResponseLost;
  }
  MarkFinished();
}

void Http1Connection::SwitchProtocols() {
  upgraded_ = true;
  request_parser_.Stop();
  response_parser_.Stop();
}


void Http1Connection::CountFailure(FailureReason r) {
  metrics_.failures[static_cast<size_t>(r)]->Add();
  if (r == FailureReason::kGaveUp || r == FailureReason::kTooManyPipelined || gave_up_) return;
  if (++consecutive_failures_ >= limits_.max_consecutive_failures) {
    gave_up_ = true;
    metrics_.failures[static_cast<size_t>(FailureReason::kGaveUp)]->Add();
    request_parser_.Stop();
    response_parser_.Stop();
  }
}

void Http1Connection::MarkFinished() {
  while (finished_ < pending_.size()) {
    const Pending& p = pending_.at(finished_);
    if (p.kind == Pending::Kind::kDropped) {
      if (p.answers < p.dropped) return;
    } else if (!p.answered || (p.kind == Pending::Kind::kRequest && !p.request)) {
      return;
    }
    ++finished_;
  }
}

void Http1Connection::Deliver(Output& out) {
  for (Pending& p : pending_) {
    if (p.kind == Pending::Kind::kRequest && p.request && !p.announced) {
      p.announced = true;
      out.OnRequest(*p.request);
    }
  }
  for (; finished_ > 0; --finished_) {
    Pending& p = pending_.front();
    // Dropped requests, a lost request whose response was never seen, a request cut short
    // before its header block ended: nothing to report.
    const bool reportable = p.kind == Pending::Kind::kRequest ? p.request.has_value()
                            : p.kind == Pending::Kind::kLost  ? p.response.has_value()
                                                              : false;
    if (reportable) {
      Exchange e;
      e.request = std::move(p.request);
      e.response = std::move(p.response);
      e.interim_responses = p.interim;
      e.outcome = p.answered ? p.outcome : Outcome::kClosedBeforeResponse;
      if (!p.answered) e.closed_ts_ns = closed_ts_ns_;
      metrics_.exchanges[static_cast<size_t>(e.outcome)]->Add();
      out.OnExchange(std::move(e));
    }
    pending_.pop_front();
  }
}

}  // namespace threadline::http1
