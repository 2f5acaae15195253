// Low-cardinality names for HTTP spans. A zero-code agent does not know the application's routes,
// so the path is turned into a template: segments that look like identifiers become
// placeholders, and a user can configure the real routes. Span names and http.route must stay
// low-cardinality (OTel HTTP semantic conventions), or every backend that groups by name breaks.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/result.h"

namespace threadline {

// Bounds on an inferred route, so that even paths made of ordinary words cannot make unbounded
// names: at most kMaxRouteSegments segments and about kMaxRouteLength bytes, the rest becoming
// "/…" (U+2026). A single segment longer than kMaxRouteSegmentLength becomes {token}.
inline constexpr size_t kMaxRouteSegments = 8;
inline constexpr size_t kMaxRouteLength = 128;
inline constexpr size_t kMaxRouteSegmentLength = 64;

// The path as a template (a query or fragment, if still there, is cut off first). Empty segments are collapsed
// ("//" -> "/"), a trailing slash is kept, a path not starting with '/' gets one ("*", the
// OPTIONS asterisk-form, stays "*"). Each segment, in this order:
//   all digits                                      -> {id}
//   digits with separators only ("2024-01-31", "1.2.3") -> {id}
//   UUID 8-4-4-4-12 hex, any case                   -> {uuid}
//   hex, >= 16 chars, or >= 8 with a digit and a letter a-f (any case) -> {hex}
//   email-like ("a@b.c", also "%40")                -> {email}
//   longer than kMaxRouteSegmentLength              -> {token}
//   file names (a 1-5 char alphanumeric extension after the last '.'), and any other dotted
//   segment that is not a token: each dot-part that is a UUID or hex is replaced
//   ("app.3f2a9c1b.js" -> "app.{hex}.js", "jquery-3.6.0.min.js" kept)
//   >= 16 chars of letters, digits and -_.~+=% with at least one digit and one letter, or
//   >= 8 chars of which at least half are digits and one is a letter  -> {token}
//   (base64, JWTs, "ord_12345678", slugs with numbers)
//   anything else (items, v1, api, index.html) is kept as it is.
std::string InferRoute(std::string_view path);
// The same, appended to `out` (a span name being built: no string of its own).
void AppendInferredRoute(std::string_view path, std::string& out);

// User-configured routes such as "/items/{id}", "/users/{user}/orders/{order}", "/static/*".
// A "{name}" segment matches exactly one non-empty path segment; a "*" segment matches one
// segment, or, as the last segment, the rest of the path (zero or more segments). Other segments
// match literally (case-sensitive). Empty segments and a trailing slash are ignored on both
// sides, so "/items/{id}" matches "/items/5/" and "//items/5". First matching pattern wins.
class RouteTable {
 public:
  RouteTable() = default;
  // Fails (EINVAL) on the first pattern that does not start with '/' or has a malformed
  // placeholder ("{", "{}", "a{id}").
  static Result<RouteTable> Create(const std::vector<std::string>& patterns);

  // Appends a pattern (lowest priority so far).
  Status Add(std::string_view pattern);
  // The first matching pattern, as configured.
  std::optional<std::string> Match(std::string_view path) const;
  // The same without a copy: the pattern, or nullptr. Valid while the table is.
  const std::string* Find(std::string_view path) const;
  size_t size() const { return routes_.size(); }

 private:
  struct Pattern {
    std::string text;
    std::vector<std::string> segments;  // "{}" for a placeholder, "*" for a wildcard
    bool trailing_wildcard = false;     // last segment was "*": matches the rest
  };
  std::vector<Pattern> routes_;
};

// Where a span's route came from: a configured route is the application's real route and may go
// in http.route; an inferred one is a guess, good for the span name.
struct ResolvedRoute {
  std::string route;
  bool configured = false;
};

// table.Match(path), else InferRoute(path).
ResolvedRoute ResolveRoute(const RouteTable& table, std::string_view path);

// A span's name for `method` on `path`, "GET /items/{id}" (HttpSpanName of the resolved route),
// written into `name`; returns the configured route that matched, or nullptr when the route was
// inferred. What semconv uses per span: no string besides the name.
const std::string* SetHttpSpanName(const RouteTable& table, std::string_view method,
                                   std::string_view path, std::string& name);

// True for the methods the OTel HTTP conventions know: GET HEAD POST PUT DELETE CONNECT OPTIONS
// TRACE PATCH, matched case-sensitively ("get" is not known).
bool IsKnownHttpMethod(std::string_view method);

// The value for http.request.method: the method itself when known, else "_OTHER" (then the
// caller sets http.request.method_original to the method as sent). Points to static storage.
std::string_view NormalizeHttpMethod(std::string_view method);

// The span name the HTTP conventions prescribe: "{method} {route}", "{method}" without a route,
// and "HTTP" in place of a method that is not known ("HTTP /x", "HTTP").
std::string HttpSpanName(std::string_view method, std::string_view route);

}  // namespace threadline
