// SpanBuffers: spent spans' attribute vectors and long strings go to the next spans built on the
// same thread, never their contents; bounded; other threads have their own pool.
#include "agent/spans/span_buffers.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "agent/protocols/describe.h"

namespace threadline {
namespace {

const std::string kLong = "/api/v1/items/100968/and/more";  // does not fit a string's own storage

Span SpentSpan() {
  Span s;
  s.name = "GET /api/v1/items/{id} and a long name";
  s.attributes.reserve(28);
  AddString(s.attributes, "url.path", kLong);
  AddString(s.attributes, "url.scheme", "http");
  AddInt(s.attributes, "server.port", 8080);
  return s;
}

// Each test starts from an empty pool on its own thread.
template <typename F>
void OnFreshThread(F f) {
  std::thread t(f);
  t.join();
}

TEST(SpanBuffersTest, SpentBuffersServeTheNextSpanEmpty) {
  OnFreshThread([] {
    SpanBuffers& pool = SpanBuffers::Local();
    EXPECT_TRUE(pool.TakeAttributes().empty());
    EXPECT_EQ(pool.TakeAttributes().capacity(), 0u);

    Span spent = SpentSpan();
    const Attribute* attrs = spent.attributes.data();
    const char* path = std::get<std::string>(spent.attributes[0].value).data();
    const char* name = spent.name.data();
    pool.Give(spent);
    EXPECT_TRUE(spent.attributes.empty());  // left valid, emptied
    EXPECT_TRUE(spent.name.empty());
    EXPECT_EQ(pool.vectors(), 1u);
    EXPECT_EQ(pool.strings(), 2u);  // the name and url.path; "http" never had a buffer

    Attributes reused = pool.TakeAttributes();
    EXPECT_TRUE(reused.empty());
    EXPECT_EQ(reused.data(), attrs);
    EXPECT_GE(reused.capacity(), 28u);
    // Strings come back last in, first out, empty, holding what they are given.
    const std::string a = PooledString("/another/path/that/is/long");
    EXPECT_EQ(a, "/another/path/that/is/long");
    EXPECT_EQ(a.data(), path);
    std::string b = pool.TakeString();
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(b.data(), name);
    EXPECT_EQ(pool.strings(), 0u);
    EXPECT_EQ(PooledString("short"), "short");
  });
}

TEST(SpanBuffersTest, AddStringTakesAPooledBuffer) {
  OnFreshThread([] {
    Span spent = SpentSpan();
    const char* path = std::get<std::string>(spent.attributes[0].value).data();
    SpanBuffers::Local().Give(spent);
    Attributes attrs;
    const std::string other(kLong.size(), 'p');  // no longer than the buffer's capacity
    AddString(attrs, "url.path", other);
    // The name's buffer was given first, url.path's last: url.path's comes back first.
    EXPECT_EQ(std::get<std::string>(attrs[0].value), other);
    EXPECT_EQ(std::get<std::string>(attrs[0].value).data(), path);
  });
}

TEST(SpanBuffersTest, Bounded) {
  OnFreshThread([] {
    SpanBuffers& pool = SpanBuffers::Local();
    // Each spent span gives two strings and took one (its url.path) from the pool.
    for (size_t i = 0; i < SpanBuffers::kMaxStrings + 10; ++i) {
      Span s = SpentSpan();
      pool.Give(s);
    }
    EXPECT_EQ(pool.vectors(), SpanBuffers::kMaxVectors);
    EXPECT_EQ(pool.strings(), SpanBuffers::kMaxStrings);

    Span big;
    big.attributes.reserve(SpanBuffers::kMaxAttributes + 1);
    big.attributes.push_back({"k", std::string(SpanBuffers::kMaxString + 1, 'x')});
    OnFreshThread([&] {
      SpanBuffers& other = SpanBuffers::Local();
      EXPECT_EQ(other.vectors(), 0u);  // per thread
      other.Give(big);                 // too large to keep: freed with the span
      EXPECT_EQ(other.vectors(), 0u);
      EXPECT_EQ(other.strings(), 0u);
    });
  });
}

}  // namespace
}  // namespace threadline
