// Node PostgreSQL client for tests/e2e/test_db_spans.py: node-postgres speaks the extended query
// protocol for parameterised queries (Parse/Bind/Describe/Execute/Sync), and names the statement
// when asked (Parse once per connection, then only Bind/Execute).
//
//   node client.js PG_PORT TABLE
//
// Prints one JSON line when done: {"pid": ..., "rows": [...], "error": "<SQLSTATE>"}.
const { Client } = require('pg');

async function main() {
  const [port, table] = process.argv.slice(2);
  const client = new Client({ host: '127.0.0.1', port: Number(port), user: 'postgres', database: 'postgres' });
  await client.connect();
  await client.query(`CREATE TABLE IF NOT EXISTS ${table} (id int PRIMARY KEY, total numeric)`);
  await client.query(`INSERT INTO ${table} VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING`, [1, 12.5, 2, 7]);
  const rows = [];
  for (const id of [1, 2]) {
    const r = await client.query({ name: 'order-total', text: `SELECT total FROM ${table} WHERE id = $1`, values: [id] });
    rows.push(r.rows[0].total);
  }
  let error = null;
  try {
    await client.query(`SELECT missing_column FROM ${table} WHERE id = $1`, [1]);
  } catch (e) {
    error = e.code;
  }
  await client.end();
  console.log(JSON.stringify({ pid: process.pid, rows, error }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
