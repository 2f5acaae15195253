// Node MySQL/MariaDB client for tests/e2e/test_db_spans.py: mysql2's execute() prepares a
// statement once per connection (COM_STMT_PREPARE) and executes it by id (COM_STMT_EXECUTE);
// query() sends text (COM_QUERY).
//
//   node client.js PORT DATABASE TABLE
//
// Prints one JSON line when done: {"pid": ..., "totals": [...], "error": <errno>}.
const mysql = require('mysql2/promise');

async function main() {
  const [port, database, table] = process.argv.slice(2);
  const conn = await mysql.createConnection({ host: '127.0.0.1', port: Number(port), user: 'root', database });
  await conn.query(`CREATE TABLE IF NOT EXISTS ${table} (id int PRIMARY KEY, total decimal(10,2))`);
  await conn.query(`INSERT INTO ${table} VALUES (1, 12.5), (2, 7) ON DUPLICATE KEY UPDATE total = VALUES(total)`);
  const totals = [];
  for (const id of [1, 2]) {
    const [rows] = await conn.execute(`SELECT total FROM ${table} WHERE id = ?`, [id]);
    totals.push(rows[0].total);
  }
  let error = null;
  try {
    await conn.execute(`SELECT missing_column FROM ${table} WHERE id = ?`, [1]);
  } catch (e) {
    error = e.errno;
  }
  await conn.end();
  console.log(JSON.stringify({ pid: process.pid, totals, error }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
