#include "agent/protocols/postgres/stitcher.h"

#include <algorithm>
#include <utility>

namespace threadline::postgres {

namespace {
std::string_view AsString(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
}  // namespace

Stitcher::Stitcher(const Limits& limits, db::Metrics& metrics, bool at_start)
    : limits_(limits),
      metrics_(metrics),
      phase_(at_start ? Phase::kStartup : Phase::kReady),
      statements_(limits.max_statements),
      portals_(limits.max_portals) {}

Stitcher::Slot* Stitcher::Find(uint64_t id) {
  if (id == kNoOp || ops_.empty() || id < ops_.front().id) return nullptr;
  const uint64_t i = id - ops_.front().id;
  return i < ops_.size() ? &ops_[i] : nullptr;
}

Stitcher::Slot* Stitcher::NewOp(OpKind kind, const db::Frame& frame) {
  if (ops_.size() >= limits_.max_operations) {
    metrics_.Fail(db::Failure::kTooManyPending);
    return nullptr;
  }
  Slot& s = ops_.emplace_back();
  s.id = next_id_++;
  s.op.kind = kind;
  s.op.database = database_;
  s.op.request_first = frame.first;
  s.op.request_last = frame.last;
  if (frame.missing) s.op.request_incomplete = true;
  return &s;
}

Stitcher::Slot* Stitcher::GroupOp(const db::Frame& frame) {
  if (group_) {
    if (Slot* s = Find(*group_)) {
      s->op.request_last = frame.last;
      if (frame.missing) s->op.request_incomplete = true;
      return s;
    }
  }
  Slot* s = NewOp(OpKind::kPrepare, frame);
  group_ = s ? std::optional<uint64_t>(s->id) : std::nullopt;
  return s;
}

void Stitcher::Announce(Slot& s, Output& out) {
  if (s.announced) return;
  s.announced = true;
  out.OnRequest(s.op);
}

void Stitcher::AddEntry(Expect what, uint64_t op) {
  if (pending_.size() >= limits_.max_pending) {
    metrics_.Fail(db::Failure::kTooManyPending);
    GiveUp();
    return;
  }
  pending_.push_back(Entry{what, op});
  if (Slot* s = Find(op)) ++s->entries;
}

void Stitcher::Attribute(Slot& s, const db::Frame& frame) {
  if (!s.op.response_seen) {
    s.op.response_seen = true;
    s.op.response_first = frame.first;
  }
  s.op.response_last = frame.last;
  s.op.response_bytes += 5 + frame.length;
  if (frame.missing) s.op.response_incomplete = true;
}

void Stitcher::End(Slot& s, Outcome outcome, Output& out) {
  if (s.done) return;
  s.done = true;
  s.op.outcome = outcome;
  if (group_ == s.id) group_.reset();
  if (copy_in_ == s.id) copy_in_.reset();
  Flush(out);
}

void Stitcher::Drop(Slot& s, Output& out) {
  if (s.done) return;
  s.drop = true;
  End(s, Outcome::kComplete, out);
}

void Stitcher::Flush(Output& out) {
  while (!ops_.empty() && ops_.front().done) {
    Slot& s = ops_.front();
    if (!s.drop && s.announced) {
      metrics_.Ended(s.op.outcome);
      out.OnOperation(std::move(s.op));
    }
    ops_.pop_front();
  }
}

void Stitcher::GiveUp() {
  phase_ = Phase::kGaveUp;
  metrics_.Fail(db::Failure::kGaveUp);
  for (const Slot& s : ops_)
    if (!s.done && s.announced) metrics_.abandoned->Add(1);
  ops_.clear();
  pending_.clear();
  group_.reset();
  copy_in_.reset();
}

// ---- Frontend ----------------------------------------------------------------------------

void Stitcher::OnStartupPacket(const db::Frame& f, Output& out) {
  const Startup st = DecodeStartup(f.body);
  switch (st.code) {
    case kSslRequestCode:
    case kGssEncRequestCode:
      ssl_requested_ = true;  // the backend answers with one byte
      return;
    case kCancelRequestCode:
      if (Slot* s = NewOp(OpKind::kCancel, f)) {
        Announce(*s, out);
        phase_ = Phase::kCancel;  // nothing else comes; the connection's close ends it
      }
      return;
    case kProtocolV3:
      database_ = std::string(st.database.empty() ? st.user : st.database);
      phase_ = Phase::kAuth;
      return;
    default:
      metrics_.Fail(db::Failure::kBadMessage);  // protocol 2 or unknown: not ours to read
      GiveUp();
      return;
  }
}

void Stitcher::OnFrontend(const db::Frame& f, Output& out) {
  if (done()) return;
  if (phase_ == Phase::kStartup) {
    if (f.type == kStartupPacket) OnStartupPacket(f, out);
    return;
  }
  size_t o = 0;
  bool ok = false;
  switch (f.type) {
    case 'Q': {
      RealignBeforeRequest(out);
      Slot* s = NewOp(OpKind::kQuery, f);
      const std::string_view text = ReadCString(f.body, o, ok);
      if (s) {
        s->op.text.assign(text.substr(0, limits_.max_statement_bytes));
        s->op.text_truncated = !f.kept_all() || text.size() > limits_.max_statement_bytes;
        Announce(*s, out);
      }
      AddEntry(Expect::kQuery, s ? s->id : kNoOp);
      return;
    }
    case 'P': {
      if (!group_) RealignBeforeRequest(out);
      Slot* s = GroupOp(f);
      const std::string_view name = ReadCString(f.body, o, ok);
      const std::string_view text = ok ? ReadCString(f.body, o, ok) : std::string_view();
      db::StatementText st{std::string(text.substr(0, limits_.max_statement_bytes)),
                           !ok || text.size() > limits_.max_statement_bytes};
      if (s) {
        s->has_parse = true;
        s->op.statement = std::string(name);
        s->op.text = st.text;
        s->op.text_truncated = st.truncated;
      }
      // A statement unnamed or named: the latest Parse of a name wins (the server refuses a
      // named one that exists; the unnamed one is replaced).
      statements_.Put(std::string(name), std::move(st));
      AddEntry(Expect::kParse, s ? s->id : kNoOp);
      return;
    }
    case 'B': {
      if (!group_) RealignBeforeRequest(out);
      Slot* s = GroupOp(f);
      const std::string_view portal = ReadCString(f.body, o, ok);
      const std::string_view statement = ok ? ReadCString(f.body, o, ok) : std::string_view();
      if (ok) {
        const db::StatementText* st = statements_.Find(statement);
        db::StatementText bound = st ? *st : db::StatementText{};
        if (s) {
          s->op.statement = std::string(statement);
          if (st) {
            s->op.text = st->text;
            s->op.text_truncated = st->truncated;
          } else {
            s->op.text_known = false;
          }
        }
        portals_.Put(std::string(portal), st ? std::move(bound) : db::StatementText{});
      }
      AddEntry(Expect::kBind, s ? s->id : kNoOp);
      return;
    }
    case 'D': {
      Slot* s = group_ ? GroupOp(f) : nullptr;
      AddEntry(Expect::kDescribe, s ? s->id : kNoOp);
      return;
    }
    case 'E': {
      const std::string_view portal = ReadCString(f.body, o, ok);
      Slot* s = group_ ? GroupOp(f) : NewOp(OpKind::kExecute, f);
      if (s) {
        s->op.kind = OpKind::kExecute;
        if (!s->has_parse && s->op.text.empty()) {
          // Executing a portal bound earlier (a suspended one, or a named one).
          if (const db::StatementText* st = portals_.Find(portal); st && !st->text.empty()) {
            s->op.text = st->text;
            s->op.text_truncated = st->truncated;
            s->op.text_known = true;
          } else {
            s->op.text_known = false;
          }
        }
        if (!s->op.text_known) metrics_.Fail(db::Failure::kStatementUnknown);
        group_.reset();
        Announce(*s, out);
      }
      AddEntry(Expect::kExecute, s ? s->id : kNoOp);
      return;
    }
    case 'C': {
      const char kind = f.body.empty() ? 0 : static_cast<char>(f.body[0]);
      o = 1;
      const std::string_view name = ReadCString(f.body, o, ok);
      if (ok && kind == 'S') statements_.Erase(name);
      if (ok && kind == 'P') portals_.Erase(name);
      if (group_) GroupOp(f);
      AddEntry(Expect::kClose, group_ ? *group_ : kNoOp);
      return;
    }
    case 'S': {
      uint64_t op = kNoOp;
      if (group_) {
        // A batch without Execute: a prepare when it parsed a statement, else nothing to show.
        if (Slot* s = GroupOp(f)) {
          if (s->has_parse) {
            op = s->id;
            Announce(*s, out);
          } else {
            Drop(*s, out);
          }
        }
        group_.reset();
      }
      AddEntry(Expect::kSync, op);
      return;
    }
    case 'F': {
      Slot* s = NewOp(OpKind::kFunctionCall, f);
      if (s) Announce(*s, out);
      AddEntry(Expect::kFunction, s ? s->id : kNoOp);
      return;
    }
    case 'd': case 'c': case 'f':
      if (copy_in_) {
        if (Slot* s = Find(*copy_in_)) {
          s->op.request_last = f.last;
          if (f.missing) s->op.request_incomplete = true;
        }
        if (f.type != 'd') copy_in_.reset();
      }
      return;
    default:
      return;  // Flush, Terminate, password/SASL messages: nothing to answer or to keep
  }
}

void Stitcher::OnFrontendLost() {
  if (done()) return;
  metrics_.Fail(db::Failure::kFramingLost);
  // The batch being gathered lost messages: it cannot be told apart from what follows.
  if (group_) {
    if (Slot* s = Find(*group_); s && !s->announced) s->drop = true, s->done = true;
    group_.reset();
  }
  if (phase_ == Phase::kStartup) phase_ = Phase::kReady;
  if (pending_.empty() || pending_.back().what != Expect::kLost) AddEntry(Expect::kLost, kNoOp);
}

// ---- Backend ------------------------------------------------------------------------------

void Stitcher::PopHead(Fate fate, Output& out) {
  const Entry e = pending_.front();
  pending_.pop_front();
  Slot* s = Find(e.op);
  if (!s) return;
  if (s->entries > 0) --s->entries;
  // The operation still has an entry later in the queue (its Execute, its Sync): it goes on.
  if (s->done || s->entries > 0) return;
  switch (fate) {
    case Fate::kKeep:
      End(*s, Outcome::kComplete, out);
      return;
    case Fate::kLost:
      if (!s->announced) return Drop(*s, out);
      s->op.response_incomplete = true;
      End(*s, s->op.response_seen ? Outcome::kComplete : Outcome::kResponseLost, out);
      return;
    case Fate::kNotExecuted:
      if (!s->op.error_code.empty()) return End(*s, Outcome::kComplete, out);
      metrics_.not_executed->Add(1);
      Drop(*s, out);
      return;
  }
}

void Stitcher::OnError(const db::Frame& f, Output& out) {
  const std::string code(ErrorCode(f.body));
  if (pending_.empty()) {
    if (phase_ == Phase::kReady) metrics_.Fail(db::Failure::kUnexpectedResponse);
    return;  // a startup or authentication failure, or a FATAL out of nowhere
  }
  Entry& head = pending_.front();
  Slot* s = Find(head.op);
  if (s) {
    Attribute(*s, f);
    if (s->op.error_code.empty()) s->op.error_code = code.empty() ? "XX000" : code;
  }
  switch (head.what) {
    case Expect::kQuery:
    case Expect::kFunction:
    case Expect::kLost:
      return;  // ReadyForQuery ends it
    case Expect::kSync:
      return;  // an error while syncing (e.g. COMMIT of a failed transaction): Z follows
    default:
      break;
  }
  // Extended query: the server skips every message up to the next Sync.
  if (s && s->announced) End(*s, Outcome::kComplete, out);
  sync_group_failed_ = true;
  while (!pending_.empty() && pending_.front().what != Expect::kSync && pending_.front().what != Expect::kLost)
    PopHead(Fate::kNotExecuted, out);
}

void Stitcher::OnReadyForQuery(const db::Frame& f, Output& out) {
  if (phase_ == Phase::kAuth) {
    phase_ = Phase::kReady;  // the connection is ready: startup is over
    return;
  }
  if (pending_.empty()) {
    metrics_.Fail(db::Failure::kUnexpectedResponse);  // joined mid-stream, or requests lost
    return;
  }
  // Everything up to the first Sync or Query is answered now; what had no answer of its own
  // was skipped after an error, or lost.
  const Fate fate = sync_group_failed_ ? Fate::kNotExecuted : Fate::kLost;
  while (!pending_.empty()) {
    const Expect what = pending_.front().what;
    if (what == Expect::kSync || what == Expect::kQuery || what == Expect::kFunction || what == Expect::kLost) {
      if (Slot* s = Find(pending_.front().op)) Attribute(*s, f);
      PopHead(what == Expect::kLost ? Fate::kLost : Fate::kKeep, out);
      break;
    }
    PopHead(fate, out);
  }
  sync_group_failed_ = false;
  if (pending_.empty()) backend_unaligned_ = false;  // every answer is in: aligned again
}

void Stitcher::OnBackend(const db::Frame& f, Output& out) {
  if (done()) return;
  if (ssl_requested_) {
    ssl_requested_ = false;
    if (f.type == 'S' || f.type == 'G') phase_ = Phase::kEncrypted;  // TLS/GSS from here on
    return;                                                          // 'N': the clear goes on
  }
  switch (f.type) {
    case 'E':
      OnError(f, out);
      return;
    case 'Z':
      OnReadyForQuery(f, out);
      return;
    case 'A':
      metrics_.pushes->Add(1);  // NotificationResponse (LISTEN/NOTIFY): never an answer
      return;
    case 'N': case 'S': case 'R': case 'K': case 'v':
      return;  // asynchronous (notices, parameter changes) or startup
    default:
      break;
  }
  if (pending_.empty()) return;  // answers to requests we never saw (joined mid-stream)
  const Entry head = pending_.front();
  Slot* s = Find(head.op);
  if (s) Attribute(*s, f);
  switch (f.type) {
    case '1':
      if (head.what == Expect::kParse) PopHead(Fate::kKeep, out);
      return;
    case '2':
      if (head.what == Expect::kBind) PopHead(Fate::kKeep, out);
      return;
    case '3':
      if (head.what == Expect::kClose) PopHead(Fate::kKeep, out);
      return;
    case 't':
      return;  // ParameterDescription: a RowDescription or NoData follows
    case 'T': case 'n':
      if (head.what == Expect::kDescribe) PopHead(Fate::kKeep, out);
      return;
    case 'D':
      if (s) ++s->op.rows;
      return;
    case 'C': case 'I': case 's':
      if (s) {
        ++s->op.results;
        if (f.type == 'C') s->op.command_tag.assign(AsString(f.body.first(f.body.empty() ? 0 : f.body.size() - 1)));
        if (f.type == 's') s->op.suspended = true;
      }
      if (head.what == Expect::kExecute) PopHead(Fate::kKeep, out);
      return;
    case 'G': case 'H': case 'W':
      if (s) {
        s->op.copy = true;
        if (f.type == 'G') copy_in_ = s->id;
      }
      return;
    case 'V':
      return;  // FunctionCallResponse: ReadyForQuery ends the call
    default:
      return;  // CopyData/CopyDone of a COPY TO STDOUT: counted as response bytes
  }
}

void Stitcher::OnBackendLost() {
  if (done()) return;
  metrics_.Fail(db::Failure::kFramingLost);
  backend_unaligned_ = true;
  if (pending_.empty()) return;
  if (Slot* s = Find(pending_.front().op)) s->op.response_incomplete = true;
}

void Stitcher::RealignBeforeRequest(Output& out) {
  if (!backend_unaligned_) return;
  backend_unaligned_ = false;
  realign_backend_ = true;
  while (!pending_.empty()) PopHead(Fate::kLost, out);
  sync_group_failed_ = false;
  copy_in_.reset();
}

// ---- Ending --------------------------------------------------------------------------------

void Stitcher::OnClose(uint64_t ts_ns, Output& out) {
  for (Slot& s : ops_) {
    if (s.done) continue;
    if (!s.announced) {
      s.drop = true;
      s.done = true;
      continue;
    }
    s.op.closed_ts_ns = ts_ns;
    // A cancel request is answered by the close; an error (FATAL) came before it.
    const bool answered = s.op.kind == OpKind::kCancel || !s.op.error_code.empty();
    s.done = true;
    s.op.outcome = answered ? Outcome::kComplete : Outcome::kClosedBeforeResponse;
  }
  Flush(out);
  pending_.clear();
  group_.reset();
  copy_in_.reset();
}

void Stitcher::Abandon() {
  for (const Slot& s : ops_)
    if (!s.done && s.announced) metrics_.abandoned->Add(1);
  ops_.clear();
  pending_.clear();
}

}  // namespace threadline::postgres
