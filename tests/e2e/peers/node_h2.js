// HTTP/2 peer for tests/e2e/test_http2.py, Node's built-in http2 module only.
//   node node_h2.js server <port> [cert key]   h2c (prior knowledge) or, with a certificate, h2
//       over TLS. Routes: /missing -> 404, /fail -> 500, /call?to=<url> -> calls <url> over h2
//       (one session per origin, kept) and answers with its status, anything else -> 200.
//   node node_h2.js front <port> <backend-url>  an HTTP/1.1 server whose every request calls
//       <backend-url> + its path over h2 (an HTTP/1 front on an h2 backend).
//   node node_h2.js client <url> <path> [n]     n concurrent GETs on one h2 session; prints the
//       statuses.
//   node node_h2.js hold <url> <path>...        GETs each path in turn on ONE h2 session, the
//       first at once, each next one on SIGUSR2; prints "<path> <status>" each.
const http = require('http'), http2 = require('http2'), fs = require('fs');
const [mode, ...args] = process.argv.slice(2);
const sessions = new Map();

function session(origin) {
  let s = sessions.get(origin);
  if (!s || s.closed || s.destroyed) {
    s = http2.connect(origin, {rejectUnauthorized: false});
    s.on('error', () => sessions.delete(origin));
    sessions.set(origin, s);
  }
  return s;
}

function get(url, cb) {
  const u = new URL(url);
  const req = session(u.origin).request({':path': u.pathname + u.search});
  let status = 0;
  req.on('response', (h) => { status = h[':status']; });
  req.on('data', () => {});
  req.on('end', () => cb(status));
  req.on('error', () => cb(0));
  req.end();
}

if (mode === 'server') {
  const [port, cert, key] = args;
  const handler = (req, res) => {
    const u = new URL(req.url, 'http://x');
    if (u.pathname === '/call') {
      get(u.searchParams.get('to'), (status) => { res.statusCode = status || 502; res.end('called ' + status); });
      return;
    }
    res.statusCode = u.pathname.startsWith('/missing') ? 404 : u.pathname.startsWith('/fail') ? 500 : 200;
    const delay = Number(u.searchParams.get('delay_ms') || 0);
    setTimeout(() => res.end('node h2 ' + u.pathname + '\n'), delay);
  };
  const server = cert ? http2.createSecureServer({cert: fs.readFileSync(cert), key: fs.readFileSync(key)}, handler)
                      : http2.createServer(handler);
  server.listen(+port, '127.0.0.1');
} else if (mode === 'front') {
  const [port, backend] = args;
  http.createServer((req, res) => {
    get(backend + req.url, (status) => { res.statusCode = status || 502; res.end('front ' + status + '\n'); });
  }).listen(+port, '127.0.0.1');
} else if (mode === 'client') {
  const [url, path, n] = args;
  const count = Number(n || 1);
  const statuses = [];
  for (let i = 0; i < count; i++) {
    get(url + path.replace('{i}', String(i)), (status) => {
      statuses.push(status);
      if (statuses.length === count) {
        console.log(statuses.join(' '));
        for (const s of sessions.values()) s.close();
      }
    });
  }
} else if (mode === 'hold') {
  const [url, ...paths] = args;
  let i = 0;
  const next = () => get(url + paths[i], (status) => {
    console.log(paths[i] + ' ' + status);
    if (++i === paths.length) for (const s of sessions.values()) s.close();
  });
  process.on('SIGUSR2', () => { if (i < paths.length) next(); });
  next();
}
