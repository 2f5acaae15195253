#include "agent/protocols/http/route.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>

namespace threadline {

namespace {

constexpr std::string_view kEllipsis = "\xE2\x80\xA6";  // U+2026, marks a cut route

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsHexDigit(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// The non-empty segments of a path, one at a time (no container: this runs for every span).
class Segments {
 public:
  explicit Segments(std::string_view path) : path_(path) {}
  // The next segment, or false at the end.
  bool Next(std::string_view& segment) {
    while (pos_ < path_.size()) {
      size_t slash = path_.find('/', pos_);
      if (slash == std::string_view::npos) slash = path_.size();
      const size_t start = pos_;
      pos_ = slash + 1;
      if (slash > start) {
        segment = path_.substr(start, slash - start);
        return true;
      }
    }
    return false;
  }

 private:
  std::string_view path_;
  size_t pos_ = 0;
};

std::vector<std::string_view> SplitSegments(std::string_view path) {
  std::vector<std::string_view> out;
  Segments segments(path);
  for (std::string_view seg; segments.Next(seg);) out.push_back(seg);
  return out;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsDigit);
}

// Dates, versions, phone numbers: digits held together by punctuation, no letters.
bool DigitsWithSeparators(std::string_view s) {
  bool any_digit = false;
  for (char c : s) {
    if (IsDigit(c)) {
      any_digit = true;
    } else if (std::string_view("-._:,+").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return any_digit;
}

bool IsUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash_pos = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_pos ? s[i] != '-' : !IsHexDigit(s[i])) return false;
  }
  return true;
}

// Long hex strings are hashes and ids; short ones only when they mix digits and letters, so
// words spelled in a-f ("deadbeef", "facade") stay.
bool IsHexId(std::string_view s) {
  if (s.size() < 8 || !std::all_of(s.begin(), s.end(), IsHexDigit)) return false;
  if (s.size() >= 16) return true;
  bool digit = std::any_of(s.begin(), s.end(), IsDigit);
  bool letter = std::any_of(s.begin(), s.end(), IsAlpha);
  return digit && letter;
}

bool IsEmailLike(std::string_view s) {
  size_t at = s.find('@');
  size_t at_len = 1;
  if (at == std::string_view::npos) {
    at = s.find("%40");
    at_len = 3;
  }
  if (at == std::string_view::npos || at == 0) return false;
  std::string_view domain = s.substr(at + at_len);
  size_t dot = domain.find('.');
  return dot != std::string_view::npos && dot > 0 && dot + 1 < domain.size();
}

bool IsTokenChar(char c) {
  return IsDigit(c) || IsAlpha(c) || std::string_view("-_.~+=%").find(c) != std::string_view::npos;
}

// Generated identifiers that are not hex: base64/base64url, slugs with numbers, prefixed ids.
bool IsGeneratedToken(std::string_view s) {
  if (!std::all_of(s.begin(), s.end(), IsTokenChar)) return false;
  size_t digits = static_cast<size_t>(std::count_if(s.begin(), s.end(), IsDigit));
  bool letter = std::any_of(s.begin(), s.end(), IsAlpha);
  if (!letter || digits == 0) return false;
  if (s.size() >= 16) return true;
  return s.size() >= 8 && digits * 2 >= s.size();
}

// "app.3f2a9c1b.js" -> "app.{hex}.js": hashed asset names keep their readable parts.
void AppendDottedParts(std::string_view s, std::string& out) {
  size_t i = 0;
  while (true) {
    size_t dot = s.find('.', i);
    std::string_view part = s.substr(i, dot == std::string_view::npos ? std::string_view::npos : dot - i);
    if (IsUuid(part)) {
      out += "{uuid}";
    } else if (IsHexId(part)) {
      out += "{hex}";
    } else {
      out += part;
    }
    if (dot == std::string_view::npos) break;
    out += '.';
    i = dot + 1;
  }
}

// "name.js", "archive.tar.gz", "clip.mp4": a file name, whose parts are judged one by one
// rather than as a token (a JWT also has dots, but its last part is long).
bool HasFileExtension(std::string_view s) {
  size_t dot = s.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  std::string_view ext = s.substr(dot + 1);
  return !ext.empty() && ext.size() <= 5 && IsAlpha(ext[0]) &&
         std::all_of(ext.begin(), ext.end(), [](char c) { return IsAlpha(c) || IsDigit(c); });
}

// A segment none of the patterns of AppendTemplateSegment can match, decided in one pass:
// letters and digits only with a letter (no date, email, file name or dotted part; not all
// digits), and either under 8 bytes (too short for a hex id or a generated token) or without
// digits (a token needs one) and not 16+ hex letters (a hash). Most segments of most paths
// ("api", "v1", "items", "users") are such words; the tests one by one cost ~400 instructions
// per segment, the pass ~5 per byte.
bool IsPlainWord(std::string_view seg) {
  if (seg.size() > kMaxRouteSegmentLength) return false;
  bool letter = false, digit = false, hex = true;
  for (char c : seg) {
    if (IsAlpha(c)) {
      letter = true;
      hex = hex && IsHexDigit(c);
    } else if (IsDigit(c)) {
      digit = true;
    } else {
      return false;
    }
  }
  return letter && (seg.size() < 8 || (!digit && !(hex && seg.size() >= 16)));
}

// Appends the segment's template to `out`.
void AppendTemplateSegment(std::string_view seg, std::string& out) {
  if (IsPlainWord(seg)) {
    out += seg;
  } else if (AllDigits(seg) || DigitsWithSeparators(seg)) {
    out += "{id}";
  } else if (IsUuid(seg)) {
    out += "{uuid}";
  } else if (IsHexId(seg)) {
    out += "{hex}";
  } else if (IsEmailLike(seg)) {
    out += "{email}";
  } else if (seg.size() > kMaxRouteSegmentLength) {
    out += "{token}";
  } else if (HasFileExtension(seg)) {
    AppendDottedParts(seg, out);
  } else if (IsGeneratedToken(seg)) {
    out += "{token}";
  } else if (seg.find('.') != std::string_view::npos) {
    AppendDottedParts(seg, out);
  } else {
    out += seg;
  }
}

// A pattern segment "{name}" (name non-empty, no braces inside).
bool IsPlaceholder(std::string_view seg) {
  return seg.size() >= 3 && seg.front() == '{' && seg.back() == '}' &&
         seg.substr(1, seg.size() - 2).find_first_of("{}") == std::string_view::npos;
}

// Callers pass paths without a query, but a stray one would leak values into span names and
// blow up their cardinality, so it is cut here too.
std::string_view PathOnly(std::string_view target) {
  return target.substr(0, target.find_first_of("?#"));
}

constexpr std::array<std::string_view, 9> kKnownMethods = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};

}  // namespace

