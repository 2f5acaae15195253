#include "agent/spans/redaction.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace threadline {
namespace {

TEST(RedactQuery, Table) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", ""},
      {"q=shoes&page=2", "q=shoes&page=2"},
      {"token=abc", "token=REDACTED"},
      {"?token=abc&q=1", "?token=REDACTED&q=1"},
      // The OTel semconv list, any case.
      {"AWSAccessKeyId=AKIA&Signature=xyz&Expires=1", "AWSAccessKeyId=REDACTED&Signature=REDACTED&Expires=1"},
      {"sig=s&X-Goog-Signature=g", "sig=REDACTED&X-Goog-Signature=REDACTED"},
      {"X-Amz-Signature=a&X-Amz-Credential=b&X-Amz-Security-Token=c&X-Amz-Date=d",
       "X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Security-Token=REDACTED&X-Amz-Date=d"},
      {"ACCESS_TOKEN=a&id_token=b&refresh_token=c", "ACCESS_TOKEN=REDACTED&id_token=REDACTED&refresh_token=REDACTED"},
      {"api_key=1&apikey=2&api-key=3&key=4", "api_key=REDACTED&apikey=REDACTED&api-key=REDACTED&key=REDACTED"},
      {"password=p&passwd=p&secret=s&client_secret=c", "password=REDACTED&passwd=REDACTED&secret=REDACTED&client_secret=REDACTED"},
      {"auth=a&session=s&sessionid=x&jwt=j&code=c", "auth=REDACTED&session=REDACTED&sessionid=REDACTED&jwt=REDACTED&code=REDACTED"},
      // Shape is preserved: empty parts, parts without '=', empty values, '=' inside values.
      {"a&&token=x", "a&&token=REDACTED"},
      {"token", "token"},
      {"token=", "token="},
      {"&", "&"},
      {"token=a=b&x=1", "token=REDACTED&x=1"},
      {"q=1&token=abc&q=2&token=def", "q=1&token=REDACTED&q=2&token=REDACTED"},
      // Percent-encoded and form-encoded keys, bracketed names.
      {"%74oken=abc", "%74oken=REDACTED"},
      {"access%5Ftoken=abc", "access%5Ftoken=REDACTED"},
      {"user%5Bpassword%5D=p&user%5Bname%5D=n", "user%5Bpassword%5D=REDACTED&user%5Bname%5D=n"},
      {"user[password]=p", "user[password]=REDACTED"},
      {"api+key=1", "api+key=REDACTED"},
      {"%zz=1", "%zz=1"},
      // Keys that merely contain a sensitive word are not sensitive.
      {"keyword=shoes&tokens=5&codec=h264&author=me", "keyword=shoes&tokens=5&codec=h264&author=me"},
  };
  for (const auto& [in, out] : cases) EXPECT_EQ(RedactQuery(in), out) << in;
}

// Every key of the list (redaction.cpp's kSensitiveQueryKeys, filtered by first letter and
// length before it is searched), and words of the same first letter and length that are not.
TEST(RedactQuery, EveryListedKeyAndItsNeighbours) {
  for (const char* k : {"awsaccesskeyid", "signature", "sig", "xgoogsignature", "xgoogcredential",
                        "xamzsignature", "xamzcredential", "xamzsecuritytoken", "token", "accesstoken",
                        "idtoken", "refreshtoken", "apikey", "key", "password", "passwd", "pwd", "secret",
                        "clientsecret", "auth", "session", "sessionid", "jwt", "code", "privatekey",
                        "credential", "credentials", "authorization"})
    EXPECT_TRUE(IsSensitiveQueryKey(k)) << k;
  for (const char* k : {"tokenz", "sag", "kez", "pxd", "passwx", "authz", "cod", "sessio", "", "1token", "_"})
    EXPECT_FALSE(IsSensitiveQueryKey(k)) << k;
}

TEST(RedactQuery, ExtraKeys) {
  RedactionOptions opts;
  opts.extra_query_keys = {"ssn", "Card-Number"};
  EXPECT_EQ(RedactQuery("ssn=1&card_number=2&name=x", opts), "ssn=REDACTED&card_number=REDACTED&name=x");
  EXPECT_EQ(RedactQuery("ssn=1"), "ssn=1");
  EXPECT_TRUE(IsSensitiveQueryKey("SSN", opts));
  EXPECT_FALSE(IsSensitiveQueryKey("ssn"));
}

