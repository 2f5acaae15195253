#include "agent/protocols/db/sql.h"

#include <array>
#include <vector>

namespace threadline::db {

namespace {

enum class Tok : uint8_t {
  kWord,         // identifier or keyword
  kQuotedIdent,  // "x" (PostgreSQL), `x` (MySQL)
  kLiteral,      // string, number, bit/hex string, TRUE/FALSE
  kParam,        // $1, ?
  kPunct,        // ( ) , ; . [ ]
  kOperator,     // everything else, one character at a time
};

struct Token {
  Tok kind = Tok::kPunct;
  std::string_view text;
  bool space_before = false;  // whitespace or a comment separated it from the previous token
};

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool IsWordStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}
bool IsWordChar(char c) { return IsWordStart(c) || IsDigit(c) || c == '$'; }
char Upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

bool EqualsUpper(std::string_view word, std::string_view upper) {
  if (word.size() != upper.size()) return false;
  for (size_t i = 0; i < word.size(); ++i)
    if (Upper(word[i]) != upper[i]) return false;
  return true;
}

std::string ToUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Upper(c);
  return out;
}

// Skips a quoted run starting at s[i] (the opening quote) and returns the index after the
// closing quote (s.size() when unterminated). A doubled quote is an escaped quote; with
// `backslash`, so is a backslash-escaped one.
size_t SkipQuoted(std::string_view s, size_t i, char quote, bool backslash) {
  for (size_t j = i + 1; j < s.size(); ++j) {
    if (backslash && s[j] == '\\') {
      ++j;
      continue;
    }
    if (s[j] == quote) {
      if (j + 1 < s.size() && s[j + 1] == quote) {
        ++j;
        continue;
      }
      return j + 1;
    }
  }
  return s.size();
}

// PostgreSQL dollar quoting: $$...$$ or $tag$...$tag$. Returns the end, or 0 when s[i] does not
// open one.
size_t SkipDollarQuoted(std::string_view s, size_t i) {
  size_t j = i + 1;
  while (j < s.size() && (IsWordStart(s[j]) || IsDigit(s[j]))) ++j;
  if (j >= s.size() || s[j] != '$') return 0;
  if (j > i + 1 && IsDigit(s[i + 1])) return 0;  // $1 is a parameter
  const std::string_view tag = s.substr(i, j - i + 1);
  const size_t end = s.find(tag, j + 1);
  return end == std::string_view::npos ? s.size() : end + tag.size();
}

class Lexer {
 public:
  Lexer(std::string_view s, SqlDialect d) : s_(s), d_(d) {}

