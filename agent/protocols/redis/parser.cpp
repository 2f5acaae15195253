#include "agent/protocols/redis/parser.h"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace threadline::redis {

namespace {

// Redis' own limits: proto-max-bulk-len is 512 MiB; aggregates up to 2^31 elements.
constexpr int64_t kMaxBulk = 512LL << 20;
constexpr int64_t kMaxAggregate = INT32_MAX;

bool IsType(char c) {
  switch (c) {
    case '+': case '-': case ':': case '$': case '*': case '_': case ',': case '#': case '!':
    case '=': case '(': case '%': case '~': case '>': case '|':
      return true;
    default:
      return false;
  }
}


bool ParseLength(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// An error's prefix: its first word (ERR, WRONGTYPE, NOSCRIPT, ...), capped.
std::string_view ErrorPrefix(std::string_view line) {
  const size_t sp = line.find(' ');
  return line.substr(0, std::min<size_t>(sp == std::string_view::npos ? line.size() : sp, 32));
}

bool IsCommandChar(uint8_t c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == '|';
}

}  // namespace

bool LooksLikeCommand(std::span<const uint8_t> b) {
  // *<count>\r\n$<length>\r\n<name>: the array's first element is a command name.
  size_t i = 0;
  auto number = [&](char lead, int64_t& v) {
    if (i >= b.size() || b[i] != static_cast<uint8_t>(lead)) return false;
    const size_t start = ++i;
    while (i < b.size() && i - start < 10 && b[i] >= '0' && b[i] <= '9') ++i;
    if (i == start || i + 1 >= b.size() || b[i] != '\r' || b[i + 1] != '\n') return false;
    v = 0;
    std::from_chars(reinterpret_cast<const char*>(b.data() + start), reinterpret_cast<const char*>(b.data() + i), v);
    i += 2;
    return true;
  };
  int64_t count = 0, len = 0;
  if (!number('*', count) || count < 1 || !number('$', len) || len < 1 || len > 64) return false;
  const size_t end = std::min(b.size(), i + static_cast<size_t>(len));
  if (end <= i || !((b[i] >= 'A' && b[i] <= 'Z') || (b[i] >= 'a' && b[i] <= 'z'))) return false;
  for (size_t k = i; k < end; ++k)
    if (!IsCommandChar(b[k])) return false;
  // When the whole name is there, its CRLF must follow.
  if (end == i + static_cast<size_t>(len) && end + 1 < b.size()) return b[end] == '\r' && b[end + 1] == '\n';
  return true;
}

void RespReader::Feed(std::span<const uint8_t> bytes, const ChunkMeta& meta) {
  if (state_ == State::kLost) {
    // A client writes a command (or a pipeline) from its first byte: resume at one.
    if (!requests_ || !LooksLikeCommand(bytes)) return;
    Resync();
  }
  size_t i = 0;
  const size_t n = bytes.size();
  while (i < n) {
    switch (state_) {
      case State::kStopped:
      case State::kLost:
        return;
      case State::kType: {
        const char c = static_cast<char>(bytes[i]);
        if (stack_.empty()) StartValue(meta, meta.pos + i);
        line_.clear();
        line_long_ = false;
        if (stack_.empty() && requests_ && c != '*') {
          state_ = State::kInline;  // the byte is the line's first
          break;
        }
        if (!IsType(c)) {
          Lose(meta);
          return;
        }
        type_ = c;
        ++i;
        state_ = State::kLine;
        break;
      }
      case State::kLine:
      case State::kInline: {
        const auto* begin = bytes.data() + i;
        const auto* lf = static_cast<const uint8_t*>(std::memchr(begin, '\n', n - i));
        const size_t take = lf ? static_cast<size_t>(lf - begin) : n - i;
        const size_t room = limits_.max_line_bytes > line_.size() ? limits_.max_line_bytes - line_.size() : 0;
        line_.append(reinterpret_cast<const char*>(begin), std::min(take, room));
        if (take > room) line_long_ = true;
        i += take;
        if (!lf) return;
        ++i;
        if (!line_.empty() && line_.back() == '\r') line_.pop_back();
        if (state_ == State::kInline) OnInline(meta);
        else OnLine(meta);
        break;
      }
      case State::kBulk: {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(bulk_left_, n - i));
        if (Want()) {
          const uint64_t content_left = bulk_left_ > 2 ? bulk_left_ - 2 : 0;
          const size_t room = Value::kMaxElementBytes - std::min(bulk_.size(), Value::kMaxElementBytes);
          const size_t k = static_cast<size_t>(std::min<uint64_t>({take, content_left, room}));
          bulk_.append(reinterpret_cast<const char*>(bytes.data() + i), k);
        }
        bulk_left_ -= take;
        i += take;
        if (bulk_left_ == 0) Done(type_, bulk_, meta);
        break;
      }
    }
  }
}

