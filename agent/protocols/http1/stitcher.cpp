#include "agent/protocols/http1/stitcher.h"

#include <memory>
#include <string>
#include <utility>

#include "agent/protocols/http1/detect.h"
#include "agent/protocols/http1/syntax.h"

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

Http1Connection::Http1Connection(Role role, const Http1Limits& limits, Http1Metrics& metrics,
                                 std::span<const std::string_view> switch_tokens, MessagePool* pool)
    : limits_(limits),
      metrics_(metrics),
      switch_tokens_(switch_tokens),
      pool_(pool),
      request_parser_(MessageKind::kRequest, limits.parser, request_side_, pool),
      response_parser_(MessageKind::kResponse, limits.parser, response_side_, pool) {
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
  MessageParser* p = ParserFor(dir, bytes);
  if (p == &request_parser_) {
    FeedRequestSide(bytes, meta);
  } else if (p) {
    p->Feed(bytes, meta);
    if (switch_) {
      switch_->response_resume_pos =
          response_parser_.switch_pos().value_or(meta.pos + bytes.size());
    }
  }
  if (release_held_) ReleaseHeld();
  Deliver(out);
}

void Http1Connection::FeedRequestSide(std::span<const uint8_t> bytes, const ChunkMeta& meta) {
  if (request_parser_.held()) {
    Hold(bytes, meta);
    return;
  }
  request_parser_.Feed(bytes, meta);
  if (request_parser_.held()) HoldRest(bytes, meta);
}

void Http1Connection::HoldRest(std::span<const uint8_t> bytes, const ChunkMeta& meta) {
  const std::optional<uint64_t> at = request_parser_.switch_pos();
  if (!at || *at < meta.pos || *at >= meta.pos + bytes.size()) return;
  ChunkMeta rest = meta;
  rest.pos = *at;
  Hold(bytes.subspan(static_cast<size_t>(*at - meta.pos)), rest);
}

void Http1Connection::Hold(std::span<const uint8_t> bytes, const ChunkMeta& meta, uint64_t gap,
                           GapReason reason) {
  if (held_bytes_ + bytes.size() > kMaxHeldBytes) {
    // Too much for a client waiting for its answer: it is speaking HTTP/1 on.
    ReleaseHeld();
    if (gap > 0) request_parser_.Gap(gap, reason, meta);
    else FeedRequestSide(bytes, meta);
    return;
  }
  HeldChunk& h = held_.emplace_back();
  h.meta = meta;
  h.bytes.assign(bytes.begin(), bytes.end());
  h.gap = gap;
  h.reason = reason;
  held_bytes_ += bytes.size();
}

void Http1Connection::ReleaseHeld() {
  release_held_ = false;
  if (!request_parser_.held()) return;
  request_parser_.Release();
  std::vector<HeldChunk> held = std::move(held_);
  held_.clear();
  held_bytes_ = 0;
  for (HeldChunk& h : held) {
    if (h.gap > 0) {
      if (request_parser_.held()) Hold({}, h.meta, h.gap, h.reason);
      else request_parser_.Gap(h.gap, h.reason, h.meta);
    } else {
      FeedRequestSide(h.bytes, h.meta);  // may hold again, after another upgrade request
    }
  }
}

void Http1Connection::OnGap(Direction dir, uint64_t len, GapReason reason,
                            const ChunkMeta& meta, Output& out) {
  if (!request_dir_ || done()) return;  // nothing known yet: the first message will tell
  if (dir == *request_dir_ && request_parser_.held()) {
    Hold({}, meta, len, reason);
  } else {
    MessageParser& p = dir == *request_dir_ ? request_parser_ : response_parser_;
    p.Gap(len, reason, meta);
  }
  if (release_held_) ReleaseHeld();
  Deliver(out);
}

void Http1Connection::OnClose(uint64_t ts_ns, Output& out) {
  if (closed_) return;
  ReleaseHeld();  // what the client sent after its upgrade request is still HTTP/1
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
  held_.clear();
  held_bytes_ = 0;
}

void Http1Connection::Reset(Role role) {
  // Rebuilt rather than member by member, so no state added later can leak from one connection
  // into the next; only the containers' storage is carried over, emptied.
  PendingQueue pending = std::move(pending_);
  std::vector<HeldChunk> held = std::move(held_);
  pending.clear();
  held.clear();
  const Http1Limits limits = limits_;
  Http1Metrics& metrics = metrics_;
  const std::span<const std::string_view> switch_tokens = switch_tokens_;
  MessagePool* pool = pool_;
  std::destroy_at(this);
  std::construct_at(this, role, limits, metrics, switch_tokens, pool);
  pending_ = std::move(pending);
  held_ = std::move(held);
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
    pending_.back().asks_upgrade = m.upgrade_requested && m.method != "CONNECT";
  }
}

