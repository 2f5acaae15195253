// One hop of the injection chain (tests/e2e/test_inject.py), an untouched Node service.
//
//   node chain_service.js PORT DOWNSTREAM_BASE_URL
//
// Forwards every request as a GET of DOWNSTREAM_BASE_URL + path (http.get, no tracing code, no
// headers of its own) and returns the downstream body as is.
'use strict';
const http = require('http');

const [port, downstream] = process.argv.slice(2);
http.createServer((req, res) => {
  http.get(downstream + req.url, { agent: false }, (down) => {
    const chunks = [];
    down.on('data', (c) => chunks.push(c));
    down.on('end', () => {
      const body = Buffer.concat(chunks);
      res.writeHead(down.statusCode, { 'Content-Type': 'application/json', 'Content-Length': body.length });
      res.end(body);
    });
  }).on('error', (e) => {
    res.writeHead(502, { 'Content-Type': 'text/plain' });
    res.end(`node: downstream failed: ${e.code}\n`);
  });
}).listen(Number(port), '0.0.0.0', () => {
  process.stdout.write(JSON.stringify({ listening: Number(port) }) + '\n');
});