void RespReader::Gap(uint64_t len, const ChunkMeta& meta) {
  if (len == 0) return;
  switch (state_) {
    case State::kStopped:
    case State::kLost:
      return;
    case State::kBulk:
      value_.missing = true;
      if (len < bulk_left_) {
        bulk_left_ -= len;
        return;
      }
      len -= bulk_left_;
      bulk_left_ = 0;
      Done(type_, bulk_, meta);
      if (len > 0 && state_ == State::kType) Lose(meta);
      return;
    default:
      Lose(meta);  // over a type byte or a line: where values start is unknown
      return;
  }
}

void RespReader::Resync() {
  state_ = State::kType;
  stack_.clear();
  line_.clear();
  value_ = Value{};
}

void RespReader::StartValue(const ChunkMeta& meta, uint64_t pos) {
  value_ = Value{};
  value_.first = meta;
  value_.first.pos = pos;
}

bool RespReader::Want() const {
  // Only depth-1 elements among the first few are kept (a command's name and arguments, a
  // pub/sub kind); bulk strings at the top are replies whose content is never used.
  return stack_.size() == 1 && !stack_[0].attribute && stack_[0].index < Value::kKeptElements;
}

void RespReader::OnLine(const ChunkMeta& meta) {
  int64_t n = 0;
  switch (type_) {
    case '$':
    case '!':
    case '=':
      if (!ParseLength(line_, n) || n < -1 || n > kMaxBulk) return Lose(meta);
      if (n == -1) {
        value_.null = stack_.empty();
        return Done(type_, {}, meta);
      }
      bulk_left_ = static_cast<uint64_t>(n) + 2;
      bulk_.clear();
      state_ = State::kBulk;
      return;
    case '*':
    case '%':
    case '~':
    case '>':
    case '|': {
      if (!ParseLength(line_, n) || n < -1 || n > kMaxAggregate) return Lose(meta);
      if (n == -1) {
        value_.null = stack_.empty();
        return Done(type_, {}, meta);
      }
      const uint64_t elements = static_cast<uint64_t>(n) * (type_ == '%' || type_ == '|' ? 2 : 1);
      if (stack_.empty() && type_ != '|') {
        value_.type = type_;
        value_.elements = static_cast<uint32_t>(std::min<uint64_t>(elements, UINT32_MAX));
      }
      if (elements == 0) return Done(type_, {}, meta);
      if (stack_.size() >= limits_.max_depth) return Lose(meta);
      stack_.push_back(Frame{static_cast<uint32_t>(std::min<uint64_t>(elements, UINT32_MAX)), 0, type_ == '|'});
      state_ = State::kType;
      return;
    }
    case '_':
      value_.null = stack_.empty();
      return Done(type_, {}, meta);
    default:  // + - : , ( #
      return Done(type_, line_, meta);
  }
}

void RespReader::OnInline(const ChunkMeta& meta) {
  // A line of words: the command and its arguments (an empty line is ignored by Redis too).
  state_ = State::kType;
  std::string_view rest(line_);
  uint32_t words = 0;
  while (!rest.empty()) {
    const size_t start = rest.find_first_not_of(" \t");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    const size_t end = std::min(rest.find_first_of(" \t"), rest.size());
    if (words < Value::kKeptElements)
      value_.element[words] = std::string(rest.substr(0, std::min(end, Value::kMaxElementBytes)));
    ++words;
    rest.remove_prefix(end);
  }
  if (words == 0) return;
  value_.type = 'i';
  value_.elements = words;
  value_.missing = value_.missing || line_long_;
  value_.last = meta;
  listener_.OnValue(value_);
}

void RespReader::Done(char type, std::string_view text, const ChunkMeta& meta) {
  state_ = State::kType;
  if (stack_.empty()) {
    value_.type = type;
    if (type == '-' || type == '!') value_.error = std::string(ErrorPrefix(text));
    value_.last = meta;
    listener_.OnValue(value_);
    return;
  }
  {
    Frame& f = stack_.back();
    if (stack_.size() == 1 && !f.attribute) {
      if (f.index < Value::kKeptElements) value_.element[f.index] = std::string(text.substr(0, Value::kMaxElementBytes));
      if (type == '-' || type == '!') {
        if (value_.element_errors++ == 0) value_.first_element_error = std::string(ErrorPrefix(text));
      }
    }
    ++f.index;
    --f.remaining;
  }
  while (!stack_.empty() && stack_.back().remaining == 0) {
    const Frame done = stack_.back();
    stack_.pop_back();
    if (stack_.empty()) {
      if (done.attribute) return;  // RESP3 attribute: the value it describes follows
      value_.last = meta;
      listener_.OnValue(value_);
      return;
    }
    if (done.attribute) continue;  // not an element of its parent
    Frame& parent = stack_.back();
    ++parent.index;
    --parent.remaining;
  }
}

void RespReader::Lose(const ChunkMeta& meta) {
  state_ = State::kLost;
  stack_.clear();
  line_.clear();
  listener_.OnFramingLost(meta);
}

}  // namespace threadline::redis
