// SQL sanitisation and summaries (agent/protocols/db/sql.h): no literal survives, spans get
// low-cardinality names, single operations and collections only where unambiguous.
#include <gtest/gtest.h>

#include <string>

#include "agent/protocols/db/sql.h"

namespace threadline::db {
namespace {

SqlAnalysis Pg(std::string_view s) { return AnalyzeSql(s, SqlDialect::kPostgres); }
SqlAnalysis My(std::string_view s) { return AnalyzeSql(s, SqlDialect::kMySql); }

TEST(SqlTest, LiteralsBecomePlaceholders) {
  EXPECT_EQ(Pg("SELECT * FROM users WHERE name = 'alice' AND age > 42").sanitized,
            "SELECT * FROM users WHERE name = ? AND age > ?");
  EXPECT_EQ(Pg("select 1.5e3, .5, 0x1F, true, NULL").sanitized, "select ?, ?, ?, ?, NULL");
  EXPECT_EQ(Pg("SELECT E'it\\'s', 'it''s', $tag$x$tag$, $$y$$, B'101', X'FF', U&'d\\0061t'").sanitized,
            "SELECT ?, ?, ?, ?, ?, ?, ?");
  EXPECT_EQ(My("SELECT \"secret\", 'a\\'b', _utf8mb4'x', x'AB', 12 FROM `t`").sanitized,
            "SELECT ?, ?, ?, ?, ? FROM `t`");
  // PostgreSQL double quotes are identifiers, kept.
  EXPECT_EQ(Pg("SELECT \"Name\" FROM \"My Table\" WHERE id=$1").sanitized,
            "SELECT \"Name\" FROM \"My Table\" WHERE id=$1");
}

TEST(SqlTest, CommentsAndWhitespaceGo) {
  EXPECT_EQ(Pg("SELECT  a\n\t FROM t -- password 'x'\n WHERE /* 'y' /* nested */ */ b = 'z'").sanitized,
            "SELECT a FROM t WHERE b = ?");
  EXPECT_EQ(My("SELECT 1 # comment\n, 2 /*! 'v' */").sanitized, "SELECT ? , ?");
  // MySQL needs a space after --; 5--3 is arithmetic (5 minus -3).
  EXPECT_EQ(My("SELECT 5--3").sanitized, "SELECT ?-?");
}

TEST(SqlTest, ASignWhereNoValueEndsBelongsToTheNumber) {
  EXPECT_EQ(Pg("SELECT a - 1, b-2, -3, x = -.5, f(-1), +4, 1e-3 FROM t WHERE c=-7").sanitized,
            "SELECT a - ?, b-?, ?, x = ?, f(?), ?, ? FROM t WHERE c=?");
  EXPECT_EQ(My("SELECT (a)-1, t.b -2, `c` - 3").sanitized, "SELECT (a)-?, t.b -?, `c` - ?");
  // Lists with negative numbers collapse like the others.
  EXPECT_EQ(Pg("INSERT INTO t VALUES (1, 'x'), (-2, 'y'), (3, -4.5)").sanitized, "INSERT INTO t VALUES (?)");
  EXPECT_EQ(My("SELECT * FROM t WHERE id IN (-1, 2, -3)").sanitized, "SELECT * FROM t WHERE id IN (?)");
}

TEST(SqlTest, ListsOfPlaceholdersCollapse) {
  EXPECT_EQ(Pg("SELECT * FROM t WHERE id IN (1, 2, 3, 4)").sanitized, "SELECT * FROM t WHERE id IN (?)");
  EXPECT_EQ(Pg("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'),(3,'z')").sanitized,
            "INSERT INTO t (a, b) VALUES (?)");
  EXPECT_EQ(Pg("SELECT f($1, 2)").sanitized, "SELECT f($1, ?)");
  // Function arguments are not a list of values: each literal stays a placeholder of its own.
  EXPECT_EQ(Pg("SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g").sanitized,
            "SELECT g, repeat(?, ?) FROM generate_series(?, ?) g");
  EXPECT_EQ(Pg("SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4))").sanitized,
            "SELECT * FROM t WHERE (a, b) IN ((?, ?), (?, ?))");
}

TEST(SqlTest, SummaryFollowsTheConventionsExamples) {
  EXPECT_EQ(Pg("SELECT * FROM wuser_table WHERE username = ?").summary, "SELECT wuser_table");
  EXPECT_EQ(Pg("INSERT INTO shipping_details (order_id, address) SELECT order_id, address FROM orders "
                "WHERE order_id = ?").summary,
            "INSERT shipping_details SELECT orders");
  EXPECT_EQ(Pg("SELECT * FROM songs, artists WHERE songs.artist_id == artists.id").summary,
            "SELECT songs artists");
  EXPECT_EQ(Pg("SELECT order_date FROM (SELECT * FROM orders o JOIN customers c ON o.customer_id = "
                "c.customer_id)").summary,
            "SELECT SELECT orders customers");
  EXPECT_EQ(Pg("SELECT * FROM \"song list\", 'artists'").summary, "SELECT \"song list\"");
}

TEST(SqlTest, OperationAndCollectionOnlyWhenSingle) {
  SqlAnalysis a = Pg("select id, total from shop.orders o where o.id = 5");
  EXPECT_EQ(a.summary, "SELECT shop.orders");
  EXPECT_EQ(a.operation, "SELECT");
  EXPECT_EQ(a.collection, "shop.orders");
  EXPECT_EQ(a.statements, 1u);

  a = Pg("SELECT * FROM a JOIN b ON a.id = b.id");
  EXPECT_EQ(a.operation, "SELECT");
  EXPECT_EQ(a.collection, "");

  a = Pg("BEGIN; INSERT INTO orders VALUES (1); COMMIT;");
  EXPECT_EQ(a.summary, "BEGIN INSERT orders COMMIT");
  EXPECT_EQ(a.statements, 3u);
  EXPECT_EQ(a.operation, "");
  EXPECT_EQ(a.collection, "");

  a = Pg("SELECT 1");
  EXPECT_EQ(a.summary, "SELECT");
  EXPECT_EQ(a.operation, "SELECT");
  EXPECT_EQ(a.collection, "");
}

TEST(SqlTest, StatementKinds) {
  EXPECT_EQ(Pg("UPDATE ONLY accounts SET balance = balance - 1 WHERE id = 2").summary, "UPDATE accounts");
  EXPECT_EQ(Pg("DELETE FROM sessions WHERE expires < now()").summary, "DELETE sessions");
  EXPECT_EQ(My("INSERT IGNORE INTO t VALUES (1) ON DUPLICATE KEY UPDATE x = 1").summary, "INSERT t");
  EXPECT_EQ(Pg("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 1").summary, "INSERT t");
  EXPECT_EQ(Pg("SELECT * FROM t FOR UPDATE").summary, "SELECT t");
  EXPECT_EQ(Pg("COPY items (a, b) FROM STDIN").summary, "COPY items");
  EXPECT_EQ(Pg("TRUNCATE TABLE a, b").summary, "TRUNCATE a b");
  SqlAnalysis a = Pg("CREATE TABLE IF NOT EXISTS shop.orders (id int, total numeric)");
  EXPECT_EQ(a.summary, "CREATE TABLE shop.orders");
  EXPECT_EQ(a.operation, "CREATE TABLE");
  EXPECT_EQ(a.collection, "shop.orders");
  EXPECT_EQ(Pg("CREATE UNIQUE INDEX CONCURRENTLY idx ON t (x)").operation, "CREATE INDEX");
  EXPECT_EQ(Pg("DROP MATERIALIZED VIEW mv").summary, "DROP MATERIALIZED VIEW mv");
  EXPECT_EQ(Pg("start transaction isolation level serializable").operation, "START TRANSACTION");
  EXPECT_EQ(Pg("SET search_path TO shop").summary, "SET");
  EXPECT_EQ(Pg("GRANT SELECT, INSERT ON t TO bob").summary, "GRANT");
  EXPECT_EQ(Pg("EXPLAIN ANALYZE SELECT * FROM t").summary, "EXPLAIN SELECT t");
  EXPECT_EQ(Pg("WITH recent AS (SELECT * FROM orders) SELECT count(*) FROM recent").summary,
            "SELECT orders SELECT recent");
  EXPECT_EQ(Pg("SELECT * FROM generate_series(1, 3) g").summary, "SELECT");
  a = Pg("CALL refresh_stats(1)");
  EXPECT_EQ(a.summary, "CALL refresh_stats");
  EXPECT_EQ(a.stored_procedure, "refresh_stats");
  EXPECT_EQ(a.collection, "");
  EXPECT_EQ(My("REPLACE INTO kv (k, v) VALUES ('a', 'b')").summary, "REPLACE kv");
  EXPECT_EQ(My("USE shop").summary, "USE");
  EXPECT_EQ(My("DESCRIBE `orders`").summary, "DESCRIBE `orders`");
}

TEST(SqlTest, SecretsInDdlAreLiterals) {
  EXPECT_EQ(Pg("ALTER USER bob PASSWORD 'hunter2'").sanitized, "ALTER USER bob PASSWORD ?");
  EXPECT_EQ(My("CREATE USER 'bob'@'%' IDENTIFIED BY 'hunter2'").sanitized,
            "CREATE USER ?@? IDENTIFIED BY ?");
}

TEST(SqlTest, BoundedWhateverTheInput) {
  std::string big = "SELECT ";
  for (int i = 0; i < 5000; ++i) big += "col" + std::to_string(i) + ", ";
  big += "1 FROM t";
  SqlAnalysis a = Pg(big);
  EXPECT_LE(a.sanitized.size(), kMaxSanitizedBytes);
  EXPECT_TRUE(a.sanitized_truncated);
  std::string many = "SELECT * FROM t0";
  for (int i = 1; i < 200; ++i) many += " JOIN table_number_" + std::to_string(i) + " ON true";
  EXPECT_LE(Pg(many).summary.size(), kMaxSummaryBytes);
  // Unterminated quotes and comments, binary garbage.
  EXPECT_EQ(Pg("SELECT 'abc").sanitized, "SELECT ?");
  EXPECT_EQ(Pg("SELECT /* abc").sanitized, "SELECT");
  const std::string garbage("\x00\xff\x01'\"`$$\x80", 10);
  (void)Pg(garbage);
  (void)My(garbage);
}

}  // namespace
}  // namespace threadline::db
