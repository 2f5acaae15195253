// Helpers for the HTTP/1.x tests: literal byte streams captured from real peers, a recording
// parser listener, and a summary of messages/exchanges used to compare split feedings.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/protocols/http1/message.h"
#include "agent/protocols/http1/parser.h"

namespace threadline::http1::test {

inline std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline ChunkMeta Meta(uint64_t ts, uint32_t tid = 100) {
  return ChunkMeta{ts, ts - 10, tid, 0};
}

// curl 7.88.1 against a local server.
inline constexpr std::string_view kCurlGet =
    "GET /index.html HTTP/1.1\r\n"
    "Host: localhost:8080\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n"
    "\r\n";

inline constexpr std::string_view kCurlHead =
    "HEAD / HTTP/1.1\r\n"
    "Host: localhost:8080\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n"
    "\r\n";

// nginx 1.22 serving its default index.html (615 bytes).
inline std::string NginxOk(size_t body = 615) {
  return "HTTP/1.1 200 OK\r\n"
         "Server: nginx/1.22.1\r\n"
         "Date: Mon, 15 Jan 2024 10:00:00 GMT\r\n"
         "Content-Type: text/html\r\n"
         "Content-Length: " + std::to_string(body) + "\r\n"
         "Last-Modified: Tue, 13 Jun 2023 15:08:10 GMT\r\n"
         "Connection: keep-alive\r\n"
         "ETag: \"6488865a-267\"\r\n"
         "Accept-Ranges: bytes\r\n"
         "\r\n" + std::string(body, 'n');
}

inline constexpr std::string_view kNginxNotModified =
    "HTTP/1.1 304 Not Modified\r\n"
    "Server: nginx/1.22.1\r\n"
    "Date: Mon, 15 Jan 2024 10:00:00 GMT\r\n"
    "Last-Modified: Tue, 13 Jun 2023 15:08:10 GMT\r\n"
    "Connection: keep-alive\r\n"
    "ETag: \"6488865a-267\"\r\n"
    "\r\n";

// python3 -m http.server (SimpleHTTPRequestHandler): HTTP/1.0, closes after each response.
inline std::string PythonOk(size_t body = 42) {
  return "HTTP/1.0 200 OK\r\n"
         "Server: SimpleHTTP/0.6 Python/3.11.7\r\n"
         "Date: Mon, 15 Jan 2024 10:00:00 GMT\r\n"
         "Content-type: text/html\r\n"
         "Content-Length: " + std::to_string(body) + "\r\n"
         "Last-Modified: Mon, 15 Jan 2024 09:00:00 GMT\r\n"
         "\r\n" + std::string(body, 'p');
}

// A BaseHTTPRequestHandler that writes its body without Content-Length: ends at close.
inline constexpr std::string_view kPythonUntilClose =
    "HTTP/1.0 200 OK\r\n"
    "Server: BaseHTTP/0.6 Python/3.11.7\r\n"
    "Date: Mon, 15 Jan 2024 10:00:00 GMT\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "streamed until close\n";

// Node 20 http server: res.write('hello'); res.end(' world') → chunked, keep-alive.
inline constexpr std::string_view kNodeChunked =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Date: Mon, 15 Jan 2024 10:00:00 GMT\r\n"
    "Connection: keep-alive\r\n"
    "Keep-Alive: timeout=5\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "5\r\nhello\r\n"
    "6\r\n world\r\n"
    "0\r\n\r\n";

// Records everything a MessageParser reports.
class RecordingListener : public MessageParser::Listener {
 public:
  RequestContext ContextForResponse() override { return context; }
  void OnRequestHeaders(const Message& m) override { headers_seen.push_back(m.method); }
  void OnMessage(std::unique_ptr<Message> m) override { messages.push_back(std::move(*m)); }
  void OnFailure(FailureReason r, bool lost) override {
    failures.push_back(r);
    if (lost) ++lost_messages;
  }

  RequestContext context;
  std::vector<std::string> headers_seen;
  std::vector<Message> messages;
  std::vector<FailureReason> failures;
  int lost_messages = 0;
};

// One line per message with everything a split could change.
inline std::string Summary(const Message& m) {
  std::string s = m.is_request() ? m.method + " " + m.target : std::to_string(m.status_code) + " " + m.reason;
  s += " v1." + std::to_string(m.version_minor) + " h=" + std::to_string(m.headers.size()) +
       " hb=" + std::to_string(m.header_bytes) + " f=" + std::string(ToString(m.framing)) +
       " b=" + std::to_string(m.body_bytes) + " w=" + std::to_string(m.body_wire_bytes) +
       " nc=" + std::to_string(m.body_bytes_not_captured) + " t=" + std::to_string(m.truncated) +
       " tr=" + std::to_string(m.trailers.size());
  for (Header h : m.headers.fields()) s += " [" + std::string(h.name) + ":" + std::string(h.value) + "]";
  return s + "\n";
}

inline std::string Summary(const std::vector<Message>& ms) {
  std::string s;
  for (const Message& m : ms) s += Summary(m);
  return s;
}

inline std::string Summary(const Exchange& e) {
  std::string s = std::string(ToString(e.outcome)) + " i=" + std::to_string(e.interim_responses) + "\n";
  if (e.request) s += "  > " + Summary(*e.request);
  if (e.response) s += "  < " + Summary(*e.response);
  return s;
}

// Cut points for feeding `n` bytes in random pieces (fixed seed → reproducible).
inline std::vector<size_t> RandomPieces(size_t n, uint32_t seed, size_t max_piece = 17) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> dist(1, max_piece);
  std::vector<size_t> pieces;
  for (size_t done = 0; done < n;) {
    size_t p = std::min(dist(rng), n - done);
    pieces.push_back(p);
    done += p;
  }
  return pieces;
}

}  // namespace threadline::http1::test
