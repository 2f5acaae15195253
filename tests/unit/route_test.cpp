#include "agent/protocols/http/route.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace threadline {
namespace {

TEST(InferRoute, Table) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "/"},
      {"/", "/"},
      {"//", "/"},
      {"/items", "/items"},
      {"/items/", "/items/"},
      {"/api/v1/items/42", "/api/v1/items/{id}"},
      {"/api/v1/items/42/", "/api/v1/items/{id}/"},
      {"//api///v1//items/42", "/api/v1/items/{id}"},
      {"items/7", "/items/{id}"},
      {"*", "*"},
      {"/items/42?token=abc", "/items/{id}"},
      {"/items/42#frag", "/items/{id}"},
      {"http://example.com/users/12", "/users/{id}"},
      {"http://example.com", "/"},
      {"/index.html", "/index.html"},
      {"/static/app.css", "/static/app.css"},
      {"/users/123e4567-e89b-12d3-a456-426614174000", "/users/{uuid}"},
      {"/users/123E4567-E89B-12D3-A456-426614174000/orders", "/users/{uuid}/orders"},
      {"/blobs/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/blobs/{hex}"},
      {"/c/4bf92f3577b34da6", "/c/{hex}"},
      {"/c/5f2b9c1a", "/c/{hex}"},            // 8 hex with digits and letters
      {"/c/ABCDEF12", "/c/{hex}"},            // any case
      {"/deadbeef", "/deadbeef"},             // a-f word, no digits
      {"/facade", "/facade"},
      {"/added/feed", "/added/feed"},
      {"/u/alice@example.com", "/u/{email}"},
      {"/u/alice%40example.com/x", "/u/{email}/x"},
      {"/s/dGhpcyBpcyBhIHRva2VuMTIz", "/s/{token}"},  // base64
      {"/s/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc123", "/s/{token}"},  // JWT-ish
      {"/orders/ord_12345678", "/orders/{token}"},
      {"/reports/2024-01-31", "/reports/{id}"},
      {"/download/1.2.3/linux", "/download/{id}/linux"},
      {"/assets/app.3f2a9c1b.js", "/assets/app.{hex}.js"},
      {"/assets/jquery-3.6.0.min.js", "/assets/jquery-3.6.0.min.js"},
      {"/blog/my-long-article-title-2023", "/blog/{token}"},
      {"/v2/api/health", "/v2/api/health"},
      {"/x86_64/pkg", "/x86_64/pkg"},
      {"/oauth2/callback", "/oauth2/callback"},
      {"/user-profile/settings", "/user-profile/settings"},
      // Around the plain-word shortcut (letters and digits only): the same templates as the
      // tests one by one give.
      {"/h/deadbeefdeadbeef", "/h/{hex}"},           // 16 a-f letters: a hash
      {"/h/deadbeefdeadbee", "/h/deadbeefdeadbee"},  // 15: a word
      {"/w/abc1234", "/w/abc1234"},                  // 7 bytes: too short for an id
      {"/w/abcd1234", "/w/{hex}"},                   // 8 hex with a digit
      {"/w/abcd1234wxyz5678", "/w/{token}"},         // 16 with digits: generated
      {"/w/Abcdefghijklmnopqrstuvwxyz", "/w/Abcdefghijklmnopqrstuvwxyz"},
  };
  for (const auto& [path, route] : cases) EXPECT_EQ(InferRoute(path), route) << path;
}

TEST(InferRoute, DepthIsCapped) {
  EXPECT_EQ(InferRoute("/a/b/c/d/e/f/g/h"), "/a/b/c/d/e/f/g/h");
  EXPECT_EQ(InferRoute("/a/b/c/d/e/f/g/h/"), "/a/b/c/d/e/f/g/h/");
  EXPECT_EQ(InferRoute("/a/b/c/d/e/f/g/h/i"), "/a/b/c/d/e/f/g/h/\xE2\x80\xA6");
  EXPECT_EQ(InferRoute("/a/b/c/d/e/f/g/h/i/j/k/"), "/a/b/c/d/e/f/g/h/\xE2\x80\xA6");
}

TEST(InferRoute, LengthIsCapped) {
  std::string word(60, 'w');  // a long ordinary word: kept, but the route is cut in length
  std::string path = "/" + word + "/" + word + "/" + word + "/end";
  std::string route = InferRoute(path);
  EXPECT_EQ(route, "/" + word + "/" + word + "/\xE2\x80\xA6");
  EXPECT_LE(route.size(), kMaxRouteLength + 4);
  // A single segment longer than the segment cap is a token whatever it is made of.
  EXPECT_EQ(InferRoute("/" + std::string(65, 'z')), "/{token}");
}

TEST(InferRoute, CardinalityStaysBounded) {
  std::set<std::string> routes;
  for (unsigned i = 0; i < 2000; ++i) {
    char uuid[64];
    std::snprintf(uuid, sizeof(uuid), "%08x-%04x-4%03x-a%03x-%012x", i * 7919, i & 0xffff, i & 0xfff,
                  (i * 3) & 0xfff, i * 104729);
    char hex[64];  // "ab" keeps it from being all digits, which would make it an {id}
    std::snprintf(hex, sizeof(hex), "ab%014llx",
                  (static_cast<unsigned long long>(i) * 0x9e3779b97f4a7c15ULL) & 0xffffffffffffffULL);
    routes.insert(InferRoute("/users/" + std::to_string(i) + "/orders/" + uuid));
    routes.insert(InferRoute("/blobs/" + std::string(hex)));
    routes.insert(InferRoute("/mail/user" + std::to_string(i) + "@example.com/inbox"));
    routes.insert(InferRoute("/deep/" + std::to_string(i) + "/a/b/c/d/e/f/g/h/" + std::to_string(i)));
  }
  EXPECT_EQ(routes, (std::set<std::string>{"/users/{id}/orders/{uuid}", "/blobs/{hex}",
                                           "/mail/{email}/inbox",
                                           "/deep/{id}/a/b/c/d/e/f/\xE2\x80\xA6"}));
}

