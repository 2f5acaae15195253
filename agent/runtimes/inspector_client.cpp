#include "agent/runtimes/inspector_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "agent/common/unique_fd.h"

namespace threadline {

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

constexpr size_t kMaxMessage = 16u << 20;

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

Result<UniqueFd> ConnectLoopback(uint16_t port, Clock::time_point deadline) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Error::FromErrno("socket", errno);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 && errno != EINPROGRESS)
    return Error::FromErrno("connect 127.0.0.1:" + std::to_string(port), errno);
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, MillisLeft(deadline)) != 1) return Error{"connect 127.0.0.1:" + std::to_string(port) + ": timed out", ETIMEDOUT};
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) return Error::FromErrno("connect 127.0.0.1:" + std::to_string(port), err);
  return fd;
}

Status SendAll(int fd, const std::string& data, Clock::time_point deadline) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return Error::FromErrno("send", errno);
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, MillisLeft(deadline)) != 1) return Error{"send: timed out", ETIMEDOUT};
  }
  return OkStatus();
}

// Appends what arrives to `buf`; false on timeout, error or end of stream (`eof` set).
bool ReceiveSome(int fd, std::string& buf, Clock::time_point deadline, bool* eof = nullptr) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, MillisLeft(deadline)) != 1) return false;
  char chunk[16384];
  ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
  if (n <= 0) {
    if (eof) *eof = n == 0;
    return false;
  }
  buf.append(chunk, static_cast<size_t>(n));
  return buf.size() <= kMaxMessage;
}

}  // namespace

namespace inspector_internal {

std::string Base64(const uint8_t* data, size_t n) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = static_cast<uint32_t>(data[i]) << 16;
    if (i + 1 < n) v |= static_cast<uint32_t>(data[i + 1]) << 8;
    if (i + 2 < n) v |= data[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < n ? kAlphabet[v & 63] : '=';
  }
  return out;
}

std::string EncodeFrame(uint8_t opcode, const std::string& payload, const uint8_t mask[4]) {
  std::string f;
  f += static_cast<char>(0x80 | (opcode & 0x0f));
  const uint64_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(0x80 | n);
  } else if (n <= 0xffff) {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(0x80 | 127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((n >> (8 * i)) & 0xff);
  }
  f.append(reinterpret_cast<const char*>(mask), 4);
  for (size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ mask[i & 3]);
  return f;
}

int64_t DecodeFrame(const std::string& buf, uint8_t& opcode, bool& fin, std::string& payload) {
  if (buf.size() < 2) return 0;
  const auto* b = reinterpret_cast<const uint8_t*>(buf.data());
  fin = (b[0] & 0x80) != 0;
  opcode = b[0] & 0x0f;
  if (b[1] & 0x80) return -1;  // servers never mask
  uint64_t n = b[1] & 0x7f;
  size_t at = 2;
  if (n == 126) {
    if (buf.size() < 4) return 0;
    n = (static_cast<uint64_t>(b[2]) << 8) | b[3];
    at = 4;
  } else if (n == 127) {
    if (buf.size() < 10) return 0;
    n = 0;
    for (int i = 0; i < 8; ++i) n = (n << 8) | b[2 + i];
    at = 10;
  }
  if (n > kMaxMessage) return -1;
  if (buf.size() < at + n) return 0;
  payload.assign(buf, at, static_cast<size_t>(n));
  return static_cast<int64_t>(at + n);
}

}  // namespace inspector_internal