void Http1Connection::OnRequest(std::unique_ptr<Message> m) {
  consecutive_failures_ = 0;
  if (dropping_request_) {
    dropping_request_ = false;
    if (pool_) pool_->Give(std::move(m));
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

void Http1Connection::OnResponse(std::unique_ptr<Message> m) {
  consecutive_failures_ = 0;
  Pending* p = Unanswered();
  const uint16_t status = m->status_code;
  bool switching = status == 101 || (p != nullptr && p->context.connect && status / 100 == 2);
  if (m->is_interim() && status != 101) {
    if (p != nullptr) ++p->interim;
    if (pool_) pool_->Give(std::move(m));
    return;
  }
  if (p == nullptr && pending_.size() - finished_ >= limits_.max_pending_requests) {
    // Answers nothing, behind a request still arriving (its body, say): only so many wait.
    CountFailure(FailureReason::kTooManyPipelined);
    if (pool_) pool_->Give(std::move(m));
  } else if (p == nullptr) {
    // Answers nothing we know of: a finished entry of its own, delivered in order.
    Pending& lone = pending_.emplace_back();
    lone.kind = Pending::Kind::kLost;
    lone.answered = true;
    lone.outcome = status == 101 ? Outcome::kUpgraded : Outcome::kResponseWithoutRequest;
    lone.response = std::move(m);
  } else if (p->kind == Pending::Kind::kDropped) {
    ++p->answers;
    if (pool_) pool_->Give(std::move(m));
  } else {
    p->answered = true;
    // The answer to an upgrade request ends the hold: replayed as HTTP/1 unless switching.
    if (p->asks_upgrade && status != 101) release_held_ = true;
    if (p->kind == Pending::Kind::kLost) {
      p->outcome = Outcome::kResponseWithoutRequest;
    } else if (status == 101) {
      p->outcome = Outcome::kUpgraded;
      if (p->request) HandOver(*p, *m);
    } else if (p->context.connect) {
      p->outcome = switching ? Outcome::kTunnel : Outcome::kComplete;
      if (!switching) request_parser_.Resume();  // refused: requests may follow
    }
    p->response = std::move(m);
  }
  if (switching) SwitchProtocols();
  MarkFinished();
  // Now, before the next response is matched: requests the client sent after the refused
  // upgrade request are what later responses answer.
  if (release_held_) ReleaseHeld();
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
    if (p->asks_upgrade) release_held_ = true;  // whatever it was, bytes after it are parsed
  }
  MarkFinished();
  if (release_held_) ReleaseHeld();
}

void Http1Connection::HandOver(Pending& p, const Message& response) {
  const std::optional<std::string_view> upgrade = response.headers.Get("upgrade");
  if (!upgrade) return;
  for (std::string_view token : switch_tokens_) {
    if (!syntax::ListHasToken(*upgrade, token)) continue;
    Switch& s = switch_.emplace();
    s.token = std::string(token);
    s.request = std::move(p.request);
    // Parsed from held bytes inside the same call as its 101 (a refused upgrade released
    // them): not announced yet, and its Message now lives here. Deliver announces it.
    announce_switch_request_ = !p.announced;
    p.announced = true;
    s.held = std::move(held_);
    held_.clear();
    held_bytes_ = 0;
    p.handed_over = true;
    return;
  }
}

void Http1Connection::SwitchProtocols() {
  upgraded_ = true;
  request_parser_.Stop();
  response_parser_.Stop();
  held_.clear();  // another protocol's bytes, and none of ours will parse them
  held_bytes_ = 0;
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
  // After the requests before it: the one the new protocol answers, if no call announced it.
  if (announce_switch_request_ && switch_ && switch_->request) out.OnRequest(*switch_->request);
  announce_switch_request_ = false;
  for (; finished_ > 0; --finished_) {
    Pending& p = pending_.front();
    // Dropped requests, a lost request whose response was never seen, a request cut short
    // before its header block ended, a request the new protocol answers: nothing to report.
    const bool reportable = p.handed_over                     ? false
                            : p.kind == Pending::Kind::kRequest ? p.request != nullptr
                            : p.kind == Pending::Kind::kLost  ? p.response != nullptr
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
      // What the output left in (or moved back to) the Exchange is done with: its buffers
      // serve the next messages.
      if (pool_) {
        pool_->Give(std::move(e.request));
        pool_->Give(std::move(e.response));
      }
    }
    pending_.pop_front();
  }
}

}  // namespace threadline::http1