TEST(RouteTable, FirstMatchWins) {
  auto table = RouteTable::Create({"/items/{id}", "/users/{user}/orders/{order}", "/static/*",
                                   "/items/special", "/a/*/c"});
  ASSERT_TRUE(table.ok()) << table.error().message;
  EXPECT_EQ(table->size(), 5u);
  EXPECT_EQ(table->Match("/items/42"), "/items/{id}");
  EXPECT_EQ(table->Match("/items/42/"), "/items/{id}");
  EXPECT_EQ(table->Match("/items/42?x=1"), "/items/{id}");
  EXPECT_EQ(table->Match("//items//42"), "/items/{id}");
  EXPECT_EQ(table->Match("/items/special"), "/items/{id}");  // earlier pattern wins
  EXPECT_EQ(table->Match("/items"), std::nullopt);
  EXPECT_EQ(table->Match("/items/1/2"), std::nullopt);
  EXPECT_EQ(table->Match("/users/bob/orders/7"), "/users/{user}/orders/{order}");
  EXPECT_EQ(table->Match("/users/bob/orders"), std::nullopt);
  EXPECT_EQ(table->Match("/static/css/site.css"), "/static/*");
  EXPECT_EQ(table->Match("/static/"), "/static/*");
  EXPECT_EQ(table->Match("/static"), "/static/*");
  EXPECT_EQ(table->Match("/staticx/a"), std::nullopt);
  EXPECT_EQ(table->Match("/a/b/c"), "/a/*/c");
  EXPECT_EQ(table->Match("/a/b/x/c"), std::nullopt);
  EXPECT_EQ(table->Match("/Items/1"), std::nullopt);  // literal segments are case-sensitive
}

TEST(RouteTable, RejectsMalformedPatterns) {
  EXPECT_FALSE(RouteTable::Create({"items/{id}"}).ok());
  EXPECT_FALSE(RouteTable::Create({""}).ok());
  EXPECT_FALSE(RouteTable::Create({"/items/{id"}).ok());
  EXPECT_FALSE(RouteTable::Create({"/items/{}"}).ok());
  EXPECT_FALSE(RouteTable::Create({"/items/x{id}"}).ok());
  EXPECT_TRUE(RouteTable::Create({"/", "/*"}).ok());
}

TEST(RouteTable, RootAndCatchAll) {
  auto table = RouteTable::Create({"/", "/*"});
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->Match("/"), "/");
  EXPECT_EQ(table->Match("/anything/at/all"), "/*");
}

TEST(ResolveRoute, ConfiguredThenInferred) {
  auto table = RouteTable::Create({"/users/{user}"});
  ASSERT_TRUE(table.ok());
  auto configured = ResolveRoute(*table, "/users/bob");
  EXPECT_EQ(configured.route, "/users/{user}");
  EXPECT_TRUE(configured.configured);
  auto inferred = ResolveRoute(*table, "/orders/17");
  EXPECT_EQ(inferred.route, "/orders/{id}");
  EXPECT_FALSE(inferred.configured);
}

TEST(HttpMethod, Normalisation) {
  for (std::string_view m : {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}) {
    EXPECT_TRUE(IsKnownHttpMethod(m)) << m;
    EXPECT_EQ(NormalizeHttpMethod(m), m);
  }
  for (std::string_view m : {"get", "PROPFIND", "QUERY", "", "GET "}) {
    EXPECT_FALSE(IsKnownHttpMethod(m)) << m;
    EXPECT_EQ(NormalizeHttpMethod(m), "_OTHER") << m;
  }
}

TEST(HttpSpanName, MethodAndRoute) {
  EXPECT_EQ(HttpSpanName("GET", "/items/{id}"), "GET /items/{id}");
  EXPECT_EQ(HttpSpanName("POST", ""), "POST");
  EXPECT_EQ(HttpSpanName("PROPFIND", "/dav"), "HTTP /dav");
  EXPECT_EQ(HttpSpanName("get", "/x"), "HTTP /x");
  EXPECT_EQ(HttpSpanName("FOO", ""), "HTTP");
}

// What semconv calls per span (written into the name, no route string) says the same as
// HttpSpanName(ResolveRoute(...)), configured or inferred, and reuses the name's storage.
TEST(HttpSpanName, SetInPlaceAgreesWithResolveRoute) {
  auto table = RouteTable::Create({"/users/{user}", "/static/*"});
  ASSERT_TRUE(table.ok());
  std::string name = "previous name, longer than any of these";
  for (std::string_view method : {"GET", "PROPFIND"}) {
    for (std::string_view path :
         {"/users/bob", "/static/a/b.css", "/orders/17", "/", "*", "http://h/x/9", "/a/b/c/d/e/f/g/h/i/j",
          "/items/550e8400-e29b-41d4-a716-446655440000/app.3f2a9c1b.js", "/x?q=1"}) {
      const ResolvedRoute resolved = ResolveRoute(*table, path);
      const std::string* configured = SetHttpSpanName(*table, method, path, name);
      EXPECT_EQ(name, HttpSpanName(method, resolved.route)) << path;
      EXPECT_EQ(configured != nullptr, resolved.configured) << path;
      if (configured != nullptr) {
        EXPECT_EQ(*configured, resolved.route);
      }
    }
  }
}

}  // namespace
}  // namespace threadline