  bool Next(Token& t) {
    bool space = false;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (IsSpace(c)) {
        space = true;
        ++i_;
      } else if (c == '-' && i_ + 1 < s_.size() && s_[i_ + 1] == '-' &&
                 (d_ == SqlDialect::kPostgres || i_ + 2 >= s_.size() || IsSpace(s_[i_ + 2]))) {
        SkipLine();
        space = true;
      } else if (c == '#' && d_ == SqlDialect::kMySql) {
        SkipLine();
        space = true;
      } else if (c == '/' && i_ + 1 < s_.size() && s_[i_ + 1] == '*') {
        SkipBlockComment();
        space = true;
      } else {
        break;
      }
    }
    if (i_ >= s_.size()) return false;
    t.space_before = space;
    const size_t start = i_;
    const char c = s_[i_];
    auto take = [&](Tok kind, size_t end) {
      t.kind = kind;
      t.text = s_.substr(start, end - start);
      i_ = end;
      value_before_ = kind != Tok::kOperator &&
                      (kind != Tok::kPunct || s_[start] == ')' || s_[start] == ']');
      return true;
    };
    if (c == '\'') return take(Tok::kLiteral, SkipQuoted(s_, i_, '\'', d_ == SqlDialect::kMySql));
    if (c == '"') {
      if (d_ == SqlDialect::kMySql) return take(Tok::kLiteral, SkipQuoted(s_, i_, '"', true));
      return take(Tok::kQuotedIdent, SkipQuoted(s_, i_, '"', false));
    }
    if (c == '`' && d_ == SqlDialect::kMySql) return take(Tok::kQuotedIdent, SkipQuoted(s_, i_, '`', false));
    if (c == '$' && d_ == SqlDialect::kPostgres) {
      if (i_ + 1 < s_.size() && IsDigit(s_[i_ + 1])) {
        size_t j = i_ + 1;
        while (j < s_.size() && IsDigit(s_[j])) ++j;
        return take(Tok::kParam, j);
      }
      if (size_t end = SkipDollarQuoted(s_, i_)) return take(Tok::kLiteral, end);
    }
    if (c == '?') return take(Tok::kParam, i_ + 1);
    if (IsDigit(c) || (c == '.' && i_ + 1 < s_.size() && IsDigit(s_[i_ + 1]))) return take(Tok::kLiteral, NumberEnd());
    // A sign where no value ends (after an operator, `(`, `,`, or first) belongs to the number
    // after it: `VALUES (1, -2)` is `(?, ?)` like any other list, not `(?, -?)`.
    if ((c == '-' || c == '+') && !value_before_ && i_ + 1 < s_.size() &&
        (IsDigit(s_[i_ + 1]) || (s_[i_ + 1] == '.' && i_ + 2 < s_.size() && IsDigit(s_[i_ + 2])))) {
      ++i_;
      return take(Tok::kLiteral, NumberEnd());
    }
    if (IsWordStart(c)) {
      size_t j = i_ + 1;
      while (j < s_.size() && IsWordChar(s_[j])) ++j;
      const std::string_view word = s_.substr(i_, j - i_);
      // A prefixed string: E'..', B'..', X'..', N'..', U&'..' (PostgreSQL), _charset'..' (MySQL).
      if (j < s_.size() && (s_[j] == '\'' || (s_[j] == '"' && d_ == SqlDialect::kMySql)) &&
          IsStringPrefix(word)) {
        const bool backslash = d_ == SqlDialect::kMySql || EqualsUpper(word, "E");
        return take(Tok::kLiteral, SkipQuoted(s_, j, s_[j], backslash));
      }
      if (d_ == SqlDialect::kPostgres && EqualsUpper(word, "U") && j + 1 < s_.size() && s_[j] == '&' &&
          s_[j + 1] == '\'')
        return take(Tok::kLiteral, SkipQuoted(s_, j + 1, '\'', false));
      if (EqualsUpper(word, "TRUE") || EqualsUpper(word, "FALSE")) return take(Tok::kLiteral, j);
      return take(Tok::kWord, j);
    }
    if (c == '(' || c == ')' || c == ',' || c == ';' || c == '.' || c == '[' || c == ']')
      return take(Tok::kPunct, i_ + 1);
    return take(Tok::kOperator, i_ + 1);
  }

 private:
  bool IsStringPrefix(std::string_view w) const {
    if (EqualsUpper(w, "X") || EqualsUpper(w, "B") || EqualsUpper(w, "N")) return true;
    if (d_ == SqlDialect::kPostgres) return EqualsUpper(w, "E");
    return w.size() > 1 && w[0] == '_';  // MySQL charset introducer
  }

  size_t NumberEnd() const {
    size_t j = i_;
    if (s_[j] == '0' && j + 1 < s_.size() && (s_[j + 1] == 'x' || s_[j + 1] == 'X')) {
      j += 2;
      while (j < s_.size() && IsHexDigit(s_[j])) ++j;
      return j;
    }
    while (j < s_.size() && IsDigit(s_[j])) ++j;
    if (j < s_.size() && s_[j] == '.') {
      ++j;
      while (j < s_.size() && IsDigit(s_[j])) ++j;
    }
    if (j < s_.size() && (s_[j] == 'e' || s_[j] == 'E')) {
      size_t k = j + 1;
      if (k < s_.size() && (s_[k] == '+' || s_[k] == '-')) ++k;
      if (k < s_.size() && IsDigit(s_[k])) {
        while (k < s_.size() && IsDigit(s_[k])) ++k;
        j = k;
      }
    }
    return j;
  }

  void SkipLine() {
    while (i_ < s_.size() && s_[i_] != '\n') ++i_;
  }

  void SkipBlockComment() {
    int depth = 0;
    while (i_ < s_.size()) {
      if (s_[i_] == '/' && i_ + 1 < s_.size() && s_[i_ + 1] == '*') {
        ++depth;
        i_ += 2;
      } else if (s_[i_] == '*' && i_ + 1 < s_.size() && s_[i_ + 1] == '/') {
        i_ += 2;
        // MySQL comments do not nest; PostgreSQL's do.
        if (--depth == 0 || d_ == SqlDialect::kMySql) return;
      } else {
        ++i_;
      }
    }
  }

  std::string_view s_;
  SqlDialect d_;
  size_t i_ = 0;
  bool value_before_ = false;  // the last token ends a value (a binary operator may follow)
};

