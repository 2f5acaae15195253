// MessageParser (one direction) and detection, fed literal byte streams from real peers and
// RFC 9112 corner cases.
#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <vector>

#include "agent/protocols/http1/detect.h"
#include "agent/protocols/http1/parser.h"
#include "agent/protocols/http1/syntax.h"
#include "agent/spans/context_rules.h"
#include "tests/unit/http1_test_util.h"

namespace threadline::http1 {
namespace {

using test::Bytes;
using test::Meta;
using test::RecordingListener;

// Every header field stored, for the tests that look at fields the agent does not read.
ParserLimits AllFields() {
  ParserLimits limits;
  limits.stored_fields = StoredFields::kAll;
  return limits;
}

struct ParserHarness {
  explicit ParserHarness(MessageKind kind, ParserLimits limits = {})
      : parser(kind, limits, listener) {}
  void Feed(std::string_view s, uint64_t ts = 1000, uint32_t tid = 100) {
    parser.Feed(Bytes(s), Meta(ts, tid));
  }
  RecordingListener listener;
  MessageParser parser;
};

TEST(Http1Parser, CurlRequest) {
  ParserHarness h(MessageKind::kRequest);
  h.Feed(test::kCurlGet, 5000, 42);
  ASSERT_EQ(h.listener.messages.size(), 1u);
  const Message& m = h.listener.messages[0];
  EXPECT_EQ(m.method, "GET");
  EXPECT_EQ(m.target, "/index.html");
  EXPECT_EQ(m.version_minor, 1);
  EXPECT_EQ(m.headers.size(), 2u);  // Accept: nothing reads it, so it is not stored
  EXPECT_EQ(m.headers.Get("user-agent"), "curl/7.88.1");
  EXPECT_EQ(m.headers.Get("HOST"), "localhost:8080");
  EXPECT_EQ(m.header_bytes, test::kCurlGet.size());
  EXPECT_EQ(m.framing, Framing::kNone);
  EXPECT_EQ(m.body_bytes, 0u);
  EXPECT_FALSE(m.connection_close);
  EXPECT_EQ(m.first_chunk.ts_ns, 5000u);
  EXPECT_EQ(m.first_chunk.enter_ts_ns, 4990u);
  EXPECT_EQ(m.first_chunk.tid, 42u);
  EXPECT_EQ(m.last_chunk.ts_ns, 5000u);
  EXPECT_EQ(h.listener.headers_seen, std::vector<std::string>{"GET"});
  EXPECT_TRUE(h.listener.failures.empty());
}

TEST(Http1Parser, PythonHttp10ResponseWithLength) {
  ParserHarness h(MessageKind::kResponse, AllFields());
  std::string r = test::PythonOk(42);
  h.Feed(std::string_view(r).substr(0, 100), 1000, 7);
  h.Feed(std::string_view(r).substr(100), 2000, 8);
  ASSERT_EQ(h.listener.messages.size(), 1u);
  const Message& m = h.listener.messages[0];
  EXPECT_EQ(m.status_code, 200);
  EXPECT_EQ(m.reason, "OK");
  EXPECT_EQ(m.version_minor, 0);
  EXPECT_EQ(m.headers.Get("server"), "SimpleHTTP/0.6 Python/3.11.7");
  EXPECT_TRUE(m.connection_close);  // HTTP/1.0 without keep-alive
  EXPECT_EQ(m.framing, Framing::kContentLength);
  EXPECT_EQ(m.body_bytes, 42u);
  EXPECT_EQ(m.header_bytes + m.body_bytes, r.size());
  EXPECT_EQ(m.first_chunk.tid, 7u);
  EXPECT_EQ(m.last_chunk.tid, 8u);
  EXPECT_EQ(m.last_chunk.ts_ns, 2000u);
}

TEST(Http1Parser, UntilCloseEndsAtClose) {
  ParserHarness h(MessageKind::kResponse);
  h.Feed(test::kPythonUntilClose, 1000);
  EXPECT_TRUE(h.listener.messages.empty());
  h.parser.Close();
  ASSERT_EQ(h.listener.messages.size(), 1u);
  EXPECT_EQ(h.listener.messages[0].framing, Framing::kUntilClose);
  EXPECT_EQ(h.listener.messages[0].body_bytes, std::string_view("streamed until close\n").size());
  EXPECT_FALSE(h.listener.messages[0].truncated);
}

TEST(Http1Parser, NodeChunked) {
  ParserHarness h(MessageKind::kResponse);
  h.Feed(test::kNodeChunked);
  ASSERT_EQ(h.listener.messages.size(), 1u);
  const Message& m = h.listener.messages[0];
  EXPECT_EQ(m.framing, Framing::kChunked);
  EXPECT_EQ(m.body_bytes, 11u);
  EXPECT_EQ(m.header_bytes + m.body_wire_bytes, test::kNodeChunked.size());
  EXPECT_FALSE(m.truncated);
}

TEST(Http1Parser, ChunkExtensionsAndTrailers) {
  ParserHarness h(MessageKind::kRequest, AllFields());
  std::string req =
      "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nTrailer: Digest\r\n\r\n"
      "4;name=value;flag\r\nabcd\r\n"
      "A ; quoted=\"x;y\"\r\n0123456789\r\n"
      "0;last\r\nDigest: sha-256=xyz\r\nX-Other: 1\r\n\r\n"
      "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
  h.Feed(req);
  ASSERT_EQ(h.listener.messages.size(), 2u);
  const Message& m = h.listener.messages[0];
  EXPECT_EQ(m.framing, Framing::kChunked);
  EXPECT_EQ(m.body_bytes, 14u);
  EXPECT_EQ(m.trailers.size(), 2u);
  EXPECT_EQ(m.trailers.Get("digest"), "sha-256=xyz");
  EXPECT_EQ(h.listener.messages[1].target, "/next");
  EXPECT_EQ(m.header_bytes + m.body_wire_bytes + h.listener.messages[1].header_bytes, req.size());
}

TEST(Http1Parser, SplitAtEveryOffsetGivesSameMessages) {
  std::string stream = test::NginxOk(615) + std::string(test::kNodeChunked) +
                       std::string(test::kNginxNotModified) +
                       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3;x=1\r\nabc\r\n0\r\nT: v\r\n\r\n" +
                       "HTTP/1.1 204 No Content\r\n\n" + test::PythonOk(10);
  ParserHarness whole(MessageKind::kResponse);
  whole.Feed(stream);
  ASSERT_EQ(whole.listener.messages.size(), 6u);
  EXPECT_TRUE(whole.listener.failures.empty());
  std::string expected = test::Summary(whole.listener.messages);

  ParserHarness bytewise(MessageKind::kResponse);
  for (size_t i = 0; i < stream.size(); ++i) bytewise.Feed(std::string_view(stream).substr(i, 1));
  EXPECT_EQ(test::Summary(bytewise.listener.messages), expected);

  for (size_t cut = 1; cut < stream.size(); ++cut) {
    ParserHarness two(MessageKind::kResponse);
    two.Feed(std::string_view(stream).substr(0, cut));
    two.Feed(std::string_view(stream).substr(cut));
    ASSERT_EQ(test::Summary(two.listener.messages), expected) << "cut at " << cut;
  }
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    ParserHarness random(MessageKind::kResponse);
    size_t off = 0;
    for (size_t piece : test::RandomPieces(stream.size(), seed)) {
      random.Feed(std::string_view(stream).substr(off, piece));
      off += piece;
    }
    ASSERT_EQ(test::Summary(random.listener.messages), expected) << "seed " << seed;
  }
}

TEST(Http1Parser, HeadResponseHasNoBodyDespiteContentLength) {
  ParserHarness h(MessageKind::kResponse, AllFields());
  h.listener.context.head = true;
  std::string head_response = test::NginxOk(615).substr(0, test::NginxOk(615).size() - 615);
  h.Feed(head_response);
  ASSERT_EQ(h.listener.messages.size(), 1u);
  EXPECT_EQ(h.listener.messages[0].framing, Framing::kNone);
  EXPECT_EQ(h.listener.messages[0].body_bytes, 0u);
  EXPECT_EQ(h.listener.messages[0].headers.Get("content-length"), "615");
}

TEST(Http1Parser, NoBodyFor204And304And1xx) {
  ParserHarness h(MessageKind::kResponse);
  h.Feed("HTTP/1.1 100 Continue\r\n\r\n");
  h.Feed("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n");
  h.Feed(test::kNginxNotModified);
  h.Feed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  ASSERT_EQ(h.listener.messages.size(), 4u);
  EXPECT_TRUE(h.listener.messages[0].is_interim());
  EXPECT_EQ(h.listener.messages[1].body_bytes, 0u);
  EXPECT_EQ(h.listener.messages[2].status_code, 304);
  EXPECT_EQ(h.listener.messages[3].body_bytes, 2u);
}

TEST(Http1Parser, TransferEncodingOverridesContentLength) {
  ParserHarness h(MessageKind::kRequest);
  h.Feed("POST /x HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
         "2\r\nhi\r\n0\r\n\r\nGET /y HTTP/1.1\r\n\r\n");
  ASSERT_EQ(h.listener.messages.size(), 2u);
  EXPECT_TRUE(h.listener.messages[0].te_and_cl);
  EXPECT_EQ(h.listener.messages[0].framing, Framing::kChunked);
  EXPECT_EQ(h.listener.messages[0].body_bytes, 2u);
  EXPECT_EQ(h.listener.messages[1].target, "/y");
}

TEST(Http1Parser, RequestTransferEncodingNotChunkedIsBadFraming) {
  ParserHarness h(MessageKind::kRequest);
  h.Feed("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nzzzz\r\nGET /y HTTP/1.1\r\n\r\n");
  ASSERT_EQ(h.listener.failures.size(), 1u);
  EXPECT_EQ(h.listener.failures[0], FailureReason::kBadFraming);
  ASSERT_EQ(h.listener.messages.size(), 1u);
  EXPECT_EQ(h.listener.messages[0].target, "/y");
}

TEST(Http1Parser, ConflictingContentLengthsAreBadFraming) {
  ParserHarness h(MessageKind::kResponse);
  h.Feed("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello");
  h.Feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
  ASSERT_EQ(h.listener.messages.size(), 1u);
  EXPECT_EQ(h.listener.messages[0].body_bytes, 5u);
  ASSERT_EQ(h.listener.failures.size(), 1u);
  EXPECT_EQ(h.listener.failures[0], FailureReason::kBadFraming);
}

TEST(Http1Parser, GapInLargeBodyKeepsSizes) {
  ParserHarness h(MessageKind::kResponse);
  std::string head = test::NginxOk(1'000'000).substr(0, test::NginxOk(1'000'000).size() - 1'000'000);
  h.Feed(head + std::string(4000, 'x'), 1000, 1);
  h.parser.Gap(1'000'000 - 4000 - 100, GapReason::kNotCaptured, Meta(1000, 1));
  h.Feed(std::string(100, 'y') + test::NginxOk(3), 3000, 2);
  ASSERT_EQ(h.listener.messages.size(), 2u);
  const Message& m = h.listener.messages[0];
  EXPECT_EQ(m.body_bytes, 1'000'000u);
  EXPECT_EQ(m.body_bytes_not_captured, 1'000'000u - 4100u);
  EXPECT_TRUE(m.missing_bytes());
  EXPECT_FALSE(m.truncated);
  EXPECT_EQ(m.last_chunk.ts_ns, 3000u);
  EXPECT_EQ(h.listener.messages[1].body_bytes, 3u);
  EXPECT_TRUE(h.listener.failures.empty());
}

TEST(Http1Parser, GapEndingTheBodyUsesGapMeta) {
  ParserHarness h(MessageKind::kResponse);
  std::string r = test::NginxOk(5000);
  h.Feed(std::string_view(r).substr(0, 4096), 1000, 1);
  h.parser.Gap(r.size() - 4096, GapReason::kNotCaptured, Meta(1000, 1));
  ASSERT_EQ(h.listener.messages.size(), 1u);
  EXPECT_EQ(h.listener.messages[0].last_chunk.ts_ns, 1000u);
  EXPECT_EQ(h.listener.messages[0].body_bytes, 5000u);
}

TEST(Http1Parser, GapInHeadersThenResyncOnNextRequest) {
  ParserHarness h(MessageKind::kRequest);
  h.Feed("POST /first HTTP/1.1\r\nHost: a\r\nContent-Le", 1000);
  h.parser.Gap(30, GapReason::kLost, Meta(1500));
  h.Feed("ngth: 5\r\n\r\nhelloGET /second HTTP/1.1\r\nHost: a\r\n\r\n", 2000, 9);
  h.Feed("GET /third HTTP/1.1\r\nHost: a\r\n\r\n", 3000);
  ASSERT_EQ(h.listener.failures.size(), 1u);
  EXPECT_EQ(h.listener.failures[0], FailureReason::kGapInHeaders);
  EXPECT_EQ(h.listener.lost_messages, 1);
  ASSERT_EQ(h.listener.messages.size(), 2u);
  EXPECT_EQ(h.listener.messages[0].target, "/second");
  EXPECT_EQ(h.listener.messages[0].first_chunk.tid, 9u);
  EXPECT_EQ(h.listener.messages[1].target, "/third");
}

TEST(Http1Parser, GapSwallowingChunkFramingTruncatesAndResyncs) {
  ParserHarness h(MessageKind::kResponse);
  h.Feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + std::string(100, 'a'), 1000);
  // The rest of the chunk, the next chunk line and more were not captured.
  h.parser.Gap(0x1000 - 100 + 50, GapReason::kNotCaptured, Meta(1000));
  h.Feed("tail of something\r\n0\r\n\r\n" + test::NginxOk(3), 2000);
  ASSERT_EQ(h.listener.messages.size(), 2u);
  EXPECT_TRUE(h.listener.messages[0].truncated);
  EXPECT_EQ(h.listener.messages[0].body_bytes, 0x1000u);
  EXPECT_EQ(h.listener.messages[1].status_code, 200);
  EXPECT_EQ(h.listener.messages[1].body_bytes, 3u);
  ASSERT_EQ(h.listener.failures.size(), 1u);
  EXPECT_EQ(h.listener.failures[0], FailureReason::kChunkFramingLost);
}