// Keys are decoded and normalised on the stack up to 64 bytes and in strings past that: both
// ways must judge a key alike (the innermost bracketed name of a long key, a long encoded key,
// extra keys longer than the stack), and AppendRedactedQuery appends what RedactQuery returns.
TEST(RedactQuery, LongKeysAndAppending) {
  const std::string pad(70, 'a');
  EXPECT_TRUE(IsSensitiveQueryKey(pad + "[password]"));
  EXPECT_TRUE(IsSensitiveQueryKey(pad + "%5Bpassword%5D"));
  EXPECT_TRUE(IsSensitiveQueryKey("user%5B" + std::string(30, '_') + "pass" + std::string(40, '-') + "word%5D"));
  EXPECT_FALSE(IsSensitiveQueryKey(pad + "password"));
  EXPECT_FALSE(IsSensitiveQueryKey(pad));
  std::string encoded;
  for (char c : std::string("access_token")) encoded += "%" + std::string(1, "0123456789ABCDEF"[c >> 4]) + "0123456789ABCDEF"[c & 15];
  EXPECT_GT(encoded.size(), 32u);
  EXPECT_TRUE(IsSensitiveQueryKey(encoded));
  EXPECT_TRUE(IsSensitiveQueryKey(std::string(64, '-') + "token"));  // 69 bytes, normalised "token"
  RedactionOptions opts;
  const std::string long_extra = "x" + std::string(80, 'y');
  opts.extra_query_keys = {long_extra};
  EXPECT_TRUE(IsSensitiveQueryKey(long_extra, opts));
  EXPECT_TRUE(IsSensitiveQueryKey("X" + std::string(80, 'Y'), opts));
  EXPECT_FALSE(IsSensitiveQueryKey(long_extra.substr(1), opts));

  const std::string query = "q=" + pad + "&" + pad + "[secret]=s&token=t&page=2";
  std::string out = "prefix?";
  AppendRedactedQuery(out, query);
  EXPECT_EQ(out, "prefix?" + RedactQuery(query));
  EXPECT_EQ(RedactQuery(query), "q=" + pad + "&" + pad + "[secret]=REDACTED&token=REDACTED&page=2");
}

TEST(RedactUserInfo, Table) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"https://user:pass@example.com/x", "https://REDACTED:REDACTED@example.com/x"},
      {"https://user@example.com/x", "https://REDACTED@example.com/x"},
      {"postgres://app:s3cr3t@db:5432/orders", "postgres://REDACTED:REDACTED@db:5432/orders"},
      {"https://example.com/x?email=a@b.c", "https://example.com/x?email=a@b.c"},  // '@' after the authority
      {"https://example.com/u/a@b.c", "https://example.com/u/a@b.c"},
      {"https://u:p@w@example.com", "https://REDACTED:REDACTED@example.com"},  // last '@' ends userinfo
      {"https://example.com", "https://example.com"},
      {"/just/a/path", "/just/a/path"},
      {"", ""},
  };
  for (const auto& [in, out] : cases) EXPECT_EQ(RedactUserInfo(in), out) << in;
}

TEST(RedactUrl, UserInfoAndQuery) {
  EXPECT_EQ(RedactUrl("https://u:p@s3.amazonaws.com/b/k?X-Amz-Signature=abc&x=1#frag=token=1"),
            "https://REDACTED:REDACTED@s3.amazonaws.com/b/k?X-Amz-Signature=REDACTED&x=1#frag=token=1");
  EXPECT_EQ(RedactUrl("/search?q=1&api_key=k"), "/search?q=1&api_key=REDACTED");
  EXPECT_EQ(RedactUrl("/plain"), "/plain");
}

TEST(IsSensitiveName, WordsNotSubstrings) {
  for (std::string_view n : {"password", "PASSWORD", "PGPASSWORD", "DB_PASSWORD", "MYSQL_PWD", "api-key",
                             "API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "client-secret",
                             "javax.net.ssl.keyStorePassword", "auth", "x-session-id", "jwt"}) {
    EXPECT_TRUE(IsSensitiveName(n)) << n;
  }
  for (std::string_view n : {"max-tokens", "tokenizer", "author", "port", "host", "keyword", "PATH",
                             "HOME", "verbose", "compass"}) {
    EXPECT_FALSE(IsSensitiveName(n)) << n;
  }
}