// Words that are never a table name or an alias where the summary looks for one.
bool IsReserved(std::string_view w) {
  static constexpr std::array<std::string_view, 84> kWords = {
      "ALL", "AND", "AS", "BY", "CASE", "CONFLICT", "CROSS", "CSV", "DEFAULT", "DELAYED",
      "DELETE", "DISTINCT", "DO", "DUPLICATE", "ELSE", "END", "EXCEPT", "EXISTS", "FETCH",
      "FOR", "FORCE", "FROM", "FULL", "GROUP", "HAVING", "HIGH_PRIORITY", "IF", "IGNORE", "IN",
      "INNER", "INSERT", "INTERSECT", "INTO", "IS", "JOIN", "KEY", "LATERAL", "LEFT", "LIMIT",
      "LOCK", "LOW_PRIORITY", "MINUS", "NATURAL", "NOT", "NULL", "OFFSET", "ON", "ONLY", "OR",
      "ORDER", "OUTER", "OVERRIDING", "PARTITION", "QUICK", "RETURNING", "RIGHT", "SELECT",
      "SET", "STDIN", "STDOUT", "STRAIGHT_JOIN", "TABLE", "TABLESAMPLE", "THEN", "TO", "UNION",
      "UPDATE", "USE", "USING", "VALUE", "VALUES", "WHEN", "WHERE", "WINDOW", "WITH", "BINARY",
      "DELIMITER", "FORMAT", "HEADER", "CONCURRENTLY", "RECURSIVE", "TEMP", "TEMPORARY", "UNIQUE"};
  for (std::string_view k : kWords)
    if (EqualsUpper(w, k)) return true;
  return false;
}

// Operations recognised anywhere (subqueries, INSERT ... SELECT, UNION).
bool IsDmlOperation(std::string_view w) {
  return EqualsUpper(w, "SELECT") || EqualsUpper(w, "INSERT") || EqualsUpper(w, "UPDATE") ||
         EqualsUpper(w, "DELETE") || EqualsUpper(w, "MERGE") || EqualsUpper(w, "REPLACE");
}

// Object types of CREATE / ALTER / DROP that become part of the operation ("CREATE TABLE").
bool IsObjectType(std::string_view w) {
  static constexpr std::array<std::string_view, 28> kTypes = {
      "TABLE", "INDEX", "VIEW", "SCHEMA", "DATABASE", "SEQUENCE", "FUNCTION", "PROCEDURE",
      "TRIGGER", "TYPE", "EXTENSION", "USER", "ROLE", "DOMAIN", "POLICY", "RULE", "EVENT",
      "SERVER", "TABLESPACE", "AGGREGATE", "COLLATION", "OPERATOR", "PUBLICATION",
      "SUBSCRIPTION", "STATISTICS", "MATERIALIZED", "CONSTRAINT", "OWNED"};
  for (std::string_view k : kTypes)
    if (EqualsUpper(w, k)) return true;
  return false;
}

bool IsDdlModifier(std::string_view w) {
  return EqualsUpper(w, "OR") || EqualsUpper(w, "REPLACE") || EqualsUpper(w, "TEMP") ||
         EqualsUpper(w, "TEMPORARY") || EqualsUpper(w, "UNLOGGED") || EqualsUpper(w, "UNIQUE") ||
         EqualsUpper(w, "GLOBAL") || EqualsUpper(w, "LOCAL") || EqualsUpper(w, "IF") ||
         EqualsUpper(w, "NOT") || EqualsUpper(w, "EXISTS") || EqualsUpper(w, "CONCURRENTLY") ||
         EqualsUpper(w, "DEFINER") || EqualsUpper(w, "ALGORITHM") || EqualsUpper(w, "ONLY") ||
         EqualsUpper(w, "RECURSIVE");
}

// Walks the tokens once for the summary, the operations and the targets.
class Summarizer {
 public:
  explicit Summarizer(SqlAnalysis& out) : out_(out) {}

  void Feed(const std::vector<Token>& tokens) {
    for (size_t i = 0; i < tokens.size(); ++i) i = Step(tokens, i);
    EndStatement();
    if (out_.statements != 1) return;  // several statements: no single operation or target
    out_.operation = first_op_;
    if (targets_ == 1) (procedure_ ? out_.stored_procedure : out_.collection) = first_target_;
  }