std::string InferRoute(std::string_view path) {
  std::string route;
  AppendInferredRoute(path, route);
  return route;
}

namespace {

// Byte classes for the one pass over a path in AppendInferredRoute.
enum : uint8_t { kHexLetter = 1, kOtherLetter = 2, kDigit = 4, kOtherByte = 8, kSlash = 16, kPathEnd = 32 };
constexpr std::array<uint8_t, 256> kByteClass = [] {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    uint8_t k = kOtherByte;
    if (c >= '0' && c <= '9') {
      k = kDigit;
    } else if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
      k = kHexLetter;
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      k = kOtherLetter;
    } else if (c == '/') {
      k = kSlash;
    } else if (c == '?' || c == '#') {
      k = kPathEnd;
    }
    t[static_cast<size_t>(c)] = k;
  }
  return t;
}();

}  // namespace

// One pass over the bytes: each segment is found and classified as it is read (the classes of
// its bytes OR-ed together), so the usual segments (words, numbers) are decided without the
// tests of AppendTemplateSegment, and the end of the path ('?', '#') is found on the way. Split
// into segments, with the path cut by find_first_of("?#") (a memchr call per byte) and each
// segment tested again, it was ~1,400 instructions for "/api/v1/items/100123" (callgrind,
// pipeline_bench keep-alive).
void AppendInferredRoute(std::string_view path, std::string& out) {
  if (!path.empty() && path[0] != '/') {
    path = PathOnly(path);
    if (path == "*") {
      out += '*';
      return;
    }
    // Absolute-form request targets ("http://host/x", sent to proxies) carry the route after
    // the authority.
    if (size_t scheme = path.find("://"); scheme != std::string_view::npos) {
      size_t slash = path.find('/', scheme + 3);
      path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
    }
  }
  const size_t start = out.size();
  const char* p = path.data();
  const char* end = p + path.size();
  size_t count = 0;
  bool cut = false;
  while (p < end) {
    uint8_t k = kByteClass[static_cast<uint8_t>(*p)];
    if (k & kPathEnd) {
      end = p;
      break;
    }
    if (k & kSlash) {
      ++p;
      continue;
    }
    const char* const seg_begin = p;
    uint8_t seen = 0;
    while (true) {
      seen |= k;
      if (++p == end) break;
      k = kByteClass[static_cast<uint8_t>(*p)];
      if (k & (kSlash | kPathEnd)) break;
    }
    const std::string_view seg(seg_begin, static_cast<size_t>(p - seg_begin));
    if (count == kMaxRouteSegments) {
      cut = true;
      break;
    }
    const size_t before = out.size();
    out += '/';
    if ((seen & kOtherByte) == 0 && seg.size() <= kMaxRouteSegmentLength) {
      // Letters and digits only: IsPlainWord and AllDigits decided from the classes.
      const bool letter = (seen & (kHexLetter | kOtherLetter)) != 0;
      const bool hex = (seen & kOtherLetter) == 0;
      if (!letter) {
        out.append("{id}", 4);
      } else if (seg.size() < 8 || ((seen & kDigit) == 0 && !(hex && seg.size() >= 16))) {
        out.append(seg);
      } else {
        AppendTemplateSegment(seg, out);
      }
    } else {
      AppendTemplateSegment(seg, out);
    }
    if (out.size() - start > kMaxRouteLength) {
      out.resize(before);
      cut = true;
      break;
    }
    ++count;
  }
  if (cut) {
    out += '/';
    out += kEllipsis;
  } else if (out.size() == start || end[-1] == '/') {
    out += '/';
  }
}