Result<InspectorTarget> ListInspectorTarget(uint16_t port, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  ASSIGN_OR_RETURN(UniqueFd fd, ConnectLoopback(port, deadline));
  RETURN_IF_ERROR(SendAll(fd.get(),
                          "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                              "\r\nConnection: close\r\n\r\n",
                          deadline));
  // Node answers HTTP/1.0 with a Content-Length and may keep the connection open: read the head,
  // then exactly the body.
  std::string resp;
  bool eof = false;
  size_t head_end = std::string::npos;
  size_t want = std::string::npos;
  while (true) {
    if (head_end == std::string::npos && (head_end = resp.find("\r\n\r\n")) != std::string::npos) {
      std::string head = resp.substr(0, head_end);
      for (char& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (size_t cl = head.find("\r\ncontent-length:"); cl != std::string::npos)
        want = head_end + 4 + std::strtoull(head.c_str() + cl + 17, nullptr, 10);
    }
    if (want != std::string::npos && resp.size() >= want) break;
    if (!ReceiveSome(fd.get(), resp, deadline, &eof)) break;
  }
  const bool whole = want != std::string::npos ? resp.size() >= want : eof && head_end != std::string::npos;
  if (!whole) return Error{"inspector /json/list: no complete answer in time", ETIMEDOUT};
  const size_t body = head_end;
  if (!(resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200")))
    return Error{"inspector /json/list: " + resp.substr(0, resp.find("\r\n"))};
  Json list = Json::parse(resp.substr(body + 4, want == std::string::npos ? std::string::npos : want - body - 4), nullptr, false);
  if (!list.is_array() || list.empty() || !list[0].is_object())
    return Error{"inspector /json/list: no target"};
  const std::string url = list[0].value("webSocketDebuggerUrl", "");
  const std::string prefix = "ws://127.0.0.1:" + std::to_string(port);
  if (!url.starts_with(prefix)) return Error{"inspector target not on 127.0.0.1:" + std::to_string(port) + ": " + url};
  return InspectorTarget{url.substr(prefix.size()), list[0].value("title", "")};
}

Result<std::string> EvaluateInInspector(uint16_t port, const InspectorTarget& target,
                                        const std::string& expression,
                                        std::chrono::milliseconds timeout) {
  return EvaluateInInspector(port, target, [&](uint16_t) { return expression; }, timeout);
}

Result<std::string> EvaluateInInspector(uint16_t port, const InspectorTarget& target,
                                        const std::function<std::string(uint16_t session_port)>& make_expression,
                                        std::chrono::milliseconds timeout) {
  using namespace inspector_internal;
  const auto deadline = Clock::now() + timeout;
  ASSIGN_OR_RETURN(UniqueFd fd, ConnectLoopback(port, deadline));
  uint8_t key[16];
  if (::getrandom(key, sizeof(key), 0) != sizeof(key)) return Error::FromErrno("getrandom", errno);
  RETURN_IF_ERROR(SendAll(fd.get(),
                          "GET " + target.websocket_path + " HTTP/1.1\r\nHost: 127.0.0.1:" +
                              std::to_string(port) +
                              "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " +
                              Base64(key, sizeof(key)) + "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                          deadline));
  std::string buf;
  size_t head_end;
  while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
    if (!ReceiveSome(fd.get(), buf, deadline)) return Error{"inspector WebSocket upgrade: no answer in time", ETIMEDOUT};
  }
  if (!buf.starts_with("HTTP/1.1 101")) return Error{"inspector WebSocket upgrade refused: " + buf.substr(0, buf.find("\r\n"))};
  buf.erase(0, head_end + 4);

  sockaddr_in local{};
  socklen_t local_len = sizeof(local);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &local_len) != 0)
    return Error::FromErrno("getsockname", errno);
  Json call = {{"id", 1},
               {"method", "Runtime.evaluate"},
               {"params", {{"expression", make_expression(ntohs(local.sin_port))}, {"includeCommandLineAPI", true},
                           {"returnByValue", true}, {"silent", true}}}};
  uint8_t mask[4];
  if (::getrandom(mask, sizeof(mask), 0) != sizeof(mask)) return Error::FromErrno("getrandom", errno);
  RETURN_IF_ERROR(SendAll(fd.get(), EncodeFrame(0x1, call.dump(), mask), deadline));

  std::string message;
  Result<std::string> result = Error{"inspector: no answer to Runtime.evaluate in time", ETIMEDOUT};
  bool answered = false;
  while (!answered) {
    uint8_t opcode = 0;
    bool fin = false;
    std::string payload;
    const int64_t used = DecodeFrame(buf, opcode, fin, payload);
    if (used < 0) return Error{"inspector: malformed WebSocket frame"};
    if (used == 0) {
      if (!ReceiveSome(fd.get(), buf, deadline)) break;
      continue;
    }
    buf.erase(0, static_cast<size_t>(used));
    if (opcode == 0x8) break;                      // the inspector closed
    if (opcode != 0x1 && opcode != 0x0) continue;  // pings and binary: not ours
    message += payload;
    if (!fin) continue;
    Json reply = Json::parse(message, nullptr, false);
    message.clear();
    if (!reply.is_object() || reply.value("id", 0) != 1) continue;  // events (consoles, contexts)
    answered = true;
    const Json* r = reply.contains("result") ? &reply["result"] : nullptr;
    if (!r) {
      result = Error{"inspector: Runtime.evaluate failed: " + reply.value("error", Json::object()).dump()};
    } else if (r->contains("exceptionDetails")) {
      result = Error{"helper threw: " + (*r)["exceptionDetails"].value("text", std::string("?")) + " " +
                     (*r)["exceptionDetails"].value("exception", Json::object()).value("description", std::string())};
    } else if ((*r)["result"].value("type", "") != "string") {
      result = Error{"helper returned " + (*r)["result"].dump()};
    } else {
      result = (*r)["result"]["value"].get<std::string>();
    }
  }
  // Close politely (close frame, status 1000), then the socket: the session ends at once.
  const std::string normal_closure("\x03\xe8", 2);
  (void)SendAll(fd.get(), EncodeFrame(0x8, normal_closure, mask), Clock::now() + std::chrono::milliseconds(200));
  return result;
}

}  // namespace threadline