 private:
  enum class Expect : uint8_t {
    kNothing,
    kList,      // FROM / JOIN / TRUNCATE: comma-separated names with aliases, functions skipped
    kOne,       // INTO, UPDATE, COPY, DESCRIBE, a DDL object: one name
    kDdlType,   // after CREATE/ALTER/DROP: modifiers, then the object type
  };

  // Returns the index of the last token consumed.
  size_t Step(const std::vector<Token>& t, size_t i) {
    const Token& tok = t[i];
    if (tok.kind == Tok::kPunct) {
      const char c = tok.text[0];
      if (c == ';' && depth_ == 0) {
        EndStatement();
        return i;
      }
      if (c == '(') ++depth_;
      if (c == ')' && depth_ > 0) --depth_;
      if (c == ',' && expect_ == Expect::kList && after_target_) {
        after_target_ = false;  // the next name of the list
        return i;
      }
      if (c != '.') Reset();
      return i;
    }
    tokens_in_statement_ = true;
    if (tok.kind != Tok::kWord && tok.kind != Tok::kQuotedIdent) {
      Reset();
      return i;
    }
    const bool word = tok.kind == Tok::kWord;
    const bool at_start = !saw_word_in_statement_;
    saw_word_in_statement_ = true;

    if (word && at_start && depth_ == 0) return StartStatement(t, i);
    if (word && expect_ == Expect::kDdlType) return DdlType(t, i);
    if (word && IsDmlOperation(tok.text) && !no_nested_ops_) {
      // UPDATE in "FOR UPDATE", "DO UPDATE", "ON DUPLICATE KEY UPDATE" is not an operation.
      if (EqualsUpper(tok.text, "UPDATE") &&
          (EqualsUpper(prev_word_, "FOR") || EqualsUpper(prev_word_, "DO") || EqualsUpper(prev_word_, "KEY"))) {
        prev_word_ = tok.text;
        Reset();
        return i;
      }
      AddOperation(ToUpper(tok.text));
      prev_word_ = tok.text;
      if (EqualsUpper(tok.text, "SELECT") || EqualsUpper(tok.text, "DELETE")) Reset();
      else Expecting(Expect::kOne);
      return i;
    }
    if (word && (EqualsUpper(tok.text, "FROM") || EqualsUpper(tok.text, "JOIN"))) {
      Expecting(Expect::kList);
      prev_word_ = tok.text;
      return i;
    }
    if (word && EqualsUpper(tok.text, "INTO")) {
      Expecting(Expect::kOne);
      prev_word_ = tok.text;
      return i;
    }
    if (expect_ != Expect::kNothing && !after_target_) {
      if (word && (IsReserved(tok.text) || IsDdlModifier(tok.text))) {
        // FROM ONLY t, INSERT IGNORE INTO, TRUNCATE TABLE t: skip the modifier, keep expecting.
        if (EqualsUpper(tok.text, "ONLY") || EqualsUpper(tok.text, "LATERAL") ||
            EqualsUpper(tok.text, "TABLE") || EqualsUpper(tok.text, "IGNORE") ||
            EqualsUpper(tok.text, "LOW_PRIORITY") || EqualsUpper(tok.text, "DELAYED") ||
            EqualsUpper(tok.text, "HIGH_PRIORITY") || EqualsUpper(tok.text, "QUICK") ||
            EqualsUpper(tok.text, "IF") || EqualsUpper(tok.text, "NOT") || EqualsUpper(tok.text, "EXISTS") ||
            EqualsUpper(tok.text, "CONCURRENTLY")) {
          prev_word_ = tok.text;
          return i;
        }
        prev_word_ = tok.text;
        Reset();
        return i;
      }
      return TakeTarget(t, i);
    }
    if (expect_ == Expect::kList && after_target_) {
      // An alias (AS x, or x), then maybe a comma and the next name.
      if (word && EqualsUpper(tok.text, "AS")) return i;
      if (!word || !IsReserved(tok.text)) return i;
      Reset();
    }
    prev_word_ = tok.text;
    return i;
  }

