// No secrets leave the node by default. Spans carry URLs, headers and process command lines,
// all of which routinely hold credentials (presigned URLs, ?access_token=, --password=...).
// These helpers keep the shape of what they are given (keys, order, flag names) and replace
// only the secret values with "REDACTED", as the OTel semantic conventions do for url.query.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace threadline {

inline constexpr std::string_view kRedacted = "REDACTED";

struct RedactionOptions {
  // More query keys to redact, compared like the built-in ones (see IsSensitiveQueryKey).
  std::vector<std::string> extra_query_keys;
  // More header names to treat as sensitive (case-insensitive, exact).
  std::vector<std::string> extra_header_names;
};

// Whether a query key's value is secret. The key is percent-decoded ('+' as space), compared
// case-insensitively and with '-', '_' and '.' ignored ("api-key" == "API_KEY" == "apikey"), and
// for "a[b]" keys the innermost bracketed name is used ("user[password]" -> "password").
// Built in: the OTel semconv list (AWSAccessKeyId, Signature, sig, X-Goog-Signature) plus
// X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token, X-Goog-Credential, token,
// access_token, id_token, refresh_token, api_key, apikey, key, password, passwd, pwd, secret,
// client_secret, auth, session, sessionid, session_id, jwt, code, private_key, credential(s).
bool IsSensitiveQueryKey(std::string_view key, const RedactionOptions& options = {});

// The query string (with or without its leading '?') with the values of sensitive keys replaced
// by REDACTED. Keys, order, '&' separators, empty parts ("a&&b") and parts without '=' are kept
// byte for byte; only '&' separates parameters (WHATWG URL). An empty value stays empty.
std::string RedactQuery(std::string_view query, const RedactionOptions& options = {});
// RedactQuery appended to `out` (into a string that already has its capacity).
void AppendRedactedQuery(std::string& out, std::string_view query, const RedactionOptions& options = {});

// "scheme://user:pass@host/..." -> "scheme://REDACTED:REDACTED@host/..." (and "user@" ->
// "REDACTED@"), per the semconv rule for url.full. Strings without an authority are unchanged.
std::string RedactUserInfo(std::string_view url);

// RedactUserInfo, then RedactQuery on the part between '?' and '#'.
std::string RedactUrl(std::string_view url, const RedactionOptions& options = {});

// Whether a flag or environment-variable name names a secret: split into lowercase words at
// non-alphanumerics, it is sensitive when a word, or two adjacent words joined, is one of
// password passwd pwd pass passphrase secret token apikey accesskey secretkey privatekey
// credential credentials auth authorization jwt sessionid cookie signature, or a word ends
// with password, passwd, secret, token or apikey ("PGPASSWORD", "GITHUB_TOKEN", "keyStorePassword"). Words merely
// containing them do not count ("--max-tokens", "--tokenizer").
bool IsSensitiveName(std::string_view name);

// argv with secret values replaced, for process.command_line:
//   --name=value, -name=value, -Dname=value, NAME=value  -> value redacted when IsSensitiveName
//   --name value / -name value (multi-letter flag)       -> the next argument redacted, unless it
//                                                          starts with "--"
//   single-letter flags (-p value) are ambiguous and left alone
//   any argument holding "scheme://user:pass@"          -> user info redacted
std::vector<std::string> RedactCommandLine(const std::vector<std::string>& argv);

// Whether a header's value must not be recorded: authorization, proxy-authorization, cookie,
// set-cookie, x-api-key, x-auth-token, x-access-token, x-csrf-token, x-xsrf-token,
// x-amz-security-token, x-goog-api-key, x-vault-token, plus any name for which
// IsSensitiveName holds (x-github-token, x-session-id) and the configured extras.
// Case-insensitive.
bool IsSensitiveHeader(std::string_view name, const RedactionOptions& options = {});

}  // namespace threadline