TEST(RedactCommandLine, Flags) {
  using V = std::vector<std::string>;
  EXPECT_EQ(RedactCommandLine(V{"server", "--password=hunter2", "--port=8080"}),
            (V{"server", "--password=REDACTED", "--port=8080"}));
  EXPECT_EQ(RedactCommandLine(V{"server", "--token", "abc", "--verbose"}),
            (V{"server", "--token", "REDACTED", "--verbose"}));
  // Go-style single-dash long flags.
  EXPECT_EQ(RedactCommandLine(V{"app", "-password", "x", "-api-key=k"}),
            (V{"app", "-password", "REDACTED", "-api-key=REDACTED"}));
  // -p is ambiguous (port? password?): left alone.
  EXPECT_EQ(RedactCommandLine(V{"mysql", "-p", "secret", "-u", "root"}),
            (V{"mysql", "-p", "secret", "-u", "root"}));
  // A flag followed by another long flag has no value to hide.
  EXPECT_EQ(RedactCommandLine(V{"app", "--token", "--debug"}), (V{"app", "--token", "--debug"}));
  // A trailing flag without value.
  EXPECT_EQ(RedactCommandLine(V{"app", "--secret"}), (V{"app", "--secret"}));
  // Java system properties.
  EXPECT_EQ(RedactCommandLine(V{"java", "-Djavax.net.ssl.keyStorePassword=changeit", "-Dfile.encoding=UTF-8", "-jar", "a.jar"}),
            (V{"java", "-Djavax.net.ssl.keyStorePassword=REDACTED", "-Dfile.encoding=UTF-8", "-jar", "a.jar"}));
  // Not secrets.
  EXPECT_EQ(RedactCommandLine(V{"vllm", "--max-tokens=100", "--tokenizer", "bert"}),
            (V{"vllm", "--max-tokens=100", "--tokenizer", "bert"}));
}

TEST(RedactCommandLine, EnvStyleAndUrls) {
  using V = std::vector<std::string>;
  EXPECT_EQ(RedactCommandLine(V{"env", "PGPASSWORD=p", "HOME=/root", "psql"}),
            (V{"env", "PGPASSWORD=REDACTED", "HOME=/root", "psql"}));
  EXPECT_EQ(RedactCommandLine(V{"app", "--dsn=postgres://u:p@db/x", "redis://:pw@cache:6379"}),
            (V{"app", "--dsn=postgres://REDACTED:REDACTED@db/x", "redis://REDACTED:REDACTED@cache:6379"}));
  // Free text with '=' that is not an identifier is left alone.
  EXPECT_EQ(RedactCommandLine(V{"sh", "-c", "echo token=1"}), (V{"sh", "-c", "echo token=1"}));
  // argv[0] is never redacted by name.
  EXPECT_EQ(RedactCommandLine(V{"token-server", "serve"}), (V{"token-server", "serve"}));
  EXPECT_EQ(RedactCommandLine(V{}), V{});
}

TEST(IsSensitiveHeader, KnownAndPattern) {
  for (std::string_view h : {"Authorization", "proxy-authorization", "Cookie", "SET-COOKIE", "X-Api-Key",
                             "x-auth-token", "X-CSRF-Token", "x-amz-security-token", "X-Vault-Token",
                             "X-GitHub-Token", "X-Session-Id"}) {
    EXPECT_TRUE(IsSensitiveHeader(h)) << h;
  }
  for (std::string_view h : {"Content-Type", "User-Agent", "Host", "traceparent", "tracestate", "Accept",
                             "X-Request-Id", "WWW-Authenticate"}) {
    EXPECT_FALSE(IsSensitiveHeader(h)) << h;
  }
  RedactionOptions opts;
  opts.extra_header_names = {"X-Internal-Customer"};
  EXPECT_TRUE(IsSensitiveHeader("x-internal-customer", opts));
  EXPECT_FALSE(IsSensitiveHeader("x-internal-customer"));
}

}  // namespace
}  // namespace threadline

namespace threadline {
namespace {
TEST(RedactCommandLineClients, UrlsAndHeaderArgumentsAreRedacted) {
  std::vector<std::string> argv = {"curl", "-H", "Authorization: Bearer abc.def", "-H",
                                   "Accept: text/html", "https://u:pw@example.com/x?token=s3cret&page=2"};
  auto out = RedactCommandLine(argv);
  ASSERT_EQ(out.size(), argv.size());
  EXPECT_EQ(out[2], "Authorization: REDACTED");
  EXPECT_EQ(out[4], "Accept: text/html");
  EXPECT_EQ(out[5].find("s3cret"), std::string::npos) << out[5];
  EXPECT_EQ(out[5].find("pw@"), std::string::npos) << out[5];
  EXPECT_NE(out[5].find("page=2"), std::string::npos) << out[5];
}
}  // namespace
}  // namespace threadline
