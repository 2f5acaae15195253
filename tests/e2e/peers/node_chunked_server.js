// An untouched Node HTTP server whose answers are chunked (Node's default when a response is
// written in parts without a Content-Length), for tests/e2e/test_http_spans.py.
//
//   node node_chunked_server.js PORT
//
// GET /parts/A,B,C answers 200 with three res.write() calls of A, B and C bytes: the decoded
// body is A+B+C bytes, the bytes on the wire more (chunk sizes and CRLFs).
'use strict';

const http = require('http');

const port = Number(process.argv[2]);
http.createServer((req, res) => {
  const m = /^\/parts\/([0-9,]+)/.exec(req.url);
  const sizes = m ? m[1].split(',').filter(Boolean).map(Number) : [5];
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  sizes.forEach((n, i) => res.write(String.fromCharCode(97 + (i % 26)).repeat(n)));
  res.end();
}).listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ listening: port }) + '\n');
});
