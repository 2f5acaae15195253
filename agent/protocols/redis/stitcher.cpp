#include "agent/protocols/redis/stitcher.h"

#include <algorithm>
#include <charconv>
#include <utility>

namespace threadline::redis {

namespace {

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

bool EqualsLower(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = (s[i] >= 'A' && s[i] <= 'Z') ? static_cast<char>(s[i] - 'A' + 'a') : s[i];
    if (c != lower[i]) return false;
  }
  return true;
}

// The kind of the confirmations a (un)subscribe command gets ("subscribe", "punsubscribe", ...).
std::string_view ConfirmationOf(std::string_view name) {
  static constexpr std::pair<std::string_view, std::string_view> kKinds[] = {
      {"SUBSCRIBE", "subscribe"},     {"PSUBSCRIBE", "psubscribe"},     {"SSUBSCRIBE", "ssubscribe"},
      {"UNSUBSCRIBE", "unsubscribe"}, {"PUNSUBSCRIBE", "punsubscribe"}, {"SUNSUBSCRIBE", "sunsubscribe"}};
  for (const auto& [command, kind] : kKinds)
    if (name == command) return kind;
  return {};
}

bool IsMessageKind(std::string_view kind) {
  return EqualsLower(kind, "message") || EqualsLower(kind, "pmessage") || EqualsLower(kind, "smessage");
}

int64_t ToInt(std::string_view s) {
  int64_t v = -1;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

}  // namespace

Stitcher::Stitcher(const Limits& limits, db::Metrics& metrics, bool at_start)
    : limits_(limits), metrics_(metrics), db_(at_start ? "0" : "") {}

Stitcher::Group* Stitcher::Find(uint64_t id) {
  if (groups_.empty() || id < groups_.front().id) return nullptr;
  const uint64_t i = id - groups_.front().id;
  return i < groups_.size() ? &groups_[i] : nullptr;
}

Stitcher::Group& Stitcher::GroupFor(const Command& c, const Value& v, Output& out) {
  Group* g = groups_.empty() ? nullptr : &groups_.back();
  // A transaction takes everything up to its EXEC/DISCARD; a pipeline takes what is written
  // before any of its replies was read. MULTI always opens an operation of its own.
  const bool joins = g && !g->done &&
                     (g->in_multi || (!g->replied && g->op.kind != OpKind::kTransaction && c.name != "MULTI"));
  if (!joins) {
    g = &groups_.emplace_back();
    g->id = next_id_++;
    g->op.kind = c.name == "MULTI" ? OpKind::kTransaction : OpKind::kCommand;
    g->op.db_index = db_;
    g->op.request_first = v.first;
    g->in_multi = c.name == "MULTI";
  } else if (g->op.kind == OpKind::kCommand) {
    g->op.kind = OpKind::kPipeline;
  }
  Operation& op = g->op;
  op.request_last = v.last;
  if (v.missing) op.request_incomplete = true;
  // Within a transaction MULTI and EXEC frame the commands: they do not make the names differ.
  const bool frame = op.kind == OpKind::kTransaction && (c.name == "MULTI" || c.name == "EXEC" || c.name == "DISCARD");
  if (!frame) {
    const Command* first = nullptr;
    for (const Command& k : op.commands) {
      const bool k_frame = op.kind == OpKind::kTransaction && (k.name == "MULTI" || k.name == "EXEC" || k.name == "DISCARD");
      if (!k_frame) {
        first = &k;
        break;
      }
    }
    if (first && first->name != c.name) op.same_name = false;
  }
  ++op.command_count;
  if (op.commands.size() < Operation::kKeptCommands) op.commands.push_back(c);
  const bool first_command = op.command_count == 1;
  if (first_command) out.OnRequest(op);  // identity fixed on the first command
  return *g;
}

void Stitcher::OnCommand(const Value& v, Output& out) {
  if (done_) return;
  Command c;
  c.name = Upper(v.element[0].substr(0, 32));
  if (c.name.empty()) return;
  c.argc = v.elements > 0 ? v.elements - 1 : 0;
  for (size_t i = 0; i < Command::kKeptArgs && i + 1 < Value::kKeptElements; ++i) c.args[i] = v.element[i + 1];
  if (unaligned_) command_since_ = true;
  if (pending_.size() >= limits_.max_pending) {
    metrics_.Fail(db::Failure::kTooManyPending);
    metrics_.Fail(db::Failure::kGaveUp);
    Abandon();
    done_ = true;
    return;
  }
  Group& g = GroupFor(c, v, out);
  Pending p;
  p.group = g.id;
  if (g.op.command_count <= Operation::kKeptCommands) p.command_index = g.op.command_count - 1;
  p.confirmation = std::string(ConfirmationOf(c.name));
  if (!p.confirmation.empty()) {
    const bool unsubscribe = p.confirmation.find("unsubscribe") != std::string::npos;
    p.until_unsubscribed = unsubscribe && c.argc == 0;
    p.replies_left = c.argc == 0 ? 1 : c.argc;
  }
  if (c.name == "SELECT" && c.argc == 1) p.select = c.args[0];
  p.reset = c.name == "RESET";
  p.monitor = c.name == "MONITOR";
  if (c.name == "EXEC" || c.name == "DISCARD") g.in_multi = false;
  ++g.waiting;
  pending_.push_back(std::move(p));
  // Replication streams an RDB file and commands from here: not RESP replies to pair.
  if (c.name == "SYNC" || c.name == "PSYNC") done_ = true;
}

bool Stitcher::IsPush(const Value& v) const {
  const Pending* head = pending_.empty() ? nullptr : &pending_.front();
  const bool confirmation = head && !head->confirmation.empty() && v.elements >= 1 &&
                            EqualsLower(v.element[0], head->confirmation);
  if (v.type == '>') return !confirmation;  // RESP3: pushes are typed
  // RESP2: a subscribed connection's messages are arrays whose first element says so.
  return v.type == '*' && subscribed_ && !confirmation && v.elements >= 3 && IsMessageKind(v.element[0]);
}

void Stitcher::Attribute(Group& g, const Value& v) {
  Operation& op = g.op;
  if (!op.response_seen) {
    op.response_seen = true;
    op.response_first = v.first;
  }
  op.response_last = v.last;
  if (v.missing) op.response_incomplete = true;
}

void Stitcher::OnReply(const Value& v, Output& out) {
  if (done_) return;
  if (IsPush(v)) {
    metrics_.pushes->Add(1);
    return;
  }
  if (pending_.empty()) {
    metrics_.Fail(db::Failure::kUnexpectedResponse);  // joined mid-stream, or a command lost
    return;
  }
  Pending& head = pending_.front();
  Group* g = Find(head.group);
  if (g) {
    Attribute(*g, v);
    g->replied = true;
    std::string_view error = v.error;
    if (error.empty() && v.element_errors > 0) error = v.first_element_error;  // EXEC's results
    if (!error.empty()) {
      if (head.command_index < g->op.commands.size()) g->op.commands[head.command_index].error = std::string(error);
      if (g->op.error.empty()) g->op.error = std::string(error);
    }
    if (head.command_index < g->op.commands.size()) {
      const std::string& name = g->op.commands[head.command_index].name;
      // EXEC answered null: a WATCHed key changed; DISCARD: the client gave the transaction up.
      if ((name == "EXEC" && v.null) || (name == "DISCARD" && v.type == '+')) g->op.aborted = true;
    }
  }
  if (!head.confirmation.empty() && v.elements >= 3) {
    const int64_t count = ToInt(v.element[2]);
    subscribed_ = count > 0;
    if (head.until_unsubscribed && count > 0) return;  // more confirmations come
  }
  if (v.type == '+' && !head.select.empty()) db_ = head.select;
  if (head.reset && v.type == '+') {
    db_.assign(1, '0');  // (not = "0": GCC 12 warns falsely, -Wrestrict)
    subscribed_ = false;
  }
  if (head.monitor && v.type == '+') done_ = true;  // every command of the server follows
  if (--head.replies_left > 0 && !head.until_unsubscribed) return;
  pending_.pop_front();
  if (!g) return;
  if (--g->waiting == 0 && !g->in_multi) Complete(*g, Outcome::kComplete, out);
}

void Stitcher::Complete(Group& g, Outcome outcome, Output& out) {
  if (g.done) return;
  g.done = true;
  g.op.outcome = outcome;
  Flush(out);
}

void Stitcher::Flush(Output& out) {
  while (!groups_.empty() && groups_.front().done) {
    metrics_.Ended(groups_.front().op.outcome);
    out.OnOperation(std::move(groups_.front().op));
    groups_.pop_front();
  }
}

void Stitcher::EndAllAsLost(Output& out) {
  for (Group& g : groups_) {
    if (g.done) continue;
    g.op.response_incomplete = true;
    g.in_multi = false;
    Complete(g, g.op.response_seen ? Outcome::kComplete : Outcome::kResponseLost, out);
  }
  pending_.clear();
}

void Stitcher::OnCommandsLost(Output& out) {
  metrics_.Fail(db::Failure::kFramingLost);
  for (Group& g : groups_) g.op.request_incomplete = true;
  EndAllAsLost(out);
  unaligned_ = true;
  command_since_ = false;
}

void Stitcher::OnRepliesLost(Output& out) {
  metrics_.Fail(db::Failure::kFramingLost);
  EndAllAsLost(out);
  unaligned_ = true;
  command_since_ = false;
}

void Stitcher::OnClose(uint64_t ts_ns, Output& out) {
  for (Group& g : groups_) {
    if (g.done) continue;
    g.done = true;
    g.op.closed_ts_ns = ts_ns;
    g.op.outcome = Outcome::kClosedBeforeResponse;
  }
  Flush(out);
  pending_.clear();
}

void Stitcher::Abandon() {
  for (const Group& g : groups_)
    if (!g.done) metrics_.abandoned->Add(1);
  groups_.clear();
  pending_.clear();
}

}  // namespace threadline::redis
