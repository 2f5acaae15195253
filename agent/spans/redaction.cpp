#include "agent/spans/redaction.h"

#include <algorithm>
#include <array>

namespace threadline {

namespace {

char ToLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
bool IsAlnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = ToLower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Form-urlencoded decoding of `s` into `out` (room for s.size() bytes: decoding never
// lengthens); returns the decoded size. Malformed escapes are kept as they are (a key is
// compared, not trusted, so being lenient only makes more keys recognisable).
size_t PercentDecodeTo(std::string_view s, char* out) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out[n++] = static_cast<char>(HexValue(s[i + 1]) << 4 | HexValue(s[i + 2]));
      i += 2;
    } else if (s[i] == '+') {
      out[n++] = ' ';
    } else {
      out[n++] = s[i];
    }
  }
  return n;
}

// Lowercase with '-', '_', '.' and spaces dropped, so spelling variants of a key compare equal.
// Into `out` (room for key.size() bytes); returns the size.
size_t NormalizeKeyTo(std::string_view key, char* out) {
  size_t n = 0;
  for (char c : key)
    if (c != '-' && c != '_' && c != '.' && c != ' ') out[n++] = ToLower(c);
  return n;
}
std::string NormalizeKey(std::string_view key) {
  std::string out(key.size(), '\0');
  out.resize(NormalizeKeyTo(key, out.data()));
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return ToLower(x) == ToLower(y); });
}

// Normalized (see NormalizeKey).
constexpr std::array<std::string_view, 28> kSensitiveQueryKeys = {
    "awsaccesskeyid", "signature",   "sig",           "xgoogsignature", "xgoogcredential",
    "xamzsignature",  "xamzcredential", "xamzsecuritytoken", "token",   "accesstoken",
    "idtoken",        "refreshtoken", "apikey",       "key",            "password",
    "passwd",         "pwd",         "secret",        "clientsecret",   "auth",
    "session",        "sessionid",   "jwt",           "code",           "privatekey",
    "credential",     "credentials", "authorization"};

constexpr std::array<std::string_view, 19> kSensitiveWords = {
    "password", "passwd",    "pwd",        "pass",       "passphrase",  "secret",
    "token",    "apikey",    "accesskey",  "secretkey",  "privatekey",  "credential",
    "credentials", "auth",   "authorization", "jwt",     "sessionid",   "cookie",
    "signature"};

constexpr std::array<std::string_view, 5> kSensitiveSuffixes = {"password", "passwd", "secret",
                                                                "token", "apikey"};

constexpr std::array<std::string_view, 12> kSensitiveHeaders = {
    "authorization",   "proxy-authorization", "cookie",         "set-cookie",
    "x-api-key",       "x-auth-token",        "x-access-token", "x-csrf-token",
    "x-xsrf-token",    "x-amz-security-token", "x-goog-api-key", "x-vault-token"};

template <size_t N>
bool Contains(const std::array<std::string_view, N>& set, std::string_view s) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

// For each first letter, the lengths of the sensitive query keys that start with it (bit n:
// length n): most keys of a query ("page", "id", "sort") are ruled out by one test instead of
// 28 comparisons, for every query parameter of every span.
constexpr std::array<uint32_t, 26> kSensitiveQueryKeyLengths = [] {
  std::array<uint32_t, 26> m{};
  for (std::string_view k : kSensitiveQueryKeys) m[static_cast<size_t>(k[0] - 'a')] |= 1u << k.size();
  return m;
}();

// `normalized` (see NormalizeKey) is one of kSensitiveQueryKeys.
bool IsSensitiveNormalizedQueryKey(std::string_view normalized) {
  static_assert(std::all_of(kSensitiveQueryKeys.begin(), kSensitiveQueryKeys.end(), [](std::string_view k) {
    return !k.empty() && k.size() < 32 && k[0] >= 'a' && k[0] <= 'z';
  }));
  if (normalized.empty() || normalized.size() >= 32 || normalized[0] < 'a' || normalized[0] > 'z') return false;
  if (!(kSensitiveQueryKeyLengths[static_cast<size_t>(normalized[0] - 'a')] >> normalized.size() & 1u)) return false;
  return Contains(kSensitiveQueryKeys, normalized);
}

