// The JavaScript the agent evaluates in a Node.js process through its inspector
// (node_async_context.h says why and how). Runs once per process (a second evaluation returns the
// first one's fd); never throws into the application: every hook is wrapped; returns a JSON
// string {"ok":true,"fd":N,"node":"v20..."} that the agent reads.
#pragma once

namespace threadline {

inline constexpr const char* kNodeAsyncContextHelperJs = R"JS((function threadlineNodeAsyncContext() {
  const key = Symbol.for('threadline.node-async-context');
  if (globalThis[key]) return JSON.stringify({ ok: true, fd: globalThis[key].fd, node: process.version });
  const fs = require('fs');
  const http = require('http');
  const dc = require('diagnostics_channel');
  const { AsyncLocalStorage } = require('async_hooks');
  // `require` is the console's, gone once this evaluation returns: take what later code needs now.
  const inspector = require('inspector');
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
  // The agent disconnects as soon as it has the answer; the inspector closes right after.
  setImmediate(() => { try { inspector.close(); } catch (e) { /* ignore */ } });
  return JSON.stringify({ ok: true, fd, node: process.version });
})())JS";

// Closes the inspector when the helper could not (it did not run, or threw before): after the
// agent's session is gone, as inspector.close() waits for open sessions.
inline constexpr const char* kNodeInspectorCloseJs =
    R"JS(((inspector) => { setImmediate(() => { try { inspector.close(); } catch (e) { /* ignore */ } }); return 'closing'; })(require('inspector')))JS";

}  // namespace threadline