  size_t StartStatement(const std::vector<Token>& t, size_t i) {
    const std::string_view w = t[i].text;
    prev_word_ = w;
    if (EqualsUpper(w, "WITH")) return i;  // the CTE's and the main statement's operations follow
    if (IsDmlOperation(w)) {
      AddOperation(ToUpper(w));
      if (!EqualsUpper(w, "SELECT") && !EqualsUpper(w, "DELETE")) Expecting(Expect::kOne);
      return i;
    }
    if (EqualsUpper(w, "CREATE") || EqualsUpper(w, "ALTER") || EqualsUpper(w, "DROP")) {
      ddl_verb_ = ToUpper(w);
      ddl_has_type_ = false;
      expect_ = Expect::kDdlType;
      return i;
    }
    if (EqualsUpper(w, "START") && i + 1 < t.size() && EqualsUpper(t[i + 1].text, "TRANSACTION")) {
      AddOperation("START TRANSACTION");
      no_nested_ops_ = true;
      return i + 1;
    }
    AddOperation(ToUpper(w));
    if (EqualsUpper(w, "TRUNCATE")) {
      Expecting(Expect::kList);
    } else if (EqualsUpper(w, "COPY") || EqualsUpper(w, "LOCK") || EqualsUpper(w, "DESCRIBE") ||
               EqualsUpper(w, "DESC")) {
      Expecting(Expect::kOne);
    } else if (EqualsUpper(w, "CALL")) {
      Expecting(Expect::kOne);
      procedure_ = true;
    } else if (!EqualsUpper(w, "EXPLAIN") && !EqualsUpper(w, "TABLE")) {
      // SET, SHOW, GRANT, BEGIN, ...: nothing inside is an operation of its own.
      no_nested_ops_ = !EqualsUpper(w, "PREPARE") && !EqualsUpper(w, "DECLARE") &&
                       !EqualsUpper(w, "CREATE");
    }
    if (EqualsUpper(w, "TABLE")) Expecting(Expect::kOne);  // PostgreSQL: TABLE t
    return i;
  }

  size_t DdlType(const std::vector<Token>& t, size_t i) {
    const std::string_view w = t[i].text;
    prev_word_ = w;
    if (!ddl_has_type_ && IsDdlModifier(w)) return i;
    if (!ddl_has_type_ && IsObjectType(w)) {
      std::string op = ddl_verb_ + " " + ToUpper(w);
      if (EqualsUpper(w, "MATERIALIZED") && i + 1 < t.size() && EqualsUpper(t[i + 1].text, "VIEW")) {
        op += " VIEW";
        ++i;
      }
      ddl_has_type_ = true;
      AddOperation(std::move(op));
      Expecting(Expect::kOne);
      return i;
    }
    // Something else: the statement's operation is the verb alone.
    AddOperation(ddl_verb_);
    no_nested_ops_ = true;
    Reset();
    return i;
  }

  size_t TakeTarget(const std::vector<Token>& t, size_t i) {
    // A qualified name: a.b.c with no space around the dots.
    size_t end = i;
    while (end + 2 < t.size() && t[end + 1].kind == Tok::kPunct && t[end + 1].text == "." &&
           !t[end + 1].space_before && !t[end + 2].space_before &&
           (t[end + 2].kind == Tok::kWord || t[end + 2].kind == Tok::kQuotedIdent))
      end += 2;
    const bool function = end + 1 < t.size() && t[end + 1].kind == Tok::kPunct && t[end + 1].text == "(";
    if (function && expect_ == Expect::kList) {
      // FROM generate_series(...): a function, not a table.
      after_target_ = true;
      return end;
    }
    const char* begin = t[i].text.data();
    const std::string_view name(begin, static_cast<size_t>(t[end].text.data() + t[end].text.size() - begin));
    AddTarget(name);
    prev_word_ = t[end].text;
    if (expect_ == Expect::kList) {
      after_target_ = true;
    } else {
      Reset();
    }
    return end;
  }

  void AddOperation(std::string op) {
    if (out_.statements == 0 && first_op_.empty()) first_op_ = op;
    Append(op);
  }

  void AddTarget(std::string_view name) {
    if (++targets_ == 1) first_target_ = std::string(name);
    Append(name);
  }

  void Append(std::string_view part) {
    if (summary_full_) return;
    const size_t need = part.size() + (out_.summary.empty() ? 0 : 1);
    if (out_.summary.size() + need > kMaxSummaryBytes) {
      summary_full_ = true;  // never cut inside an operation or a target
      return;
    }
    if (!out_.summary.empty()) out_.summary += ' ';
    out_.summary += part;
  }

