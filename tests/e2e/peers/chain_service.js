// One hop of the injection chain (tests/e2e/test_inject.py), an untouched Node service.
//
//   node chain_service.js PORT DOWNSTREAM_BASE_URL
//
// Forwards every request as a GET of DOWNSTREAM_BASE_URL + path (http.get, no tracing code, no
// headers of its own) and returns the downstream body as is. HTTPS: with CHAIN_TLS_CERT and
// CHAIN_TLS_KEY (PEM files) it serves TLS; an https downstream is verified against the CA in
// NODE_EXTRA_CA_CERTS (Node's variable).
'use strict';
const fs = require('fs');
const http = require('http');
const https = require('https');

const [port, downstream] = process.argv.slice(2);
const client = downstream.startsWith('https:') ? https : http;
const handler = (req, res) => {
  client.get(downstream + req.url, { agent: false }, (down) => {
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
};
const server = process.env.CHAIN_TLS_CERT
  ? https.createServer({ cert: fs.readFileSync(process.env.CHAIN_TLS_CERT),
                         key: fs.readFileSync(process.env.CHAIN_TLS_KEY) }, handler)
  : http.createServer(handler);
server.listen(Number(port), '0.0.0.0', () => {
  process.stdout.write(JSON.stringify({ listening: Number(port) }) + '\n');
});
