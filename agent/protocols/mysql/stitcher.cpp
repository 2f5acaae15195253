#include "agent/protocols/mysql/stitcher.h"

#include <algorithm>
#include <utility>

namespace threadline::mysql {

namespace {

uint32_t Le(std::span<const uint8_t> b, size_t o, size_t n) {
  uint32_t v = 0;
  for (size_t i = 0; i < n && o + i < b.size(); ++i) v |= static_cast<uint32_t>(b[o + i]) << (8 * i);
  return v;
}

std::string_view AsString(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// The schema of a `USE db` statement; empty for any other statement.
std::string UseTarget(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n' || text.front() == '\t')) text.remove_prefix(1);
  if (text.size() < 5 || Lower(text[0]) != 'u' || Lower(text[1]) != 's' || Lower(text[2]) != 'e' ||
      (text[3] != ' ' && text[3] != '\t' && text[3] != '`'))
    return {};
  text.remove_prefix(3);
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  std::string out;
  for (char c : text) {
    if (c == ';' || c == ' ' || c == '\n' || c == '\t') break;
    if (c != '`') out += c;
  }
  return out;
}

// Names of the commands that are not statements, for their spans.
const char* CommandName(uint8_t cmd) {
  switch (cmd) {
    case kComPing: return "PING";
    case kComResetConnection: return "RESET CONNECTION";
    case kComStatistics: return "STATISTICS";
    case kComStmtReset: return "STMT RESET";
    case kComStmtFetch: return "FETCH";
    case kComSetOption: return "SET OPTION";
    case kComDebug: return "DEBUG";
    case kComProcessKill: return "PROCESS KILL";
    case kComProcessInfo: return "PROCESS INFO";
    case kComRefresh: return "REFRESH";
    case kComShutdown: return "SHUTDOWN";
    case kComFieldList: return "FIELD LIST";
    default: return "COMMAND";
  }
}

}  // namespace

Stitcher::Stitcher(const Limits& limits, db::Metrics& metrics, bool at_start)
    : limits_(limits),
      metrics_(metrics),
      phase_(at_start ? Phase::kGreeting : Phase::kCommand),
      statements_(limits.max_statements) {}

void Stitcher::StartAfterTls(const std::optional<GreetingFacts>& greeting) {
  phase_ = Phase::kHandshakeResponse;
  if (!greeting) return;  // the server and its capabilities stay unknown
  mariadb_ = greeting->mariadb;
  server_caps_ = greeting->capabilities;
  server_caps_known_ = true;
}

Stitcher::Eof Stitcher::EofAfterDefinitions() const {
  if (!caps_known_) return Eof::kUnknown;
  return (client_caps_ & server_caps_ & kClientDeprecateEof) ? Eof::kNotSent : Eof::kSent;
}

// ---- Client ------------------------------------------------------------------------------

void Stitcher::OnClientPacket(const db::Frame& f, Output& out) {
  if (done()) return;
  const bool continuation = client_continues_;
  client_continues_ = f.length == kMaxPacketPayload;
  if (continuation) {
    if (!ops_.empty()) ops_.back().op.request_last = f.last;
    return;
  }
  switch (phase_) {
    case Phase::kGreeting:
      phase_ = Phase::kCommand;  // the client spoke first: the start was not seen after all
      break;
    case Phase::kHandshakeResponse:
      OnHandshake(f);
      return;
    case Phase::kAuth:
    case Phase::kDone:
      return;  // authentication exchanges
    case Phase::kCommand:
      break;
  }
  if (f.seq == 0) {
    OnCommand(f, out);
  } else if (!ops_.empty()) {
    ops_.back().op.request_last = f.last;  // LOCAL INFILE data
  }
}

void Stitcher::OnHandshake(const db::Frame& f) {
  const std::optional<HandshakeResponse> r = DecodeHandshakeResponse(f.body, f.length);
  phase_ = Phase::kAuth;
  if (!r) {
    metrics_.Fail(db::Failure::kBadMessage);
    return;
  }
  client_caps_ = r->capabilities;
  caps_known_ = server_caps_known_;
  if (r->ssl_request) {
    phase_ = Phase::kDone;  // TLS from here: its plaintext is a connection of its own
    if (server_caps_known_) tls_follows_ = GreetingFacts{mariadb_, server_caps_};
    return;
  }
  if (client_caps_ & server_caps_ & kClientCompress) {
    phase_ = Phase::kDone;  // compressed packets from here: not read
    return;
  }
  if (!r->database.empty()) database_ = std::string(r->database);
}

void Stitcher::OnCommand(const db::Frame& f, Output& out) {
  if (f.body.empty()) return;
  const uint8_t cmd = f.body[0];
  switch (cmd) {
    case kComQuit:
    case kComStmtSendLongData:
      return;  // no answer
    case kComStmtClose:
      statements_.Erase(Le(f.body, 1, 4));
      return;
    case kComBinlogDump:
    case kComBinlogDumpGtid:
    case kComRegisterSlave:
      phase_ = Phase::kDone;  // replication: a stream of another kind follows
      return;
    case kComChangeUser:
      // Answered through authentication; the schema it names is the namespace from then on
      // (the client's capabilities unknown: as every 4.1+ client, a length-prefixed auth response).
      if (const auto schema = DecodeChangeUserSchema(f.body, client_caps_ ? client_caps_ : kClientSecureConnection))
        database_ = std::string(*schema);
      phase_ = Phase::kAuth;
      return;
    default:
      break;
  }
  // Answers whose framing was lost and that never ended: a new command means they are over
  // (the protocol answers one command at a time).
  if (server_unaligned_) {
    server_unaligned_ = false;
    realign_server_ = true;
    stray_eof_seq_ = -1;
    while (!ops_.empty()) {
      Operation& lost = ops_.front().op;
      lost.response_incomplete = true;
      if (!lost.response_seen) lost.outcome = Outcome::kResponseLost;
      Finish(out);
    }
  }
  if (ops_.size() >= limits_.max_operations) {
    metrics_.Fail(db::Failure::kTooManyPending);
    metrics_.Fail(db::Failure::kGaveUp);
    Abandon();
    phase_ = Phase::kDone;
    return;
  }
  Slot& s = ops_.emplace_back();
  Operation& op = s.op;
  op.command = cmd;
  op.database = database_;
  op.mariadb = mariadb_;
  op.request_first = f.first;
  op.request_last = f.last;
  op.request_incomplete = f.missing;
  auto take_text = [&](size_t from) {
    const std::string_view text = from <= f.body.size() ? AsString(f.body.subspan(from)) : std::string_view();
    op.text.assign(text.substr(0, limits_.max_statement_bytes));
    op.text_truncated = !f.kept_all() || text.size() > limits_.max_statement_bytes;
  };
  switch (cmd) {
    case kComQuery: {
      op.kind = OpKind::kQuery;
      size_t o = 1;
      if (caps_known_ && (client_caps_ & server_caps_ & kClientQueryAttributes)) {
        // Query attributes: parameter count, parameter set count; with parameters, their types
        // and values come before the text (not read: the text is left unknown).
        const auto params = ReadLenenc(f.body, o);
        if (!params || !ReadLenenc(f.body, o) || *params > 0) op.text_known = false;
      }
      if (op.text_known) take_text(o);
      break;
    }
    case kComStmtPrepare:
      op.kind = OpKind::kPrepare;
      take_text(1);
      break;
    case kComStmtExecute: {
      op.kind = OpKind::kExecute;
      uint32_t id = Le(f.body, 1, 4);
      if (id == 0xffffffff) id = last_prepared_;  // MariaDB: the statement just prepared
      op.statement_id = id;
      if (const db::StatementText* st = statements_.Find(id)) {
        op.text = st->text;
        op.text_truncated = st->truncated;
      } else {
        op.text_known = false;
        metrics_.Fail(db::Failure::kStatementUnknown);
      }
      break;
    }
    case kComInitDb:
      op.kind = OpKind::kInitDb;
      take_text(1);
      break;
    case kComStmtFetch:
    case kComFieldList:
      op.kind = OpKind::kOther;
      s.resp = Resp::kRows;  // rows (or column definitions) up to an EOF
      break;
    case kComStatistics:
      op.kind = OpKind::kOther;
      s.resp = Resp::kOnePacket;
      break;
    default:
      op.kind = OpKind::kOther;
      break;
  }
  op.command_name = CommandName(cmd);
  out.OnRequest(op);
}

void Stitcher::OnClientLost() {
  if (done()) return;
  metrics_.Fail(db::Failure::kFramingLost);
  client_continues_ = false;
}

// ---- Server ------------------------------------------------------------------------------

void Stitcher::OnServerPacket(const db::Frame& f, Output& out) {
  if (done()) return;
  const bool continuation = server_continues_;
  server_continues_ = f.length == kMaxPacketPayload;
  if (continuation) {
    if (!ops_.empty()) Attribute(ops_.front(), f);
    return;
  }
  const uint8_t first = f.body.empty() ? 0 : f.body[0];
  switch (phase_) {
    case Phase::kGreeting:
      if (const std::optional<Greeting> g = DecodeGreeting(f.body)) {
        server_caps_ = g->capabilities;
        server_caps_known_ = true;
        mariadb_ = g->version.find("MariaDB") != std::string_view::npos;
      }
      phase_ = Phase::kHandshakeResponse;
      return;
    case Phase::kHandshakeResponse:
    case Phase::kDone:
      return;
    case Phase::kAuth:
      if (first == 0x00) phase_ = Phase::kCommand;  // authenticated (an ERR ends the connection)
      return;
    case Phase::kCommand:
      break;
  }
  if (stray_eof_seq_ >= 0) {
    const int seq = stray_eof_seq_;
    stray_eof_seq_ = -1;
    if (f.seq == seq && first == 0xfe && f.length == 5) return;  // it ended the previous response
  }
  if (ops_.empty()) {
    if (first == 0x00 || first == 0xff || first == 0xfe) metrics_.Fail(db::Failure::kUnexpectedResponse);
    return;  // answers to commands never seen (joined mid-stream)
  }
  Slot& s = ops_.front();
  Attribute(s, f);
  if (Step(s, f)) {
    Finish(out);
    if (ops_.empty()) server_unaligned_ = false;  // every answer is in: aligned again
  }
}

bool Stitcher::Step(Slot& s, const db::Frame& f) {
  Operation& op = s.op;
  const uint8_t first = f.body.empty() ? 0 : f.body[0];
  const bool eof = first == 0xfe && f.length == 5;
  switch (s.resp) {
    case Resp::kFirst: {
      if (first == 0xff) {
        const ErrPacket e = DecodeErr(f.body);
        if (e.code == 0xffff) return false;  // MariaDB progress report: not an answer
        op.error_code = e.code;
        op.sqlstate = std::string(e.sqlstate);
        return true;
      }
      if (first == 0x00 && op.kind == OpKind::kPrepare) {
        // Statement id (4), columns (2), parameters (2): their definitions follow.
        op.statement_id = Le(f.body, 1, 4);
        last_prepared_ = op.statement_id;
        statements_.Put(op.statement_id, db::StatementText{op.text, op.text_truncated});
        s.prepare_columns = Le(f.body, 5, 2);
        const uint64_t params = Le(f.body, 7, 2);
        if (params > 0) {
          s.resp = Resp::kParams;
          s.left = params;
          return false;
        }
        if (s.prepare_columns > 0) {
          s.resp = Resp::kPrepareColumns;
          s.left = s.prepare_columns;
          return false;
        }
        return true;
      }
      if (first == 0x00 || (first == 0xfe && f.length < 9)) {  // OK (EOF for a few commands)
        ++op.result_sets;
        if (op.kind == OpKind::kInitDb) database_ = op.text;
        if (op.kind == OpKind::kQuery) {
          if (std::string use = UseTarget(op.text); !use.empty()) database_ = std::move(use);
        }
        return !(StatusFlags(f.body, f.length) & kServerMoreResultsExist);
      }
      if (first == 0xfb) return false;  // LOCAL INFILE: the client sends the file, then an OK/ERR
      size_t o = 0;
      const std::optional<uint64_t> columns = ReadLenenc(f.body, o);
      if (!columns || *columns == 0) {
        metrics_.Fail(db::Failure::kBadMessage);
        return true;
      }
      s.resp = Resp::kColumns;
      s.left = *columns;
      return false;
    }
    case Resp::kColumns:
      if (--s.left > 0) return false;
      s.resp = EofAfterDefinitions() == Eof::kNotSent ? Resp::kRows : Resp::kColumnsEnd;
      return false;
    case Resp::kColumnsEnd:
      s.resp = Resp::kRows;
      if (eof) return false;
      return Step(s, f);  // no EOF after all (CLIENT_DEPRECATE_EOF, capabilities unknown)
    case Resp::kRows:
      if (first == 0xfe && f.length < kMaxPacketPayload) {  // EOF, or the OK that ends rows
        ++op.result_sets;
        if (StatusFlags(f.body, f.length) & kServerMoreResultsExist) {
          s.resp = Resp::kFirst;
          return false;
        }
        return true;
      }
      if (first == 0xff) {
        s.resp = Resp::kFirst;
        return Step(s, f);  // an error ends the rows
      }
      ++op.rows;
      return false;
    case Resp::kParams:
      if (--s.left > 0) return false;
      return AfterDefinitions(s, f, Resp::kParamsEnd, Resp::kPrepareColumns, s.prepare_columns > 0);
    case Resp::kParamsEnd:
      if (eof) {
        if (s.prepare_columns == 0) return true;
        s.resp = Resp::kPrepareColumns;
        s.left = s.prepare_columns;
        return false;
      }
      s.resp = Resp::kPrepareColumns;  // no EOF after all: a column definition
      s.left = s.prepare_columns;
      return s.left == 0 ? true : Step(s, f);
    case Resp::kPrepareColumns:
      if (--s.left > 0) return false;
      return AfterDefinitions(s, f, Resp::kPrepareColumnsEnd, Resp::kPrepareColumnsEnd, false);
    case Resp::kPrepareColumnsEnd:
    case Resp::kOnePacket:
      return true;
  }
  return true;
}

bool Stitcher::AfterDefinitions(Slot& s, const db::Frame& f, Resp classic_end, Resp next, bool next_exists) {
  switch (EofAfterDefinitions()) {
    case Eof::kSent:
      s.resp = classic_end;
      return false;
    case Eof::kNotSent:
      if (!next_exists) return true;
      s.resp = next;
      s.left = s.prepare_columns;
      return false;
    case Eof::kUnknown:
      if (next_exists) {
        s.resp = classic_end;  // an EOF or the next definitions: told apart by their size
        return false;
      }
      // Over unless an EOF follows: if the next packet is one that continues this sequence, it
      // is swallowed (the next response starts at sequence id 1).
      stray_eof_seq_ = (f.seq + 1) & 0xff;
      return true;
  }
  return true;
}

void Stitcher::Attribute(Slot& s, const db::Frame& f) {
  Operation& op = s.op;
  if (!op.response_seen) {
    op.response_seen = true;
    op.response_first = f.first;
  }
  op.response_last = f.last;
  if (f.missing) op.response_incomplete = true;
}

void Stitcher::Finish(Output& out) {
  Operation op = std::move(ops_.front().op);
  ops_.pop_front();
  metrics_.Ended(op.outcome);
  out.OnOperation(std::move(op));
}

void Stitcher::OnServerLost() {
  if (done()) return;
  metrics_.Fail(db::Failure::kFramingLost);
  server_unaligned_ = true;
  server_continues_ = false;
  stray_eof_seq_ = -1;
  if (!ops_.empty()) ops_.front().op.response_incomplete = true;
}

void Stitcher::OnClose(uint64_t ts_ns, Output& out) {
  while (!ops_.empty()) {
    Operation& op = ops_.front().op;
    op.closed_ts_ns = ts_ns;
    // Part of an answer (or an error) came: it ended with the connection. None: closed before it.
    if (op.response_seen) {
      if (op.error_code == 0) op.response_incomplete = true;
    } else {
      op.outcome = Outcome::kClosedBeforeResponse;
    }
    Finish(out);
  }
}

void Stitcher::Abandon() {
  metrics_.abandoned->Add(ops_.size());
  ops_.clear();
}

}  // namespace threadline::mysql