  void Expecting(Expect e) {
    expect_ = e;
    after_target_ = false;
  }
  void Reset() {
    expect_ = Expect::kNothing;
    after_target_ = false;
  }

  void EndStatement() {
    if (tokens_in_statement_) ++out_.statements;
    tokens_in_statement_ = false;
    saw_word_in_statement_ = false;
    no_nested_ops_ = false;
    depth_ = 0;
    Reset();
  }

  SqlAnalysis& out_;
  Expect expect_ = Expect::kNothing;
  bool after_target_ = false;
  bool tokens_in_statement_ = false;
  bool saw_word_in_statement_ = false;
  bool no_nested_ops_ = false;
  bool summary_full_ = false;
  bool procedure_ = false;
  bool ddl_has_type_ = false;
  int depth_ = 0;
  std::string ddl_verb_;
  std::string_view prev_word_;
  std::string first_op_;
  std::string first_target_;
  uint32_t targets_ = 0;
};

// "(?), (?), (?)" -> "(?)": a multi-row VALUES list or an IN list of any length is one text.
std::string CollapseRepeatedGroups(const std::string& s) {
  static constexpr std::string_view kGroup = "(?)";
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    out += s[i++];
    if (out.size() < kGroup.size() || out.compare(out.size() - kGroup.size(), kGroup.size(), kGroup) != 0)
      continue;
    for (;;) {  // skip ", (?)" and ",(?)" repeats of the group just written
      size_t j = i;
      if (j >= s.size() || s[j] != ',') break;
      ++j;
      if (j < s.size() && s[j] == ' ') ++j;
      if (s.compare(j, kGroup.size(), kGroup) != 0) break;
      i = j + kGroup.size();
    }
  }
  return out;
}

}  // namespace

SqlAnalysis AnalyzeSql(std::string_view text, SqlDialect dialect) {
  SqlAnalysis out;
  std::vector<Token> tokens;
  tokens.reserve(64);
  Lexer lexer(text, dialect);
  Token t;
  while (lexer.Next(t)) tokens.push_back(t);

  // Sanitised text: literals as ?, a run of literal placeholders in a list as one.
  std::string& s = out.sanitized;
  s.reserve(std::min(text.size(), kMaxSanitizedBytes));
  size_t comma_after_literal = std::string::npos;  // where ", " began after a literal ?
  bool last_was_literal = false;
  // The open parentheses, and whether each holds a list that collapses: after IN or VALUES (and
  // the groups that follow a VALUES group), never function arguments or column lists.
  std::vector<bool> lists;
  bool closed_list = false;  // the last ')' closed such a list
  const Token* prev = nullptr;
  for (const Token& tok : tokens) {
    const bool literal = tok.kind == Tok::kLiteral;
    if (tok.kind == Tok::kPunct && tok.text == "(") {
      const bool after_keyword = prev && prev->kind == Tok::kWord &&
                                 (EqualsUpper(prev->text, "IN") || EqualsUpper(prev->text, "VALUES"));
      const bool next_group = prev && prev->kind == Tok::kPunct && prev->text == "," && closed_list;
      lists.push_back(after_keyword || next_group);
    }
    if (tok.kind == Tok::kPunct && tok.text == ")" && !lists.empty()) {
      closed_list = lists.back();
      lists.pop_back();
    } else if (!(tok.kind == Tok::kPunct && tok.text == ",")) {
      closed_list = closed_list && tok.kind == Tok::kPunct && tok.text == "(";
    }
    prev = &tok;
    if (literal && comma_after_literal != std::string::npos) {
      s.resize(comma_after_literal);  // "?, ?" -> "?"
      comma_after_literal = std::string::npos;
      last_was_literal = true;
      continue;
    }
    const std::string_view piece = literal ? std::string_view("?") : tok.text;
    const size_t before = s.size();
    if (s.size() + piece.size() + 1 > kMaxSanitizedBytes) {
      out.sanitized_truncated = true;
      break;
    }
    if (tok.space_before && !s.empty()) s += ' ';
    s += piece;
    if (tok.kind == Tok::kPunct && tok.text == "," && last_was_literal && !lists.empty() && lists.back()) {
      comma_after_literal = before;
    } else {
      comma_after_literal = std::string::npos;
      last_was_literal = literal;
    }
  }
  if (s.find("(?)") != std::string::npos) s = CollapseRepeatedGroups(s);

  Summarizer(out).Feed(tokens);
  return out;
}

}  // namespace threadline::db