// Splits "--name=value" style arguments; returns the name without leading dashes (and without
// the "D" of a Java "-Dname=value").
std::string_view StripDashes(std::string_view arg) {
  while (arg.starts_with('-')) arg.remove_prefix(1);
  return arg;
}
std::string_view FlagName(std::string_view arg) {
  if (arg.starts_with("-D") && !arg.starts_with("--")) return arg.substr(2);
  return StripDashes(arg);
}

}  // namespace

bool IsSensitiveQueryKey(std::string_view key, const RedactionOptions& options) {
  // Decoded and normalised on the stack when the key is short (all usual ones): as two
  // std::strings built a character at a time it was ~280 instructions for "page" (callgrind,
  // pipeline_bench). Decoding never lengthens a key, nor does normalising; longer keys take
  // the same steps in strings.
  constexpr size_t kStack = 64;
  // `to` writes at most in.size() bytes: into `stack` when that fits, else into `heap`.
  const auto transformed = [](std::string_view in, char (&stack)[kStack], std::string& heap,
                              size_t (*to)(std::string_view, char*)) -> std::string_view {
    if (in.size() <= kStack) return std::string_view(stack, to(in, stack));
    heap.resize(in.size());
    heap.resize(to(in, heap.data()));
    return heap;
  };
  char decoded_buf[kStack];
  char normalized_buf[kStack];
  std::string decoded_str, normalized_str;
  const std::string_view decoded = transformed(key, decoded_buf, decoded_str, PercentDecodeTo);
  std::string_view name = decoded;
  // "user[password]" and "a[b][secret]": the innermost name says what the value is.
  if (name.ends_with(']')) {
    size_t open = name.rfind('[');
    if (open != std::string_view::npos) name = name.substr(open + 1, name.size() - open - 2);
  }
  const std::string_view normalized = transformed(name, normalized_buf, normalized_str, NormalizeKeyTo);
  if (IsSensitiveNormalizedQueryKey(normalized)) return true;
  return std::any_of(options.extra_query_keys.begin(), options.extra_query_keys.end(),
                     [&](const std::string& k) { return NormalizeKey(k) == normalized; });
}

void AppendRedactedQuery(std::string& out, std::string_view query, const RedactionOptions& options) {
  if (query.starts_with('?')) {
    out += '?';
    query.remove_prefix(1);
  }
  // Each part "key=value" as it is, or "key=REDACTED"; parts are appended as views (a
  // std::string made for each was most of the cost of a one-parameter query).
  size_t start = 0;
  while (true) {
    const size_t amp = query.find('&', start);
    const std::string_view part =
        query.substr(start, amp == std::string_view::npos ? std::string_view::npos : amp - start);
    const size_t eq = part.find('=');
    if (eq == std::string_view::npos || eq + 1 == part.size() ||
        !IsSensitiveQueryKey(part.substr(0, eq), options)) {
      out.append(part);
    } else {
      out.append(part.substr(0, eq + 1)).append(kRedacted);
    }
    if (amp == std::string_view::npos) break;
    out += '&';
    start = amp + 1;
  }
}

std::string RedactQuery(std::string_view query, const RedactionOptions& options) {
  std::string out;
  out.reserve(query.size());
  AppendRedactedQuery(out, query, options);
  return out;
}

std::string RedactUserInfo(std::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  size_t authority = scheme_end + 3;
  size_t authority_end = url.find_first_of("/?#", authority);
  if (authority_end == std::string_view::npos) authority_end = url.size();
  std::string_view auth = url.substr(authority, authority_end - authority);
  size_t at = auth.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  std::string out(url.substr(0, authority));
  out += kRedacted;
  if (auth.substr(0, at).find(':') != std::string_view::npos) {
    out += ':';
    out += kRedacted;
  }
  out += url.substr(authority + at);
  return out;
}

