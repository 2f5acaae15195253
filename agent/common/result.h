// Errors are values: Result<T> holds a T or an Error (a message and an errno-style code).
// Exceptions never cross module boundaries; factories that can fail return Result<...>.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace threadline {

struct Error {
  std::string message;
  int code = 0;  // errno when the failure came from the OS, else 0

  static Error FromErrno(std::string what, int err);
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &std::get<T>(v_); }
  const T* operator->() const { return &std::get<T>(v_); }
  T& operator*() & { return std::get<T>(v_); }
  const Error& error() const { return std::get<Error>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status OkStatus() { return {}; }

}  // namespace threadline

#define TL_CONCAT_INNER(a, b) a##b
#define TL_CONCAT(a, b) TL_CONCAT_INNER(a, b)

// RETURN_IF_ERROR(expr): expr is a Status or Result<T>; returns its Error on failure.
#define RETURN_IF_ERROR(expr)                                 \
  do {                                                        \
    auto&& tl_status_ = (expr);                               \
    if (!tl_status_.ok()) return ::threadline::Error(tl_status_.error()); \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): lhs = value of Result expr, or return its Error.
#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL(TL_CONCAT(tl_result_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)             \
  auto tmp = (expr);                                      \
  if (!tmp.ok()) return ::threadline::Error(tmp.error()); \
  lhs = std::move(tmp).value()
