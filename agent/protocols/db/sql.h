// SQL text as the database conventions want it (PostgreSQL and MySQL/MariaDB): sanitised (every
// literal replaced by `?`, comments dropped, whitespace runs made one space, lists of
// placeholders collapsed) and summarised (operations and their targets in order,
// `SELECT shop.orders`), with the single operation and collection where the statement has
// exactly one. A lexer, not a parser: it never fails, whatever the bytes.
//
// Pure and bounded: output is capped (kMaxSanitizedBytes, kMaxSummaryBytes); work is linear in
// the input, which callers cap before (the captured statement prefix).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace threadline::db {

enum class SqlDialect : uint8_t {
  kPostgres,  // "x" is an identifier; E'..', $tag$..$tag$, B'..', X'..' literals; nested /* */
  kMySql,     // "x" and 'x' are strings (backslash escapes); `x` is an identifier; # comments
};

struct SqlAnalysis {
  // Literals as `?`: never holds a value from the text. Empty when the text had no token.
  std::string sanitized;
  bool sanitized_truncated = false;  // cut at kMaxSanitizedBytes (at a token boundary)
  // `{operation} {target} {operation} ...`, operations upper-cased, targets as written.
  std::string summary;
  // Set only for one statement: its (first, outermost) operation, e.g. "SELECT", "CREATE TABLE".
  std::string operation;
  // Set only for one statement with exactly one target: a table (or view, index, ...) ...
  std::string collection;
  // ... or, for CALL, the procedure.
  std::string stored_procedure;
  uint32_t statements = 0;  // non-empty statements separated by `;`
};

inline constexpr size_t kMaxSanitizedBytes = 2048;
inline constexpr size_t kMaxSummaryBytes = 255;

SqlAnalysis AnalyzeSql(std::string_view text, SqlDialect dialect);

}  // namespace threadline::db