std::string RedactUrl(std::string_view url, const RedactionOptions& options) {
  std::string out = RedactUserInfo(url);
  size_t q = out.find('?');
  if (q == std::string::npos) return out;
  size_t hash = out.find('#', q);
  size_t end = hash == std::string::npos ? out.size() : hash;
  std::string redacted = RedactQuery(std::string_view(out).substr(q + 1, end - q - 1), options);
  return out.substr(0, q + 1) + redacted + out.substr(end);
}

bool IsSensitiveName(std::string_view name) {
  std::vector<std::string> words;
  std::string word;
  for (char c : name) {
    if (IsAlnum(c)) {
      word += ToLower(c);
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (Contains(kSensitiveWords, w)) return true;
    if (i + 1 < words.size() && Contains(kSensitiveWords, w + words[i + 1])) return true;
    for (std::string_view suffix : kSensitiveSuffixes)
      if (w.ends_with(suffix)) return true;
  }
  return false;
}

std::vector<std::string> RedactCommandLine(const std::vector<std::string>& argv) {
  std::vector<std::string> out;
  out.reserve(argv.size());
  bool redact_next = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string_view arg = argv[i];
    // argv[0] is the program; its name is never a secret and "token-server" must stay.
    if (i == 0) {
      out.push_back(RedactUserInfo(arg));
      continue;
    }
    if (redact_next) {
      redact_next = false;
      if (!arg.starts_with("--")) {
        out.emplace_back(kRedacted);
        continue;
      }
    }
    // A header given on the command line (curl -H 'Authorization: Bearer x'): its value when
    // the header is sensitive.
    if (size_t colon = arg.find(':'); colon != std::string_view::npos && colon > 0 &&
                                      arg.find("://") == std::string_view::npos) {
      std::string_view name = arg.substr(0, colon);
      if (std::all_of(name.begin(), name.end(), [](char c) { return IsAlnum(c) || c == '-' || c == '_'; }) &&
          IsSensitiveHeader(name)) {
        std::string redacted(arg.substr(0, colon + 1));
        redacted += " ";
        redacted += kRedacted;
        out.push_back(std::move(redacted));
        continue;
      }
    }
    // A URL anywhere in the arguments: user:password@ and sensitive query values.
    if (arg.find("://") != std::string_view::npos) {
      out.push_back(RedactUrl(arg));
      continue;
    }
    size_t eq = arg.find('=');
    if (eq != std::string_view::npos && eq > 0) {
      std::string_view name = FlagName(arg.substr(0, eq));
      // A positional NAME=value counts only when NAME looks like an identifier, so that
      // "a=b" inside free text is not mistaken for a variable.
      bool is_flag = arg.starts_with('-');
      bool is_env = !is_flag && std::all_of(name.begin(), name.end(), [](char c) {
        return IsAlnum(c) || c == '_' || c == '.' || c == '-';
      });
      if ((is_flag || is_env) && !name.empty() && IsSensitiveName(name)) {
        std::string redacted(arg.substr(0, eq + 1));
        redacted += kRedacted;
        out.push_back(std::move(redacted));
        continue;
      }
      out.push_back(RedactUserInfo(arg));
      continue;
    }
    // "--token value" and Go-style "-password value"; "-p value" could be a port or anything.
    if (arg.starts_with('-')) {
      std::string_view name = StripDashes(arg);
      if (name.size() > 1 && (arg.starts_with("--") || arg.size() > 2) && IsSensitiveName(name))
        redact_next = true;
      out.emplace_back(arg);
      continue;
    }
    out.push_back(RedactUserInfo(arg));
  }
  return out;
}

bool IsSensitiveHeader(std::string_view name, const RedactionOptions& options) {
  for (std::string_view h : kSensitiveHeaders)
    if (EqualsIgnoreCase(h, name)) return true;
  for (const auto& h : options.extra_header_names)
    if (EqualsIgnoreCase(h, name)) return true;
  return IsSensitiveName(name);
}

}  // namespace threadline