TEST(Http1Parser, HugeHeaderBlockFailsWithBoundedMemory) {
  ParserLimits limits;
  ParserHarness h(MessageKind::kRequest, limits);
  h.Feed("GET /big HTTP/1.1\r\nHost: a\r\n");
  std::string line = "X-Filler: " + std::string(1000, 'f') + "\r\n";
  size_t max_buffered = 0;
  for (int i = 0; i < 1000; ++i) {  // ~1 MB of header fields
    h.Feed(line);
    max_buffered = std::max(max_buffered, h.parser.buffered_bytes());
  }
  std::string giant = "X-Giant: " + std::string(200'000, 'g');  // one line over the limit
  for (size_t off = 0; off < giant.size(); off += 3000) {
    h.Feed(std::string_view(giant).substr(off, 3000));
    max_buffered = std::max(max_buffered, h.parser.buffered_bytes());
    EXPECT_LE(h.parser.buffer_capacity(), 2 * limits.max_header_bytes);
  }
  h.Feed("\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_LE(max_buffered, limits.max_header_bytes);
  ASSERT_GE(h.listener.failures.size(), 1u);
  EXPECT_EQ(h.listener.failures[0], FailureReason::kHeaderTooLarge);
  ASSERT_EQ(h.listener.messages.size(), 1u);
  EXPECT_EQ(h.listener.messages[0].target, "/after");
  h.Feed(test::kCurlGet);
  EXPECT_LE(h.parser.buffer_capacity(), 4096u);  // the big line's buffer is not kept
}

TEST(Http1Parser, ObsFoldBareLfAndBadHeaders) {
  ParserHarness h(MessageKind::kResponse, AllFields());
  h.Feed("HTTP/1.1 200 OK\nX-Folded: first\n   second\n\tthird\nContent-Length: 0\n\n");
  ASSERT_EQ(h.listener.messages.size(), 1u);
  EXPECT_EQ(h.listener.messages[0].headers.Get("x-folded"), "first second third");
  h.Feed("HTTP/1.1 200 OK\r\nBad Name : x\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(h.listener.failures.size(), 1u);
  EXPECT_EQ(h.listener.failures[0], FailureReason::kBadHeader);
  h.Feed("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(h.listener.messages.size(), 2u);
  EXPECT_EQ(h.listener.messages[1].status_code, 404);
}

TEST(Http1Parser, HeaderStorageIsBoundedButFramingSeesEveryField) {
  ParserHarness h(MessageKind::kResponse, AllFields());
  std::string r = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 100; ++i) r += "X-H" + std::to_string(i) + ": " + std::string(10, 'v') + "\r\n";
  r += "X-Long: " + std::string(20'000, 'l') + "\r\n";
  r += "Content-Length: 4\r\n\r\nbody";
  h.Feed(r);
  ASSERT_EQ(h.listener.messages.size(), 1u);
  const Message& m = h.listener.messages[0];
  EXPECT_EQ(m.headers.size(), HeaderList::kMaxHeaders);
  EXPECT_EQ(m.headers.dropped_fields(), 102u - HeaderList::kMaxHeaders);
  EXPECT_EQ(m.body_bytes, 4u);
  EXPECT_EQ(m.header_bytes, r.size() - 4);
}

TEST(Http1Parser, LongValueIsCapped) {
  ParserHarness h(MessageKind::kRequest, AllFields());
  h.Feed("GET / HTTP/1.1\r\nCookie: " + std::string(20'000, 'c') + "\r\n\r\n");
  ASSERT_EQ(h.listener.messages.size(), 1u);
  EXPECT_EQ(h.listener.messages[0].headers.Get("cookie")->size(), HeaderList::kMaxValueBytes);
  EXPECT_TRUE(h.listener.messages[0].headers.values_truncated());
}

TEST(Http1Parser, OnlyFieldsTheAgentReadsAreStored) {
  ParserHarness h(MessageKind::kRequest);
  const std::string req =
      "POST /x HTTP/1.1\r\nHOST: a\r\nAccept: */*\r\nX-Custom: 1\r\n  folded\r\n"
      "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
      "TraceState: k=v\r\nUser-Agent: ua\r\nX-Forwarded-For: 10.0.0.1\r\nX-Request-Id: r1\r\n"
      "Content-Length: 3\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nabc";
  h.Feed(req);
  ASSERT_EQ(h.listener.messages.size(), 1u);
  const Message& m = h.listener.messages[0];
  std::string names;
  for (Header f : m.headers.fields()) names += std::string(f.name) + "=" + std::string(f.value) + ";";
  // The fold after an unstored field is not joined to the field before it (Accept's neighbour).
  EXPECT_EQ(names,
            "HOST=a;traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01;"
            "TraceState=k=v;User-Agent=ua;X-Forwarded-For=10.0.0.1;X-Request-Id=r1;"
            "Content-Type=text/plain;");
  // Unstored fields still frame the message and count in its size.
  EXPECT_EQ(m.body_bytes, 3u);
  EXPECT_TRUE(m.connection_close);
  EXPECT_EQ(m.header_bytes, req.size() - 3);
  // And are still checked: a bad unstored field fails the message as before.
  h.Feed("GET / HTTP/1.1\r\nX-Bad\r\n\r\n");
  ASSERT_EQ(h.listener.failures.size(), 1u);
  EXPECT_EQ(h.listener.failures[0], FailureReason::kBadHeader);

  ParserHarness resp(MessageKind::kResponse);
  resp.Feed("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
            "Server: s\r\n\r\n");
  ASSERT_EQ(resp.listener.messages.size(), 1u);
  EXPECT_EQ(resp.listener.messages[0].headers.size(), 1u);
  EXPECT_EQ(resp.listener.messages[0].headers.Get("upgrade"), "h2c");
}

// The fields other parts of the agent read from an HTTP/1 request must be stored, or they
// read as absent: the parent rules' correlation headers (spans/context_rules.h) and the span
// attributes' and trace context's (protocols/http1/describe.cpp, HeaderCarrier).
TEST(Http1Parser, EveryFieldTheAgentReadsIsStored) {
  for (std::string_view name : kCorrelationHeaders) EXPECT_TRUE(IsReadField(MessageKind::kRequest, name)) << name;
  for (std::string_view name : {"host", "user-agent", "x-forwarded-for", "traceparent", "tracestate",
                                "content-type", "upgrade", "X-Request-ID"})
    EXPECT_TRUE(IsReadField(MessageKind::kRequest, name)) << name;
  EXPECT_TRUE(IsReadField(MessageKind::kResponse, "Upgrade"));
  EXPECT_FALSE(IsReadField(MessageKind::kRequest, "accept"));
  EXPECT_FALSE(IsReadField(MessageKind::kResponse, "server"));
}

TEST(Http1Parser, GarbageIsRejectedWithoutBuffering) {
  ParserHarness h(MessageKind::kRequest);
  std::string tls("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  tls += std::string(500, '\x7f');
  h.Feed(tls);
  EXPECT_TRUE(h.listener.messages.empty());
  ASSERT_EQ(h.listener.failures.size(), 1u);
  EXPECT_EQ(h.listener.failures[0], FailureReason::kBadStartLine);
  EXPECT_EQ(h.listener.lost_messages, 0);
  // Endless garbage: every resync_failure_bytes skipped count once more.
  std::string junk(64 * 1024, '\x01');
  for (int i = 0; i < 8; ++i) h.Feed(junk);
  EXPECT_EQ(h.listener.failures.size(), 3u);
  EXPECT_LE(h.parser.buffered_bytes(), 2 * ParserLimits{}.max_resync_line);
}

TEST(Http1Parser, Http2PrefaceIsNotARequest) {
  ParserHarness h(MessageKind::kRequest);
  h.Feed("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  EXPECT_TRUE(h.listener.messages.empty());
  EXPECT_FALSE(h.listener.failures.empty());
}

TEST(Http1Parser, ExtensionMethodAndLeadingEmptyLines) {
  ParserHarness h(MessageKind::kRequest);
  h.Feed("\r\nPROPFIND /dav HTTP/1.1\r\nDepth: 1\r\n\r\n\r\nFROBNICATE * HTTP/1.0\r\n\r\n");
  ASSERT_EQ(h.listener.messages.size(), 2u);
  EXPECT_EQ(h.listener.messages[0].method, "PROPFIND");
  EXPECT_EQ(h.listener.messages[1].method, "FROBNICATE");
  EXPECT_EQ(h.listener.messages[1].version_minor, 0);
}

TEST(Http1Parser, ConnectRequestPausesUntilResumed) {
  ParserHarness h(MessageKind::kRequest);
  h.Feed("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  h.Feed(std::string("\x16\x03\x01\x00\x10", 5));
  ASSERT_EQ(h.listener.messages.size(), 1u);
  EXPECT_TRUE(h.listener.failures.empty());
  h.parser.Resume();
  h.Feed("\r\nGET / HTTP/1.1\r\n\r\n");
  ASSERT_EQ(h.listener.messages.size(), 2u);
}

// The header block's lines read in one pass (ScanFieldLine) when whole in a chunk, the general
// way (ConsumeLine, ParseHeaderLine) when fed a byte at a time or split: the same messages and
// the same failures, for good and bad lines alike (obs-fold, bare LF, CR or NUL in a value,
// whitespace before the colon, trailing OWS, an empty value, CR CR LF).
TEST(Http1Parser, HeaderLinesSameWholeSplitAndBytewise) {
  using namespace std::string_literals;  // keeps the NUL below
  const std::string stream =
      "GET /a HTTP/1.1\r\nHost: x \r\nX-Folded: one\r\n two\r\n\tthree\nX-Request-Id: r1\n"
      "Accept:\r\nUser-Agent:\t ua \t\r\n"
      "traceparent:00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"
      "GET /b HTTP/1.1\r\nX-Bad: a\rb\r\n\r\n"
      "GET /c HTTP/1.1\r\nX-Nul: a\0b\r\n\r\n"s +
      "GET /d HTTP/1.1\r\nX-CrCr: a\r\r\n\r\n"
      "GET /e HTTP/1.1\r\nBad Name: v\r\n\r\n"
      "GET /f HTTP/1.1\r\n: empty name\r\n\r\n"
      "POST /g HTTP/1.1\r\ncontent-length: 3\r\nCONNECTION: Keep-Alive , close\r\nX-Long: " +
      std::string(100, 'v') +
      "\r\n\r\nabc"
      "GET /h HTTP/1.1\nTransfer-Encoding: gzip, Chunked\nExpect: 100-continue\n\n3\r\nabc\r\n0\r\n\r\n"
      "GET /i HTTP/1.0\r\nConnection: keep-alive\r\nX-Amzn-Trace-Id: Root=1\r\n\r\n";
  ASSERT_NE(stream.find("a\0b"s), std::string::npos);
  auto run = [&](auto feed) {
    ParserHarness h(MessageKind::kRequest, AllFields());
    feed(h);
    std::string out = test::Summary(h.listener.messages);
    for (FailureReason r : h.listener.failures) out += std::string(ToString(r)) + "\n";
    for (const Message& m : h.listener.messages)
      out += std::to_string(m.connection_close) + std::to_string(m.expect_continue) + "\n";
    return out;
  };
  const std::string whole = run([&](ParserHarness& h) { h.Feed(stream); });
  ParserHarness check(MessageKind::kRequest, AllFields());
  check.Feed(stream);
  ASSERT_EQ(check.listener.messages.size(), 4u) << whole;
  EXPECT_EQ(check.listener.messages[0].headers.Get("x-folded"), "one two three");
  EXPECT_EQ(check.listener.messages[0].headers.Get("user-agent"), "ua");
  EXPECT_EQ(check.listener.messages[0].headers.Get("accept"), "");
  EXPECT_EQ(check.listener.messages[0].headers.Get("host"), "x");
  EXPECT_EQ(check.listener.messages[1].target, "/g");
  EXPECT_TRUE(check.listener.messages[1].connection_close);
  EXPECT_EQ(check.listener.messages[1].body_bytes, 3u);
  EXPECT_EQ(check.listener.messages[2].framing, Framing::kChunked);
  EXPECT_TRUE(check.listener.messages[2].expect_continue);
  EXPECT_FALSE(check.listener.messages[3].connection_close);  // HTTP/1.0 with keep-alive
  EXPECT_EQ(check.listener.failures,
            std::vector<FailureReason>(5, FailureReason::kBadHeader));

  EXPECT_EQ(run([&](ParserHarness& h) {
              for (size_t i = 0; i < stream.size(); ++i) h.Feed(std::string_view(stream).substr(i, 1));
            }),
            whole);
  for (size_t cut = 1; cut < stream.size(); ++cut) {
    ASSERT_EQ(run([&](ParserHarness& h) {
                h.Feed(std::string_view(stream).substr(0, cut));
                h.Feed(std::string_view(stream).substr(cut));
              }),
              whole)
        << "cut at " << cut;
  }
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    ASSERT_EQ(run([&](ParserHarness& h) {
                size_t off = 0;
                for (size_t piece : test::RandomPieces(stream.size(), seed)) {
                  h.Feed(std::string_view(stream).substr(off, piece));
                  off += piece;
                }
              }),
              whole)
        << "seed " << seed;
  }
}

// A megabyte of header fields in one chunk: the one-pass reader stops at the header budget
// (the general path then reports it, as before), and with a budget that allows it, a 1 MB field
// is read whole and stored capped.
TEST(Http1Parser, MegabyteHeaderInOneChunk) {
  std::string big = "GET /big HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 1000; ++i) big += "X-Filler: " + std::string(1000, 'f') + "\r\n";
  big += "\r\nGET /after HTTP/1.1\r\nHost: b\r\n\r\n";
  {
    ParserHarness h(MessageKind::kRequest);
    h.Feed(big);
    ASSERT_GE(h.listener.failures.size(), 1u);
    EXPECT_EQ(h.listener.failures[0], FailureReason::kHeaderTooLarge);
    ASSERT_EQ(h.listener.messages.size(), 1u);
    EXPECT_EQ(h.listener.messages[0].target, "/after");
    EXPECT_LE(h.parser.buffered_bytes(), ParserLimits{}.max_header_bytes);
  }
  ParserLimits roomy = AllFields();
  roomy.max_header_bytes = 4 << 20;
  {
    ParserHarness h(MessageKind::kRequest, roomy);
    h.Feed(big);
    EXPECT_TRUE(h.listener.failures.empty());
    ASSERT_EQ(h.listener.messages.size(), 2u);
    EXPECT_EQ(h.listener.messages[0].headers.dropped_fields(), 1001u - HeaderList::kMaxHeaders);
    EXPECT_EQ(h.listener.messages[0].header_bytes, big.find("GET /after"));
  }
  {
    const std::string one = "GET /one HTTP/1.1\r\nX-Huge: " + std::string(1 << 20, 'h') +
                            " \r\nX-Request-Id: after-huge\r\n\r\n";
    ParserHarness h(MessageKind::kRequest, roomy);
    h.Feed(one);
    ASSERT_EQ(h.listener.messages.size(), 1u);
    EXPECT_EQ(h.listener.messages[0].headers.Get("x-huge")->size(), HeaderList::kMaxValueBytes);
    EXPECT_EQ(h.listener.messages[0].headers.Get("x-request-id"), "after-huge");
    EXPECT_EQ(h.listener.messages[0].header_bytes, one.size());
  }
}

// A line end split between data events: the CR ending one chunk, the LF starting the next.
TEST(Http1Parser, CrLfSplitAcrossChunks) {
  ParserHarness h(MessageKind::kRequest);
  h.Feed("GET / HTTP/1.1\r\nHost: a\r");
  h.Feed("\nX-Request-Id: r\r");
  h.Feed("\n\r");
  h.Feed("\n");
  ASSERT_EQ(h.listener.messages.size(), 1u);
  EXPECT_EQ(h.listener.messages[0].headers.Get("host"), "a");
  EXPECT_EQ(h.listener.messages[0].headers.Get("x-request-id"), "r");
  EXPECT_TRUE(h.listener.failures.empty());
  h.Feed("GET / HTTP/1.1\r\nHost: a\r");
  h.Feed("x\r\n\r\n");  // the CR was inside the value after all
  ASSERT_EQ(h.listener.failures.size(), 1u);
  EXPECT_EQ(h.listener.failures[0], FailureReason::kBadHeader);
}

// The field-line grammar at its edges (RFC 9112 §5): a token name ending at the colon, a value
// trimmed of OWS, continuation lines, and CR/LF/NUL refused anywhere.
TEST(Http1Syntax, HeaderLineGrammar) {
  using syntax::HeaderLine;
  using syntax::ParseHeaderLine;
  HeaderLine h;
  ASSERT_TRUE(ParseHeaderLine("Host: example.com ", h));
  EXPECT_EQ(h.name, "Host");
  EXPECT_EQ(h.value, "example.com");
  EXPECT_FALSE(h.continuation);
  ASSERT_TRUE(ParseHeaderLine("X-Empty:", h));
  EXPECT_EQ(h.name, "X-Empty");
  EXPECT_EQ(h.value, "");
  ASSERT_TRUE(ParseHeaderLine("!#$%&'*+-.^_`|~09az:v:w", h));
  EXPECT_EQ(h.name, "!#$%&'*+-.^_`|~09az");
  EXPECT_EQ(h.value, "v:w");
  ASSERT_TRUE(ParseHeaderLine(" \tfolded more ", h));
  EXPECT_TRUE(h.continuation);
  EXPECT_EQ(h.value, "folded more");
  EXPECT_FALSE(ParseHeaderLine("Name : v", h));    // whitespace before the colon
  EXPECT_FALSE(ParseHeaderLine(": v", h));         // empty name
  EXPECT_FALSE(ParseHeaderLine("NoColon", h));
  EXPECT_FALSE(ParseHeaderLine("Na(me: v", h));    // not a tchar
  EXPECT_FALSE(ParseHeaderLine("Name: a\rb", h));  // bare CR in the value
  EXPECT_FALSE(ParseHeaderLine(std::string_view("Name: a\0b", 9), h));
  EXPECT_FALSE(ParseHeaderLine(" cont\rinued", h));
  EXPECT_FALSE(ParseHeaderLine(std::string(70000, 'n') + ": v", h));  // name past 64 KiB
  EXPECT_TRUE(ParseHeaderLine(std::string(100, 'n') + ": v", h));
  // Values checked eight bytes at a time: CR, LF or NUL at every position of a long value is
  // refused; obs-text (0x80-0xff) and bytes next to the refused ones are not.
  const std::string value = "abcdefghijklmnopqrstuvwxyz-0123";
  for (size_t at = 0; at < value.size(); ++at) {
    for (char bad : {'\r', '\n', '\0'}) {
      std::string v = value;
      v[at] = bad;
      EXPECT_FALSE(ParseHeaderLine("Name: x" + v, h)) << at << " " << int(bad);
    }
    for (char fine : {'\x0e', '\x0b', '\x01', '\x80', '\xff', '\x8d'}) {
      std::string v = value;
      v[at] = fine;
      EXPECT_TRUE(ParseHeaderLine("Name: x" + v, h)) << at << " " << int(fine);
    }
  }
}

// ScanFieldLine (one pass) accepts exactly the lines ParseHeaderLine accepts, with the same
// name and value, and tells an unfinished line from a bad one: every base line with every
// special byte put at every position, ended by CRLF or bare LF, and every prefix of it.

// ScanFieldLine on the first line of `in` (which holds a whole line) says what the old
// ParseHeaderLine says of it: the end of the fields, a field with the same name, value and
// wire length, or something else (an error or an obs-fold continuation).
::testing::AssertionResult ScanAgreesWithParse(const std::string& in) {
  using syntax::Scan;
  syntax::ScannedLine out;
  const Scan scan = syntax::ScanFieldLine(in, out);
  const size_t nl = in.find('\n');
  const std::string_view first = syntax::StripCr(std::string_view(in).substr(0, nl));
  syntax::HeaderLine h;
  const bool ok = syntax::ParseHeaderLine(first, h);
  if (first.empty()) {
    if (scan != Scan::kEnd || out.wire != nl + 1) return ::testing::AssertionFailure() << "not the end";
  } else if (scan == Scan::kField) {
    if (!ok || h.continuation) return ::testing::AssertionFailure() << "a field the parser refuses";
    if (out.name != h.name || out.value != h.value || out.wire != nl + 1)
      return ::testing::AssertionFailure() << "field '" << out.name << "': '" << out.value << "' ("
                                           << out.wire << " bytes), parser '" << h.name << "': '"
                                           << h.value << "'";
  } else if (scan != Scan::kOther || (ok && !h.continuation)) {
    return ::testing::AssertionFailure() << "not a field line, the parser takes it as one";
  }
  return ::testing::AssertionSuccess();
}

TEST(Http1Syntax, ScanFieldLineAgreesWithParseHeaderLine) {
  using syntax::Scan;
  const std::vector<std::string> bases = {"Host: example.com", "X-Request-Id: abcdefghijklmnopq",
                                          "A:b", "Name:  v  ", "Accept:", " folded", "\tfolded",
                                          "", "Content-Length:\t12\t"};
  const std::string specials("\r\n\0 \t:(\x80x\x0b", 10);
  std::vector<std::string> lines;
  for (const std::string& base : bases) {
    lines.push_back(base);
    for (size_t i = 0; i <= base.size(); ++i) {
      for (char c : specials) {
        lines.push_back(base.substr(0, i) + c + base.substr(i));
        if (i < base.size()) lines.push_back(base.substr(0, i) + c + base.substr(i + 1));
      }
    }
  }
  for (const std::string& line : lines) {
    for (std::string_view ending : {"\r\n", "\n"}) {
      const std::string in = line + std::string(ending) + "Next: v\r\n";
      const size_t nl = in.find('\n');
      const std::string what = "line '" + in.substr(0, nl) + "'";
      EXPECT_TRUE(ScanAgreesWithParse(in)) << what;
      syntax::ScannedLine out;
      const Scan scan = syntax::ScanFieldLine(in, out);
      for (size_t cut = 0; cut <= nl; ++cut) {
        syntax::ScannedLine part;
        const Scan prefix = syntax::ScanFieldLine(std::string_view(in).substr(0, cut), part);
        if (scan == Scan::kField || scan == Scan::kEnd)
          EXPECT_EQ(prefix, Scan::kIncomplete) << what << " cut " << cut;
        else
          EXPECT_NE(prefix, Scan::kField) << what << " cut " << cut;
      }
    }
  }
}

// The name is skipped sixteen bytes at a time over letters, digits and '-' before the tchar
// table decides: every byte value at every position of names shorter and longer than sixteen
// (and of the value after them), with more bytes after the line and with none.
TEST(Http1Syntax, ScanFieldLineEveryByteEveryPosition) {
  using syntax::Scan;
  const std::vector<std::string> bases = {
      "Host: 127.0.0.1:8080", "X-Correlation-Id-And-More-0123456789: some value here",
      "Accept-Ranges: bytes", "Content-Length:612", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLM: v",
      "a-z_A-Z~0-9!x#y$z%w&v'u*t+s.r^q`p|o: x"};
  for (const std::string& base : bases) {
    for (size_t i = 0; i < base.size(); ++i) {
      for (int b = 0; b < 256; ++b) {
        std::string line = base;
        line[i] = static_cast<char>(b);
        for (std::string_view after : {"", "Next-Field-With-A-Long-Name: v\r\n\r\n"}) {
          const std::string in = line + "\r\n" + std::string(after);
          // ASSERT: one wrong byte class would otherwise print thousands of failures.
          ASSERT_TRUE(ScanAgreesWithParse(in)) << "base '" << base << "' byte " << b << " at " << i
                                               << (after.empty() ? "" : " +after");
        }
      }
    }
  }
}

// Known field names are found by length, third byte and masked words: exactly the names equal
// to one ignoring ASCII case, for any byte at any position.
TEST(Http1Syntax, IdentifyFieldIsExact) {
  auto brute = [](std::string_view name) {
    for (const auto& k : field_name_detail::kKnown)
      if (EqualsIgnoreCase(name, k.lower)) return k.field;
    return FieldName::kOther;
  };
  for (const auto& k : field_name_detail::kKnown) {
    std::string upper(k.lower);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(IdentifyField(k.lower), k.field) << k.lower;
    EXPECT_EQ(IdentifyField(upper), k.field) << upper;
    for (size_t i = 0; i < k.lower.size(); ++i) {
      for (int b = 0; b < 256; ++b) {
        std::string m(k.lower);
        m[i] = static_cast<char>(b);
        ASSERT_EQ(IdentifyField(m), brute(m)) << k.lower << " byte " << b << " at " << i;
      }
    }
    EXPECT_EQ(IdentifyField(std::string(k.lower) + "s"), FieldName::kOther);
    EXPECT_EQ(IdentifyField(k.lower.substr(1)), FieldName::kOther);
    EXPECT_EQ(IdentifyField(k.lower.substr(0, k.lower.size() - 1)), FieldName::kOther);
  }
  for (std::string_view other : {"", "a", "te", "via", "date", "accept", "x-request-ie", "cookie",
                                 "x-b3-spanid", "content-lengtH ", "transfer-encodinG"})
    EXPECT_EQ(IdentifyField(other), brute(other)) << other;
  // A stored list answers "absent" for a known field it lacks, and still finds any other.
  HeaderList list;
  list.Add("X-Custom", "1");
  list.Add("Traceparent", "tp");
  EXPECT_TRUE(list.MayHave("x-custom"));
  EXPECT_EQ(list.Get("X-CUSTOM"), "1");
  EXPECT_EQ(list.Get("traceparent"), "tp");
  EXPECT_FALSE(list.MayHave("x-request-id"));
  EXPECT_FALSE(list.Get("tracestate").has_value());
  EXPECT_FALSE(list.Get("x-other").has_value());
  EXPECT_FALSE(HeaderList().MayHave("x-custom"));
}

TEST(Http1Syntax, ConnectionOptionsAsListHasToken) {
  for (std::string_view list : {"close", "Keep-Alive", "upgrade", "keep-alive, Upgrade", " close ,",
                                "te, close;x=1", "closed", "keep-alive2", ",,,", "", "UPGRADE , CLOSE",
                                "x-close, keep-alive ; a=b, upgradeX"}) {
    const uint8_t options = syntax::ConnectionOptions(list);
    EXPECT_EQ((options & syntax::kConnectionClose) != 0, syntax::ListHasToken(list, "close")) << list;
    EXPECT_EQ((options & syntax::kConnectionKeepAlive) != 0, syntax::ListHasToken(list, "keep-alive")) << list;
    EXPECT_EQ((options & syntax::kConnectionUpgrade) != 0, syntax::ListHasToken(list, "upgrade")) << list;
  }
  // The options are compared as masked words: every byte value at every position of each,
  // alone and in a list, against the byte-by-byte ListHasToken.
  for (std::string_view option : {"close", "upgrade", "keep-alive", "Keep-Alive", "UPGRADE"}) {
    for (size_t i = 0; i < option.size(); ++i) {
      for (int b = 0; b < 256; ++b) {
        std::string token(option);
        token[i] = static_cast<char>(b);
        for (const std::string& list : {token, "te, " + token, token + " ;a=b"}) {
          const uint8_t options = syntax::ConnectionOptions(list);
          ASSERT_EQ((options & syntax::kConnectionClose) != 0, syntax::ListHasToken(list, "close")) << list;
          ASSERT_EQ((options & syntax::kConnectionKeepAlive) != 0, syntax::ListHasToken(list, "keep-alive")) << list;
          ASSERT_EQ((options & syntax::kConnectionUpgrade) != 0, syntax::ListHasToken(list, "upgrade")) << list;
        }
      }
    }
  }
}

// The request line against a byte-by-byte reading of its grammar (the target is checked sixteen
// bytes at a time): every byte value at every position, targets shorter and longer than 16.
TEST(Http1Syntax, RequestLineEveryByteEveryPosition) {
  auto reference = [](std::string_view line, std::string_view& method, std::string_view& target,
                      uint8_t& minor) {
    const size_t sp1 = line.find(' ');
    const size_t sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 == sp1) return false;
    method = line.substr(0, sp1);
    target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version = line.substr(sp2 + 1);
    if (method.empty() || method.size() > syntax::kMaxMethodBytes) return false;
    for (char c : method)
      if (!syntax::IsTchar(static_cast<uint8_t>(c))) return false;
    if (target.empty()) return false;
    for (char c : target) {
      const auto u = static_cast<uint8_t>(c);
      if (u <= ' ' || u == 0x7f) return false;
    }
    if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || version[7] < '0' || version[7] > '9')
      return false;
    minor = static_cast<uint8_t>(version[7] - '0');
    return true;
  };
  for (size_t target_size : {1, 2, 15, 16, 17, 31, 32, 33, 47}) {
    std::string target = "/";
    for (size_t i = 1; i < target_size; ++i) target += static_cast<char>('a' + i % 26);
    const std::string base = "GET " + target + " HTTP/1.1";
    for (size_t i = 0; i < base.size(); ++i) {
      for (int b = 0; b < 256; ++b) {
        std::string line = base;
        line[i] = static_cast<char>(b);
        std::string_view method, want_target;
        uint8_t minor = 0;
        const bool want = reference(line, method, want_target, minor);
        Message m;
        ASSERT_EQ(syntax::ParseRequestLine(line, m), want) << line << " byte " << b << " at " << i;
        ASSERT_EQ(syntax::IsRequestLine(line), want) << line;
        if (!want) continue;
        ASSERT_EQ(m.method, method);
        ASSERT_EQ(m.target, want_target);
        ASSERT_EQ(m.version_minor, minor);
      }
    }
  }
}

TEST(Http1Syntax, FindRequestStartAfterBody) {
  EXPECT_EQ(syntax::FindRequestStart("{\"a\":1}GET /x HTTP/1.1"), 7u);
  EXPECT_EQ(syntax::FindRequestStart("abcdefPOST /x HTTP/1.1"), 6u);
  EXPECT_EQ(syntax::FindRequestStart("MKCOL /x HTTP/1.1"), 0u);
  EXPECT_EQ(syntax::FindRequestStart("xx {PATCHY /x HTTP/1.1"), std::string_view::npos);
  EXPECT_EQ(syntax::FindRequestStart("GET /x HTTP/2.0"), std::string_view::npos);
  EXPECT_EQ(syntax::FindResponseStart("garbageHTTP/1.1 200 OK"), 7u);
  EXPECT_EQ(syntax::FindResponseStart("HTTP/1.1 20x OK"), std::string_view::npos);
  EXPECT_EQ(syntax::ParseChunkSizeLine("1a ; ext=1"), 26u);
  EXPECT_FALSE(syntax::ParseChunkSizeLine("zz").has_value());
  EXPECT_FALSE(syntax::ParseChunkSizeLine("ffffffffffffffffff").has_value());
}

TEST(Http1Detect, RequestsAndResponses) {
  EXPECT_TRUE(LooksLikeHttp1Request(Bytes(test::kCurlGet)));
  EXPECT_TRUE(LooksLikeHttp1Request(Bytes("POST /api")));
  EXPECT_TRUE(LooksLikeHttp1Request(Bytes("BREW /pot HTTP/1.1\r\n")));
  EXPECT_FALSE(LooksLikeHttp1Request(Bytes("BREW /pot")));  // extension method: needs the line
  EXPECT_FALSE(LooksLikeHttp1Request(Bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")));
  EXPECT_FALSE(LooksLikeHttp1Request(Bytes("PRI * HTTP/2.0")));
  EXPECT_FALSE(LooksLikeHttp1Request(Bytes(std::string_view("\x16\x03\x01\x02\x00", 5))));
  EXPECT_FALSE(LooksLikeHttp1Request(Bytes("GE")));
  EXPECT_FALSE(LooksLikeHttp1Request(Bytes("GET\x01/")));
  EXPECT_TRUE(LooksLikeHttp1Response(Bytes("HTTP/1.1 200 OK\r\n")));
  EXPECT_TRUE(LooksLikeHttp1Response(Bytes("HTTP/1.0 404")));
  EXPECT_FALSE(LooksLikeHttp1Response(Bytes("HTTP/2 200")));
  EXPECT_FALSE(LooksLikeHttp1Response(Bytes("HTTP/1.1 2")));
  EXPECT_FALSE(LooksLikeHttp1Response(Bytes(test::kCurlGet)));
}

}  // namespace
}  // namespace threadline::http1
