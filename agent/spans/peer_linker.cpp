#include "agent/spans/peer_linker.h"

#include <functional>

namespace threadline {

namespace {
// More requests in flight on one connection than HTTP/1.x pipelining or HTTP/2 streams (the
// parser tracks 256 per connection) ever have: the other end is not traced here, or its
// requests were lost; keep the newest.
constexpr size_t kMaxQueued = 512;

size_t HashIp(const IpAddress& a) {
  uint64_t h = 1469598103934665603ull;
  size_t n = a.is_v4 ? 4 : 16;
  for (size_t i = 0; i < n; ++i) h = (h ^ a.bytes[i]) * 1099511628211ull;
  return static_cast<size_t>(h);
}
}  // namespace

size_t PeerLinker::KeyHash::operator()(const Key& k) const noexcept {
  size_t h = HashIp(k.client_ip) * 31 + HashIp(k.server_ip);
  return h * 131 + ((static_cast<size_t>(k.client_port) << 16) | k.server_port);
}

PeerLinker::PeerLinker(MetricsRegistry& metrics)
    : linked_(metrics.GetCounter("threadline_peer_links_total", {{"result", "linked"}},
                                 "Server spans matched to a client span of this node by tuple")),
      waited_(metrics.GetCounter("threadline_peer_links_total", {{"result", "linked_after_wait"}})),
      unmatched_calls_(metrics.GetCounter("threadline_peer_links_total",
                                          {{"result", "client_call_dropped"}})),
      abandoned_(metrics.GetCounter("threadline_peer_links_total", {{"result", "wait_abandoned"}})) {}

PeerLinker::Key PeerLinker::FromClient(const Tuple& t) {
  return Key{t.local, t.remote, t.local_port, t.remote_port};
}
PeerLinker::Key PeerLinker::FromServer(const Tuple& t) {
  return Key{t.remote, t.local, t.remote_port, t.local_port};
}

void PeerLinker::MaybeErase(const Key& k) {
  auto it = pairs_.find(k);
  if (it != pairs_.end() && !it->second.client_open && it->second.calls.empty() &&
      it->second.waiting.empty())
    pairs_.erase(it);
}

void PeerLinker::OnClientOpened(const Tuple& client_tuple) {
  pairs_[FromClient(client_tuple)].client_open = true;
}

void PeerLinker::OnClientClosed(const Tuple& client_tuple) {
  Key k = FromClient(client_tuple);
  auto it = pairs_.find(k);
  if (it == pairs_.end()) return;
  it->second.client_open = false;
  // Calls still queued may yet be read by the server (it reads after the client closed); they
  // stay until the server closes or the queue bound pushes them out.
  MaybeErase(k);
}

void PeerLinker::OnServerClosed(const Tuple& server_tuple) {
  Key k = FromServer(server_tuple);
  auto it = pairs_.find(k);
  if (it == pairs_.end()) return;
  unmatched_calls_.Add(it->second.calls.size());
  abandoned_.Add(it->second.waiting.size());
  it->second.calls.clear();
  it->second.waiting.clear();
  MaybeErase(k);
}

std::optional<PeerLinker::Token> PeerLinker::OnClientCall(const Tuple& client_tuple,
                                                          const Call& call) {
  Pair& p = pairs_[FromClient(client_tuple)];
  p.client_open = true;
  for (auto w = p.waiting.begin(); w != p.waiting.end(); ++w) {
    if (w->stream_id != call.stream_id) continue;
    const Token t = w->token;
    p.waiting.erase(w);
    waited_.Add(1);
    return t;
  }
  if (p.calls.size() >= kMaxQueued) {
    p.calls.pop_front();
    unmatched_calls_.Add(1);
  }
  p.calls.push_back(call);
  return std::nullopt;
}

std::optional<PeerLinker::Call> PeerLinker::OnServerRequest(const Tuple& server_tuple,
                                                            uint32_t stream_id, uint64_t ts_ns,
                                                            Token* wait) {
  *wait = 0;
  auto it = pairs_.find(FromServer(server_tuple));
  if (it == pairs_.end()) return std::nullopt;
  Pair& p = it->second;
  for (auto c = p.calls.begin(); c != p.calls.end();) {
    if (c->stream_id != stream_id) {
      ++c;
      continue;
    }
    Call call = std::move(*c);
    c = p.calls.erase(c);
    // A call written after this request was read cannot be its cause: the queues are out of
    // step (a lost request on one side); drop the call rather than link the wrong one.
    if (call.ts_ns > ts_ns) {
      unmatched_calls_.Add(1);
      continue;
    }
    linked_.Add(1);
    return call;
  }
  if (!p.client_open) return std::nullopt;
  if (p.waiting.size() >= kMaxQueued) {
    p.waiting.pop_front();
    abandoned_.Add(1);
  }
  *wait = next_token_++;
  p.waiting.push_back(Waiting{*wait, stream_id});
  return std::nullopt;
}

void PeerLinker::Abandon(Token token) {
  for (auto& [key, p] : pairs_) {
    for (auto it = p.waiting.begin(); it != p.waiting.end(); ++it) {
      if (it->token == token) {
        p.waiting.erase(it);
        abandoned_.Add(1);
        return;
      }
    }
  }
}

size_t PeerLinker::waiting_calls() const {
  size_t n = 0;
  for (const auto& [key, p] : pairs_) n += p.calls.size();
  return n;
}

}  // namespace threadline
