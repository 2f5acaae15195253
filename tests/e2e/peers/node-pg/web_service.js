// A Node web service that queries PostgreSQL through a node-postgres Pool, untouched by tracing,
// for tests/e2e/test_db_spans.py.
//
//   node web_service.js PORT PG_PORT
//
// GET /item/<id>: one query on a pooled connection, `SELECT <id> AS i<id>` (the alias names the
// request in the sanitised text), answered with its value. Every request is handled on the one
// event loop thread. Prints {"listening": PORT} once serving.
const http = require('http');
const { Pool } = require('pg');

const [port, pgPort] = process.argv.slice(2).map(Number);
const pool = new Pool({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres', max: 4 });

http.createServer(async (req, res) => {
  const id = Number(req.url.split('/').pop());
  if (!Number.isInteger(id)) {
    res.writeHead(400).end();
    return;
  }
  try {
    const r = await pool.query(`SELECT ${id} AS i${id}`);
    res.writeHead(200, { 'Content-Type': 'text/plain' }).end(`${r.rows[0]['i' + id]}\n`);
  } catch (e) {
    res.writeHead(502).end(String(e));
  }
}).listen(port, '127.0.0.1', () => console.log(JSON.stringify({ listening: port })));
