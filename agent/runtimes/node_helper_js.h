// The JavaScript the agent evaluates in a Node.js process through its inspector
// (node_async_context.h says why and how). Runs once per process (a second evaluation returns the
// first one's fd); never throws into the application: every hook is wrapped; returns a JSON
// string {"ok":true,"fd":N,"node":"v20..."} that the agent reads.
#pragma once

#include <string>

namespace threadline {

// Closes the inspector once the agent's session is gone. Closing it with that session still
// connected can crash Node: v20's inspector thread then writes a WebSocket close frame to the
// session while the agent's own close frame ends it, and the write's callback runs on a handler
// already freed (SIGSEGV in WsHandler::OnCloseFrameWritten while the main thread joins that
// thread in InspectorIo::~InspectorIo: 3 crashed processes in 130 loads on a busy 2-core VM when
// the helper closed it from a setImmediate, which runs before the agent hangs up). The agent
// names the session's socket to the code it evaluates (`sessionFd`, and `sessionLink`, what
// /proc/self/fd/<fd> reads while it is that socket: a reused fd number reads another inode), so
// the check is one readlink every 10 ms; the inspector closes 20 ms after Node has closed the
// session's socket. When the agent could not name it (sessionFd -1) it closes after 1 s (the
// agent hangs up within milliseconds of the answer). Another session (a person's debugger
// attaching in that window) is not waited for.
inline constexpr const char* kNodeCloseInspectorWhenAloneJs = R"JS(
function threadlineCloseInspectorWhenAlone(inspector, fs, sessionFd, sessionLink) {
  const started = Date.now();
  let goneSince = 0;
  const connected = () => {
    if (sessionFd < 0) return Date.now() - started < 1000;
    try { return fs.readlinkSync('/proc/self/fd/' + sessionFd) === sessionLink; } catch (e) { return false; }
  };
  const tick = () => {
    try {
      if (!inspector.url()) return;  // closed already (the agent's fallback did it)
      const now = Date.now();
      if (connected()) goneSince = 0; else if (!goneSince) goneSince = now;
      if (goneSince && now - goneSince >= 20) { inspector.close(); return; }
    } catch (e) { return; /* never break the application */ }
    setTimeout(tick, 10).unref();
  };
  setTimeout(tick, 10).unref();
}
)JS";

inline constexpr const char* kNodeAsyncContextHelperBodyJs = R"JS(
  const key = Symbol.for('threadline.node-async-context');
  // `require` is the console's, gone once this evaluation returns: take what later code needs now.
  const fs = require('fs');
  const inspector = require('inspector');
  if (globalThis[key]) {
    // Loaded before (an earlier agent): only close the inspector this load opened.
    threadlineCloseInspectorWhenAlone(inspector, fs, sessionFd, sessionLink);
    return JSON.stringify({ ok: true, fd: globalThis[key].fd, node: process.version });
  }
  const http = require('http');
  const dc = require('diagnostics_channel');
  const { AsyncLocalStorage } = require('async_hooks');
  const als = new AsyncLocalStorage();
  const fd = fs.openSync('/dev/null', 'w');
  // {magic "TLN1", server socket fd, client socket fd, 0}: events.h struct tl_node_marker.
  const marker = Buffer.alloc(16);
  marker.writeUInt32LE(0x314e4c54, 0);
  const report = (inFd, outFd) => {
    marker.writeInt32LE(inFd, 4);
    marker.writeInt32LE(outFd, 8);
    try { fs.writeSync(fd, marker, 0, 16); } catch (e) { /* never break the application */ }
  };
  const fdOf = (socket) => {
    const h = socket && socket._handle;
    return h && typeof h.fd === 'number' ? h.fd : -1;
  };
  // Each server request: its socket and response become the async context of what it starts.
  dc.subscribe('http.server.request.start', (msg) => {
    try { als.enterWith({ fd: fdOf(msg.socket), res: msg.response }); } catch (e) { /* ignore */ }
  });
  // Node assigns a request its socket in the request's own async context (queued ones too).
  const onSocket = http.ClientRequest.prototype.onSocket;
  http.ClientRequest.prototype.onSocket = function threadlineOnSocket(socket, err) {
    try {
      if (socket && !err) {
        const ctx = als.getStore();
        // Answered already (its response started): for no request, never for a later one.
        const inFd = ctx && ctx.fd >= 0 && !(ctx.res && ctx.res.headersSent) ? ctx.fd : -1;
        const send = () => { const out = fdOf(socket); if (out >= 0) report(inFd, out); };
        if (fdOf(socket) >= 0) send(); else socket.once('connect', send);
      }
    } catch (e) { /* never break the application */ }
    return onSocket.call(this, socket, err);
  };
  globalThis[key] = { fd };
  // The agent hangs up as soon as it has the answer; the inspector closes after that.
  threadlineCloseInspectorWhenAlone(inspector, fs, sessionFd, sessionLink);
  return JSON.stringify({ ok: true, fd, node: process.version });
)JS";

// The helper's expression for a session whose socket in the Node process is fd `session_fd`
// (-1: unknown), which /proc/<pid>/fd/<fd> shows as `session_link` ("socket:[inode]").
inline std::string NodeAsyncContextHelperJs(int session_fd, const std::string& session_link) {
  return std::string("(function threadlineNodeAsyncContext(sessionFd, sessionLink) {") +
         kNodeCloseInspectorWhenAloneJs + kNodeAsyncContextHelperBodyJs + "})(" +
         std::to_string(session_fd) + ", '" + session_link + "')";
}

// Closes the inspector when the helper could not (it did not run, or threw before), with the
// same wait for the agent's session to be gone.
inline std::string NodeInspectorCloseJs(int session_fd, const std::string& session_link) {
  return std::string("(function threadlineCloseInspector(sessionFd, sessionLink) {") +
         kNodeCloseInspectorWhenAloneJs +
         "threadlineCloseInspectorWhenAlone(require('inspector'), require('fs'), sessionFd, sessionLink); "
         "return 'closing'; })(" + std::to_string(session_fd) + ", '" + session_link + "')";
}

}  // namespace threadline
