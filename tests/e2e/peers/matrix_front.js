// A front service of the parenting matrix (tests/e2e/test_parenting.py), untouched Node:
//
//   node matrix_front.js PORT BACKEND_PORT
//
// GET /a/<id>: after a 2 ms timer, GET /b/<id reversed> from 127.0.0.1:BACKEND_PORT on a
// keep-alive http.Agent, then 200. The timer lets other requests arrive while this one waits,
// and the outgoing path carries no forwarded id: only the request's async context links the two.
'use strict';
const http = require('http');

const port = Number(process.argv[2]);
const backendPort = Number(process.argv[3]);
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

const server = http.createServer((req, res) => {
  const id = req.url.split('/').pop();
  setTimeout(() => {
    const rev = id.split('').reverse().join('');
    http.get({ host: '127.0.0.1', port: backendPort, path: `/b/${rev}`, agent }, (r) => {
      r.resume();
      r.on('end', () => {
        res.writeHead(r.statusCode === 200 ? 200 : 502, { 'content-length': 3 });
        res.end('ok\n');
      });
    }).on('error', () => {
      res.writeHead(502, { 'content-length': 3 });
      res.end('no\n');
    });
  }, 2);
});
server.keepAliveTimeout = 30000;
server.listen(port, '127.0.0.1', () => console.log(JSON.stringify({ listening: port })));
