#include "agent/protocols/http1/parser.h"

#include <algorithm>
#include <utility>

#include "agent/protocols/http1/syntax.h"

namespace threadline::http1 {

namespace {
// The start of a start line is checked for plausibility on every byte up to this length, so
// binary garbage is rejected before it is buffered.
constexpr size_t kPlausibilityWindow = 64;
constexpr size_t kRetainedLineCapacity = 4096;
}  // namespace

std::string_view ToString(FailureReason r) {
  switch (r) {
    case FailureReason::kBadStartLine: return "bad_start_line";
    case FailureReason::kBadHeader: return "bad_header";
    case FailureReason::kBadFraming: return "bad_framing";
    case FailureReason::kHeaderTooLarge: return "header_too_large";
    case FailureReason::kGapInHeaders: return "gap_in_headers";
    case FailureReason::kBadChunk: return "bad_chunk";
    case FailureReason::kChunkFramingLost: return "chunk_framing_lost";
    case FailureReason::kNoMessageStart: return "no_message_start";
    case FailureReason::kTooManyPipelined: return "too_many_pipelined";
    case FailureReason::kGaveUp: return "gave_up";
  }
  return "unknown";
}

MessageParser::MessageParser(MessageKind kind, const ParserLimits& limits, Listener& listener,
                             MessagePool* pool)
    : kind_(kind), limits_(limits), listener_(listener), pool_(pool) {}

bool MessageParser::in_message() const {
  switch (state_) {
    case State::kStartLine: return msg_started_;
    case State::kResync: case State::kPaused: case State::kHeld: case State::kStopped: return false;
    default: return true;
  }
}

std::string_view MessageParser::ConsumeLine(std::string_view& in, size_t limit, bool& complete,
                                            bool& overflow) {
  size_t nl = in.find('\n');
  complete = nl != std::string_view::npos;
  size_t take = complete ? nl : in.size();
  overflow = line_.size() + take + (complete ? 1 : 0) > limit;
  if (overflow) return {};
  if (complete && line_.empty()) {
    const std::string_view line = in.substr(0, take);
    in.remove_prefix(take + 1);
    return line;
  }
  line_.append(in.data(), take);
  in.remove_prefix(complete ? take + 1 : take);
  return line_;
}

void MessageParser::Feed(std::span<const uint8_t> bytes, const ChunkMeta& meta) {
  meta_ = meta;
  std::string_view in(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  chunk_begin_ = in.data();
  bool complete = false;
  bool overflow = false;
  while (!in.empty()) {
    switch (state_) {
      case State::kStopped:
      case State::kHeld:
        NoteSwitchPos(in);
        return;
      case State::kPaused:
        paused_dropped_ += in.size();
        return;
      case State::kStartLine: {
        if (!msg_started_) {
          // Empty lines before a start line are ignored (RFC 9112 §2.2).
          while (!in.empty() && (in.front() == '\r' || in.front() == '\n')) in.remove_prefix(1);
          if (in.empty()) return;
          StartMessage(PosOf(in.data()));
        }
        bool checked = line_.size() >= kPlausibilityWindow;
        const std::string_view line = ConsumeLine(
            in, std::min(limits_.max_start_line, limits_.max_header_bytes), complete, overflow);
        std::string_view window = std::string_view(line_).substr(0, kPlausibilityWindow);
        if (overflow) {
          Fail(FailureReason::kHeaderTooLarge, true);
          EnterResync(false);
        } else if (complete) {
          OnStartLine(syntax::StripCr(line), line.size() + 1);
          line_.clear();
        } else if (!checked &&
                   !(kind_ == MessageKind::kRequest ? syntax::PlausibleRequestPrefix(window)
                                                    : syntax::PlausibleResponsePrefix(window))) {
          Fail(FailureReason::kBadStartLine, false);
          EnterResync(true);
        }
        break;
      }
      case State::kHeaders:
      case State::kTrailers:
      case State::kChunkSize:
      case State::kChunkDataEnd: {
        if (state_ == State::kHeaders && line_.empty()) {
          ReadWholeHeaderLines(in);
          if (state_ != State::kHeaders || in.empty()) break;
        }
        size_t limit = state_ == State::kChunkSize      ? limits_.max_chunk_line
                       : state_ == State::kChunkDataEnd ? 2
                                                        : header_budget_;
        const std::string_view whole = ConsumeLine(in, limit, complete, overflow);
        if (overflow) {
          if (state_ == State::kHeaders) {
            Fail(FailureReason::kHeaderTooLarge, true);
            EnterResync(false);
          } else {
            FinishTruncated(state_ == State::kTrailers ? FailureReason::kHeaderTooLarge
                                                       : FailureReason::kBadChunk);
          }
        } else if (complete) {
          size_t wire = whole.size() + 1;
          std::string_view line = syntax::StripCr(whole);
          if (state_ == State::kHeaders) {
            header_budget_ -= wire;
            msg_->header_bytes += wire;
            OnHeaderLine(line);
          } else {
            msg_->body_wire_bytes += wire;
            if (state_ == State::kTrailers) {
              header_budget_ -= wire;
              OnTrailerLine(line);
            } else if (state_ == State::kChunkSize) {
              OnChunkSizeLine(line);
            } else if (line.empty()) {
              state_ = State::kChunkSize;
            } else {
              FinishTruncated(FailureReason::kBadChunk);
            }
          }
          line_.clear();
        }
        break;
      }
      case State::kBodyLength:
      case State::kChunkData: {
        uint64_t n = std::min<uint64_t>(in.size(), body_remaining_);
        body_remaining_ -= n;
        msg_->body_bytes += n;
        msg_->body_wire_bytes += n;
        in.remove_prefix(n);
        if (body_remaining_ == 0) {
          if (state_ == State::kBodyLength) FinishMessage();
          else state_ = State::kChunkDataEnd;
        }
        break;
      }
      case State::kBodyUntilClose:
        msg_->body_bytes += in.size();
        msg_->body_wire_bytes += in.size();
        in = {};
        break;
      case State::kResync:
        OnResyncBytes(in);
        break;
    }
  }
  if (state_ == State::kHeld || state_ == State::kStopped) NoteSwitchPos(in);
}

void MessageParser::ReadWholeHeaderLines(std::string_view& in) {
  // What the general path does for a line whole in the chunk (ConsumeLine's view of `in`),
  // without going back through the state switch and the limit choice for every line, and for a
  // plain field line in one pass over its bytes (ScanFieldLine: finding the line end and
  // checking the bytes were two passes, then the name's and the value's bounds a third). A line
  // not whole here, or over the budget, is left to the general path (which reports overflow).
  while (state_ == State::kHeaders && !in.empty()) {
    syntax::ScannedLine line;
    const syntax::Scan scan = syntax::ScanFieldLine(in, line);
    if (scan == syntax::Scan::kIncomplete) return;
    if (scan == syntax::Scan::kOther) {
      // An obs-fold or a bad line: parsed (and refused) as every line was before.
      const size_t nl = in.find('\n');
      if (nl == std::string_view::npos || nl + 1 > header_budget_) return;
      const std::string_view whole = syntax::StripCr(in.substr(0, nl));
      in.remove_prefix(nl + 1);
      header_budget_ -= nl + 1;
      msg_->header_bytes += nl + 1;
      OnHeaderLine(whole);
      continue;
    }
    if (line.wire > header_budget_) return;
    in.remove_prefix(line.wire);
    header_budget_ -= line.wire;
    msg_->header_bytes += line.wire;
    if (scan == syntax::Scan::kEnd) {
      OnHeadersDone();
      continue;
    }
    const FieldName field = IdentifyField(line.name);
    // Most fields are neither framing fields nor read (Server, Date, Accept, ETag, ...): only
    // skipped (what OnField does with them), without the call.
    if (field == FieldName::kOther && limits_.stored_fields != StoredFields::kAll)
      msg_->headers.Skip();
    else
      OnField(line.name, line.value, field);
  }
}

void MessageParser::NoteSwitchPos(std::string_view rest) {
  // Only a switch at a message's end has a boundary to tell (Stop() from outside, e.g. giving
  // up, has none).
  if (!switch_pending_) return;
  switch_pending_ = false;
  switch_pos_ = PosOf(rest.data());
}

void MessageParser::Gap(uint64_t len, GapReason /*reason*/, const ChunkMeta& meta) {
  meta_ = meta;
  while (len > 0) {
    switch (state_) {
      case State::kStopped:
      case State::kHeld:  // the holder keeps the gap (Http1Connection)
        return;
      case State::kPaused:
        paused_dropped_ += len;
        return;
      case State::kStartLine:
      case State::kHeaders:
        // Bytes of a start line or header block are gone (or, between messages, the start
        // of the next message): the message cannot be parsed.
        Fail(FailureReason::kGapInHeaders, true);
        EnterResync(false);
        break;
      case State::kBodyLength:
      case State::kChunkData: {
        uint64_t n = std::min(len, body_remaining_);
        body_remaining_ -= n;
        len -= n;
        msg_->body_bytes += n;
        msg_->body_wire_bytes += n;
        msg_->body_bytes_not_captured += n;
        if (body_remaining_ == 0) {
          if (state_ == State::kBodyLength) {
            FinishMessage();
          } else if (len > 0) {
            FinishTruncated(FailureReason::kChunkFramingLost);
          } else {
            state_ = State::kChunkDataEnd;
          }
        }
        break;
      }
      case State::kBodyUntilClose:
        msg_->body_bytes += len;
        msg_->body_wire_bytes += len;
        msg_->body_bytes_not_captured += len;
        return;
      case State::kChunkSize:
      case State::kChunkDataEnd:
      case State::kTrailers:
        FinishTruncated(FailureReason::kChunkFramingLost);
        break;
      case State::kResync:
        // A candidate line must be whole: what came before the gap is useless.
        line_.clear();
        CountSkipped(len);
        return;
    }
  }
}

void MessageParser::Close() {
  switch (state_) {
    case State::kBodyUntilClose:
      FinishMessage();
      break;
    case State::kBodyLength:
    case State::kChunkSize:
    case State::kChunkData:
    case State::kChunkDataEnd:
    case State::kTrailers:
      msg_->truncated = true;
      FinishMessage();
      break;
    default:
      break;
  }
  state_ = State::kStopped;
  line_.clear();
  line_.shrink_to_fit();
}

void MessageParser::Stop() {
  state_ = State::kStopped;
  line_.clear();
  line_.shrink_to_fit();
}

void MessageParser::Resume() {
  if (state_ != State::kPaused) return;
  if (paused_dropped_ == 0) {
    state_ = State::kStartLine;
    msg_started_ = false;
  } else {
    EnterResync(false);
  }
  paused_dropped_ = 0;
}

void MessageParser::Release() {
  if (state_ != State::kHeld) return;
  state_ = State::kStartLine;
  next_state_after_message_ = State::kStartLine;
  msg_started_ = false;
  switch_pending_ = false;
  switch_pos_.reset();
}

void MessageParser::StartMessage(uint64_t first_byte_pos) {
  // A long line of an earlier message must not pin its buffer for the connection's lifetime.
  if (line_.empty() && line_.capacity() > kRetainedLineCapacity) std::string().swap(line_);
  // The message a failure left behind is reused; one handed over is replaced.
  if (msg_) msg_->Reset();
  else msg_ = NewMessage(pool_);
  msg_->kind = kind_;
  msg_->first_chunk = meta_;
  msg_->first_chunk.pos = first_byte_pos;
  msg_started_ = true;
  content_length_ = 0;
  has_content_length_ = content_length_invalid_ = has_transfer_encoding_ = false;
  chunked_final_ = saw_keep_alive_ = saw_upgrade_field_ = saw_connection_upgrade_ = false;
  header_budget_ = limits_.max_header_bytes;
}

void MessageParser::OnStartLine(std::string_view line, size_t wire) {
  bool ok = kind_ == MessageKind::kRequest ? syntax::ParseRequestLine(line, *msg_)
                                           : syntax::ParseStatusLine(line, *msg_);
  if (!ok || wire > limits_.max_header_bytes) {
    Fail(ok ? FailureReason::kHeaderTooLarge : FailureReason::kBadStartLine, ok);
    EnterResync(false);
    return;
  }
  header_budget_ = limits_.max_header_bytes - wire;
  msg_->header_bytes = wire;
  state_ = State::kHeaders;
}

void MessageParser::OnHeaderLine(std::string_view line) {
  if (line.empty()) {
    OnHeadersDone();
    return;
  }
  syntax::HeaderLine h;
  if (!syntax::ParseHeaderLine(line, h)) {
    Fail(FailureReason::kBadHeader, true);
    EnterResync(false);
    return;
  }
  if (h.continuation) {
    // obs-fold (RFC 9112 §5.2): replaced by SP. Before the first field it is whitespace after
    // the start line, whose lines are consumed without further processing (§2.2).
    msg_->headers.AppendToLast(h.value);
    return;
  }
  OnField(h.name, h.value, IdentifyField(h.name));
}

void MessageParser::OnField(std::string_view name, std::string_view value, FieldName field) {
  switch (field) {
    case FieldName::kContentLength: {
      auto n = syntax::ParseContentLength(value);
      if (!n || (has_content_length_ && *n != content_length_)) content_length_invalid_ = true;
      if (n) content_length_ = *n;
      has_content_length_ = true;
      break;
    }
    case FieldName::kTransferEncoding:
      has_transfer_encoding_ = true;
      chunked_final_ = EqualsIgnoreCase(syntax::LastListElement(value), "chunked");
      break;
    case FieldName::kConnection: {
      const uint8_t options = syntax::ConnectionOptions(value);
      if (options & syntax::kConnectionClose) msg_->connection_close = true;
      if (options & syntax::kConnectionKeepAlive) saw_keep_alive_ = true;
      if (options & syntax::kConnectionUpgrade) saw_connection_upgrade_ = true;
      break;
    }
    case FieldName::kUpgrade:
      saw_upgrade_field_ = true;
      break;
    case FieldName::kExpect:
      if (syntax::ListHasToken(value, "100-continue")) msg_->expect_continue = true;
      break;
    default:
      break;
  }
  if (limits_.stored_fields == StoredFields::kAll || IsReadField(kind_, field))
    msg_->headers.Add(name, value, field);
  else
    msg_->headers.Skip();
}

void MessageParser::OnHeadersDone() {
  if (msg_->version_minor == 0 && !saw_keep_alive_) msg_->connection_close = true;
  msg_->te_and_cl = has_transfer_encoding_ && has_content_length_;
  bool bad_framing = false;
  bool no_body = false;
  next_state_after_message_ = State::kStartLine;
  if (kind_ == MessageKind::kRequest) {
    msg_->upgrade_requested = saw_connection_upgrade_ && saw_upgrade_field_;
    // What follows an upgrade request is another protocol's if the answer is 101: held until
    // the answer tells (a client may speak the new protocol before the agent saw the 101).
    if (msg_->upgrade_requested) next_state_after_message_ = State::kHeld;
    if (msg_->method == "CONNECT") {
      // CONNECT has no content; what follows belongs to the tunnel unless it is refused.
      no_body = true;
      next_state_after_message_ = State::kPaused;
    } else if (has_transfer_encoding_) {
      // A request whose final coding is not chunked cannot be framed (RFC 9112 §6.3 ¶4).
      bad_framing = !chunked_final_;
      msg_->framing = Framing::kChunked;
    } else if (has_content_length_) {
      bad_framing = content_length_invalid_;
      msg_->framing = Framing::kContentLength;
    } else {
      no_body = true;
    }
    if (!bad_framing) listener_.OnRequestHeaders(*msg_);
  } else {
    RequestContext ctx = listener_.ContextForResponse();
    uint16_t code = msg_->status_code;
    if (code == 101 || (ctx.connect && code / 100 == 2)) {
      no_body = true;
      next_state_after_message_ = State::kStopped;
    } else if (ctx.head || code / 100 == 1 || code == 204 || code == 304) {
      no_body = true;
    } else if (has_transfer_encoding_) {
      msg_->framing = chunked_final_ ? Framing::kChunked : Framing::kUntilClose;
    } else if (has_content_length_) {
      bad_framing = content_length_invalid_;
      msg_->framing = Framing::kContentLength;
    } else {
      msg_->framing = Framing::kUntilClose;
    }
  }
  if (bad_framing) {
    Fail(FailureReason::kBadFraming, true);
    EnterResync(false);
    return;
  }
  if (state_ != State::kHeaders) return;  // a listener stopped us
  if (no_body) {
    msg_->framing = Framing::kNone;
    FinishMessage();
    return;
  }
  switch (msg_->framing) {
    case Framing::kContentLength:
      body_remaining_ = content_length_;
      state_ = State::kBodyLength;
      if (body_remaining_ == 0) FinishMessage();
      break;
    case Framing::kChunked:
      state_ = State::kChunkSize;
      break;
    default:
      state_ = State::kBodyUntilClose;
      break;
  }
}

void MessageParser::OnChunkSizeLine(std::string_view line) {
  auto size = syntax::ParseChunkSizeLine(line);
  if (!size) {
    FinishTruncated(FailureReason::kBadChunk);
    return;
  }
  if (*size == 0) {
    state_ = State::kTrailers;
    header_budget_ = limits_.max_header_bytes;
  } else {
    body_remaining_ = *size;
    state_ = State::kChunkData;
  }
}

void MessageParser::OnTrailerLine(std::string_view line) {
  if (line.empty()) {
    FinishMessage();
    return;
  }
  syntax::HeaderLine h;
  if (!syntax::ParseHeaderLine(line, h)) {
    FinishTruncated(FailureReason::kBadHeader);
    return;
  }
  // Trailer fields: nothing in the agent reads them.
  if (limits_.stored_fields != StoredFields::kAll) return;
  if (h.continuation) msg_->trailers.AppendToLast(h.value);
  else msg_->trailers.Add(h.name, h.value);
}

void MessageParser::OnResyncBytes(std::string_view& in) {
  if (line_.empty()) {
    line_meta_ = meta_;
    line_meta_.pos = PosOf(in.data());
  }
  size_t nl = in.find('\n');
  size_t take = nl == std::string_view::npos ? in.size() : nl;
  line_.append(in.data(), take);
  in.remove_prefix(nl == std::string_view::npos ? take : take + 1);
  // Keep only the tail of an endless line, trimming in halves so the cost stays linear.
  if (line_.size() > 2 * limits_.max_resync_line) {
    const size_t cut = line_.size() - limits_.max_resync_line;
    line_.erase(0, cut);
    line_meta_.pos += cut;
  }
  CountSkipped(take + (nl == std::string_view::npos ? 0 : 1));
  if (nl == std::string_view::npos || state_ != State::kResync) return;

  std::string_view line = syntax::StripCr(line_);
  size_t pos = kind_ == MessageKind::kRequest ? syntax::FindRequestStart(line)
                                              : syntax::FindResponseStart(line);
  if (pos != std::string_view::npos) {
    std::string_view start = line.substr(pos);
    Message probe;
    bool ok = kind_ == MessageKind::kRequest ? syntax::ParseRequestLine(start, probe)
                                             : syntax::ParseStatusLine(start, probe);
    if (ok) {
      StartMessage(line_meta_.pos + pos);
      msg_->first_chunk = line_meta_;
      msg_->first_chunk.pos = line_meta_.pos + pos;
      OnStartLine(start, line_.size() + 1 - pos);
    }
  }
  line_.clear();
}

void MessageParser::FinishMessage() {
  msg_->last_chunk = meta_;
  ++messages_;
  resync_skipped_ = 0;
  msg_started_ = false;
  state_ = next_state_after_message_;
  next_state_after_message_ = State::kStartLine;
  switch_pending_ = state_ == State::kHeld || state_ == State::kStopped;
  listener_.OnMessage(std::move(msg_));
}

void MessageParser::FinishTruncated(FailureReason reason) {
  msg_->truncated = true;
  msg_->last_chunk = meta_;
  msg_started_ = false;
  EnterResync(false);
  listener_.OnFailure(reason, false);
  listener_.OnMessage(std::move(msg_));
}

void MessageParser::Fail(FailureReason reason, bool message_lost) {
  msg_started_ = false;
  state_ = State::kResync;
  listener_.OnFailure(reason, message_lost);
}

void MessageParser::EnterResync(bool keep_line) {
  if (state_ == State::kStopped) return;  // a listener gave the connection up
  state_ = State::kResync;
  msg_started_ = false;
  next_state_after_message_ = State::kStartLine;
  if (!keep_line) line_.clear();
  line_meta_ = meta_;
  if (keep_line) line_meta_.pos = msg_->first_chunk.pos;  // the kept line is the start line begun
}

void MessageParser::CountSkipped(uint64_t n) {
  resync_skipped_ += n;
  while (resync_skipped_ >= limits_.resync_failure_bytes && state_ == State::kResync) {
    resync_skipped_ -= limits_.resync_failure_bytes;
    listener_.OnFailure(FailureReason::kNoMessageStart, false);
  }
}

}  // namespace threadline::http1