Result<RouteTable> RouteTable::Create(const std::vector<std::string>& patterns) {
  RouteTable table;
  for (const auto& p : patterns) RETURN_IF_ERROR(table.Add(p));
  return table;
}

Status RouteTable::Add(std::string_view pattern) {
  if (pattern.empty() || pattern[0] != '/')
    return Error{"route pattern must start with '/': " + std::string(pattern), EINVAL};
  Pattern p;
  p.text = std::string(pattern);
  std::vector<std::string_view> segments = SplitSegments(pattern);
  for (size_t i = 0; i < segments.size(); ++i) {
    std::string_view seg = segments[i];
    if (IsPlaceholder(seg)) {
      p.segments.emplace_back("{}");
    } else if (seg.find_first_of("{}") != std::string_view::npos) {
      return Error{"malformed placeholder in route pattern: " + std::string(pattern), EINVAL};
    } else {
      p.segments.emplace_back(seg);
      if (seg == "*" && i + 1 == segments.size()) p.trailing_wildcard = true;
    }
  }
  routes_.push_back(std::move(p));
  return OkStatus();
}

const std::string* RouteTable::Find(std::string_view path) const {
  for (const auto& p : routes_) {
    const size_t fixed = p.segments.size() - (p.trailing_wildcard ? 1 : 0);
    Segments segments(PathOnly(path));
    size_t i = 0;
    bool ok = true;
    for (std::string_view seg; ok && segments.Next(seg); ++i) {
      if (i >= fixed) {
        ok = p.trailing_wildcard;
        break;
      }
      const std::string& want = p.segments[i];
      ok = want == "{}" || want == "*" || want == seg;
    }
    if (ok && i >= fixed) return &p.text;
  }
  return nullptr;
}

std::optional<std::string> RouteTable::Match(std::string_view path) const {
  if (const std::string* route = Find(path)) return *route;
  return std::nullopt;
}

ResolvedRoute ResolveRoute(const RouteTable& table, std::string_view path) {
  if (auto configured = table.Match(path)) return {std::move(*configured), true};
  return {InferRoute(path), false};
}

bool IsKnownHttpMethod(std::string_view method) {
  return std::find(kKnownMethods.begin(), kKnownMethods.end(), method) != kKnownMethods.end();
}

std::string_view NormalizeHttpMethod(std::string_view method) {
  auto it = std::find(kKnownMethods.begin(), kKnownMethods.end(), method);
  return it != kKnownMethods.end() ? *it : std::string_view("_OTHER");
}

const std::string* SetHttpSpanName(const RouteTable& table, std::string_view method,
                                   std::string_view path, std::string& name) {
  const std::string* configured = table.Find(path);
  name.assign(IsKnownHttpMethod(method) ? method : std::string_view("HTTP"));
  if (configured != nullptr) {
    if (!configured->empty()) {
      name += ' ';
      name += *configured;
    }
  } else {
    name += ' ';
    AppendInferredRoute(path, name);
  }
  return configured;
}

std::string HttpSpanName(std::string_view method, std::string_view route) {
  std::string name(IsKnownHttpMethod(method) ? method : std::string_view("HTTP"));
  if (!route.empty()) {
    name += ' ';
    name += route;
  }
  return name;
}

}  // namespace threadline
