// MySQL/MariaDB on the neutral model, fed recorded conversations of real clients (the mariadb CLI
// and Node mysql2 against MariaDB 10.11) through the dispatcher: handshake, COM_QUERY,
// COM_STMT_PREPARE/EXECUTE, COM_INIT_DB, OK/ERR/EOF and result sets, at every split point; then
// CLIENT_DEPRECATE_EOF, multiple result sets, 16 MiB payloads, gaps, garbage and detection.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "agent/protocols/mysql/parser.h"
#include "tests/unit/db_test_util.h"

namespace threadline {
namespace {

using db_test::Described;
using db_test::DescribingSink;
using db_test::Feeder;
using db_test::LoadRecording;

std::vector<Described> Spans(const db_test::Conversation& conv, Role role = Role::kClient) {
  DescribingSink sink;
  Feeder feeder(sink);
  feeder.server_port = 3306;
  feeder.Run(conv, role);
  return sink.records;
}

// One packet: 3-byte length, sequence id, payload.
std::string Packet(uint8_t seq, const std::string& payload) {
  const size_t n = payload.size();
  std::string p;
  p += static_cast<char>(n & 0xff);
  p += static_cast<char>((n >> 8) & 0xff);
  p += static_cast<char>((n >> 16) & 0xff);
  p += static_cast<char>(seq);
  return p + payload;
}
std::string Query(const std::string& sql) { return Packet(0, "\x03" + sql); }
std::string Ok(uint8_t seq, uint16_t status = 2) {
  return Packet(seq, std::string("\x00\x00\x00", 3) + static_cast<char>(status & 0xff) +
                         static_cast<char>(status >> 8) + std::string("\x00\x00", 2));
}
std::string Eof(uint8_t seq, uint16_t status = 2) {
  return Packet(seq, std::string("\xfe\x00\x00", 3) + static_cast<char>(status & 0xff) + static_cast<char>(status >> 8));
}
// The OK that ends rows with CLIENT_DEPRECATE_EOF (header 0xfe).
std::string OkEnd(uint8_t seq, uint16_t status = 2) {
  return Packet(seq, std::string("\xfe\x00\x00", 3) + static_cast<char>(status & 0xff) +
                         static_cast<char>(status >> 8) + std::string("\x00\x00", 2));
}
std::string ColumnDef(uint8_t seq) { return Packet(seq, std::string("\x03" "def\x00\x00\x00\x01x\x00\x0c\x3f\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00", 23)); }
std::string Row(uint8_t seq, const std::string& v) { return Packet(seq, static_cast<char>(v.size()) + v); }

TEST(MySqlProtocolTest, MariaDbCliQueriesErrorsAndUse) {
  auto convs = LoadRecording("mysql_mariadb_cli");
  ASSERT_EQ(convs.size(), 2u);
  auto r = Spans(convs[0]);
  ASSERT_EQ(r.size(), 7u) << db_test::Summary(r);
  EXPECT_EQ(r[0].name, "CREATE DATABASE shop");
  EXPECT_EQ(r[0].Attr("db.system.name"), "mariadb");
  EXPECT_FALSE(r[0].Has("db.namespace"));  // no schema yet
  EXPECT_EQ(r[1].name, "SELECT");           // SELECT DATABASE()
  EXPECT_EQ(r[2].name, "USE shop");         // COM_INIT_DB
  EXPECT_EQ(r[2].Attr("db.operation.name"), "USE");
  EXPECT_EQ(r[2].Attr("db.namespace"), "shop");
  EXPECT_EQ(r[3].name, "CREATE TABLE orders");
  EXPECT_EQ(r[3].Attr("db.namespace"), "shop");
  EXPECT_EQ(r[4].name, "INSERT orders");
  EXPECT_EQ(r[4].Attr("db.query.text"), "INSERT INTO orders VALUES (?) ON DUPLICATE KEY UPDATE total = ?");
  EXPECT_EQ(r[5].name, "SELECT orders");
  EXPECT_EQ(r[5].Attr("db.query.text"), "SELECT id, total FROM orders WHERE id = ?");
  EXPECT_EQ(r[5].Attr("server.port"), "3306");
  EXPECT_FALSE(r[5].error);
  EXPECT_EQ(r[6].name, "SELECT nope");
  EXPECT_TRUE(r[6].error);
  EXPECT_EQ(r[6].Attr("db.response.status_code"), "1146");
  EXPECT_EQ(r[6].Attr("error.type"), "1146");

  auto tx = Spans(convs[1]);
  ASSERT_EQ(tx.size(), 4u) << db_test::Summary(tx);
  EXPECT_EQ(tx[0].name, "SELECT orders");
  EXPECT_EQ(tx[0].Attr("db.namespace"), "shop");  // from the handshake
  EXPECT_EQ(tx[1].name, "BEGIN");
  EXPECT_EQ(tx[2].name, "UPDATE orders");
  EXPECT_EQ(tx[3].name, "COMMIT");
}

TEST(MySqlProtocolTest, PreparedStatementsTakeTheirTextById) {
  auto r = Spans(LoadRecording("mysql_node_mysql2")[0]);
  ASSERT_EQ(r.size(), 6u) << db_test::Summary(r);
  EXPECT_EQ(r[0].name, "CREATE TABLE e2e_node");
  EXPECT_EQ(r[1].name, "INSERT e2e_node");
  EXPECT_EQ(r[2].name, "PREPARE SELECT e2e_node");
  EXPECT_EQ(r[2].Attr("db.operation.name"), "PREPARE");
  EXPECT_EQ(r[3].name, "SELECT e2e_node");
  EXPECT_EQ(r[3].Attr("db.query.text"), "SELECT total FROM e2e_node WHERE id = ?");
  EXPECT_EQ(r[4].Attr("db.query.text"), "SELECT total FROM e2e_node WHERE id = ?");
  EXPECT_EQ(r[5].name, "PREPARE SELECT e2e_node");
  EXPECT_TRUE(r[5].error);
  EXPECT_EQ(r[5].Attr("db.response.status_code"), "1054");
  for (size_t i = 0; i < 5; ++i) EXPECT_FALSE(r[i].error) << i;
}

TEST(MySqlProtocolTest, EverySplitPointGivesTheSameSpans) {
  // The greeting is cut only past what detection needs (a server sends it whole).
  for (const char* name : {"mysql_mariadb_cli", "mysql_node_mysql2"}) db_test::ExpectSameSpansAtEverySplit(name, 40);
}

// A connection joined mid-stream (capabilities unknown) whose client uses
// CLIENT_DEPRECATE_EOF: no EOF after column definitions, rows end with an OK whose header is
// 0xfe; a result with no rows ends right after its definitions.
TEST(MySqlProtocolTest, DeprecateEofWithCapabilitiesUnknown) {
  db_test::Conversation conv;
  conv.push_back({true, Query("SELECT x FROM t")});
  conv.push_back({false, Packet(1, "\x01") + ColumnDef(2) + Row(3, "a") + Row(4, "b") + OkEnd(5)});
  conv.push_back({true, Query("SELECT x FROM empty")});
  conv.push_back({false, Packet(1, "\x01") + ColumnDef(2) + OkEnd(3)});
  conv.push_back({true, Query("DO 1")});
  conv.push_back({false, Ok(1)});
  auto r = Spans(conv);
  ASSERT_EQ(r.size(), 3u) << db_test::Summary(r);
  EXPECT_EQ(r[0].name, "SELECT t");
  EXPECT_EQ(r[1].name, "SELECT empty");
  EXPECT_EQ(r[2].name, "DO");
  EXPECT_EQ(r[0].Attr("db.system.name"), "mysql");  // no greeting seen
  for (const auto& d : r) EXPECT_FALSE(d.error);
}

TEST(MySqlProtocolTest, MultipleResultSetsAreOneOperation) {
  db_test::Conversation conv;
  conv.push_back({true, Query("SELECT 1; SELECT 2")});
  // First result: EOF with SERVER_MORE_RESULTS_EXISTS, then the second.
  conv.push_back({false, Packet(1, "\x01") + ColumnDef(2) + Eof(3) + Row(4, "1") + Eof(5, 0x000a) +
                             Packet(6, "\x01") + ColumnDef(7) + Eof(8) + Row(9, "2") + Eof(10)});
  conv.push_back({true, Query("CALL p()")});
  conv.push_back({false, Ok(1, 0x000a) + Packet(2, "\xff\x28\x04#42000boom")});
  conv.push_back({true, Query("SELECT 3")});
  conv.push_back({false, Packet(1, "\x01") + ColumnDef(2) + Eof(3) + Row(4, "3") + Eof(5)});
  auto r = Spans(conv);
  ASSERT_EQ(r.size(), 3u) << db_test::Summary(r);
  EXPECT_EQ(r[0].name, "SELECT SELECT");
  EXPECT_FALSE(r[0].error);
  EXPECT_EQ(r[1].Attr("db.stored_procedure.name"), "p");
  EXPECT_TRUE(r[1].error);  // the procedure's second result was an error
  EXPECT_EQ(r[1].Attr("db.response.status_code"), "1064");
  EXPECT_EQ(r[2].name, "SELECT");
  EXPECT_FALSE(r[2].error);
}

TEST(MySqlProtocolTest, MultiPacketPayloadsAreJoinedNotMisread) {
  db_test::Conversation conv;
  // A 16 MiB - 1 row whose second packet starts with 0xfe, as an EOF would, then a small row.
  const std::string big(0xffffff - 4, 'x');
  conv.push_back({true, Query("SELECT blob FROM t")});
  conv.push_back({false, Packet(1, "\x01") + ColumnDef(2) + Eof(3) + Packet(4, std::string("\xfd\xff\xff\xff", 4) + big)});
  conv.push_back({false, Packet(5, std::string("\xfe\x01\x02", 3))});  // the rest of that row
  conv.push_back({false, Row(6, "y") + Eof(7)});
  conv.push_back({true, Query("SELECT 2")});
  conv.push_back({false, Packet(1, "\x01") + ColumnDef(2) + Eof(3) + Row(4, "2") + Eof(5)});
  DescribingSink sink;
  Feeder feeder(sink);
  feeder.Run(conv);
  auto& r = sink.records;
  ASSERT_EQ(r.size(), 2u) << db_test::Summary(r);
  EXPECT_EQ(r[0].name, "SELECT t");
  EXPECT_EQ(r[1].name, "SELECT");
  // The first answer ended with its last EOF (three reads after its start), nothing was left
  // over for no command.
  EXPECT_EQ(r[0].end_ts - r[0].start_ts, 3000u);
  EXPECT_EQ(feeder.metrics().CounterTotal("threadline_parse_failures_total"), 0u);
}

TEST(MySqlProtocolTest, GapOverRowsEndsAtTheNextCommand) {
  DescribingSink sink;
  db_test::LiveConnection conn(sink);
  conn.Client(Query("SELECT * FROM big"));
  std::string rows = Packet(1, "\x01") + ColumnDef(2) + Eof(3);
  for (int i = 0; i < 20; ++i) rows += Row(static_cast<uint8_t>(4 + i), "row");
  conn.Server(rows);
  conn.ServerGap(50000);
  conn.Server("w\x03rowzz");  // inside rows: no chain to resync on
  conn.Client(Query("SELECT 2"));
  conn.Server(Packet(1, "\x01") + ColumnDef(2) + Eof(3) + Row(4, "2") + Eof(5));
  ASSERT_EQ(sink.records.size(), 2u) << db_test::Summary(sink.records);
  EXPECT_EQ(sink.records[0].name, "SELECT big");
  EXPECT_EQ(sink.records[0].Attr("threadline.response.incomplete"), "true");
  EXPECT_EQ(sink.records[1].name, "SELECT");
  EXPECT_FALSE(sink.records[1].Has("threadline.response.incomplete"));
}

// After lost framing the reader may resynchronise on rows that look like packets and expect a
// long one: the next command realigns it, so its answer is not swallowed.
TEST(MySqlProtocolTest, NextCommandRealignsAReaderResynchronisedOnRows) {
  DescribingSink sink;
  db_test::LiveConnection conn(sink);
  conn.Client(Query("SELECT * FROM big"));
  conn.Server(Packet(1, "\x01") + ColumnDef(2) + Eof(3) + Row(4, "r"));
  conn.ServerGap(90000);
  // Two rows in order, then the header of a long one: a chain the reader takes.
  conn.Server(Row(40, "a") + Row(41, "b") + std::string("\x60\xea\x00\x2a", 4) + "xx");
  conn.Client(Query("SELECT 2"));
  conn.Server(Packet(1, "\x01") + ColumnDef(2) + Eof(3) + Row(4, "2") + Eof(5));
  ASSERT_EQ(sink.records.size(), 2u) << db_test::Summary(sink.records);
  EXPECT_EQ(sink.records[0].name, "SELECT big");
  EXPECT_EQ(sink.records[0].Attr("threadline.response.incomplete"), "true");
  EXPECT_EQ(sink.records[1].name, "SELECT");
  EXPECT_FALSE(sink.records[1].Has("threadline.response.incomplete"));
}

TEST(MySqlProtocolTest, ServerSideOnlyWithServerSpans) {
  const auto conv = LoadRecording("mysql_mariadb_cli")[1];
  EXPECT_TRUE(Spans(conv, Role::kServer).empty());
  DescribingSink sink;
  ProtocolOptions on;
  on.db_server_spans = true;
  Feeder(sink, on).Run(conv, Role::kServer);
  ASSERT_EQ(sink.records.size(), 4u);
  EXPECT_EQ(sink.records[0].role, Role::kServer);
  // And with the role unknown, the greeting's direction tells the client's.
  auto unknown = Spans(conv, Role::kUnknown);
  ASSERT_EQ(unknown.size(), 4u);
  EXPECT_EQ(unknown[0].role, Role::kClient);
}

TEST(MySqlProtocolTest, SslRequestStopsParsing) {
  auto cli = LoadRecording("mysql_mariadb_cli")[0];
  db_test::Conversation conv{cli[0]};
  std::string ssl(32, '\0');
  ssl[0] = static_cast<char>(0x84);
  ssl[1] = static_cast<char>(0xaa);  // PROTOCOL_41 | SSL | SECURE_CONNECTION ...
  conv.push_back({true, Packet(1, ssl)});
  conv.push_back({true, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11)});
  DescribingSink sink;
  Feeder feeder(sink);
  feeder.Run(conv);
  EXPECT_TRUE(sink.records.empty());
  EXPECT_EQ(feeder.metrics().CounterTotal("threadline_parse_failures_total"), 0u);
}

// A TLS connection: the clear text is the greeting and the SSLRequest; the connection table then
// restarts the connection (same id) with the plaintext the TLS capture gives, from the client's
// HandshakeResponse (sequence id 2) on. Its spans know the server (MariaDB, from the clear-text
// greeting) and the schema (from the HandshakeResponse inside TLS).
TEST(MySqlProtocolTest, TlsPlaintextContinuesTheHandshake) {
  auto cli = LoadRecording("mysql_node_mysql2")[0];
  const std::string& greeting = cli[0].bytes;
  std::string response = cli[1].bytes;  // HandshakeResponse, sequence id 1, schema shop
  ASSERT_EQ(response[3], 1);
  const uint32_t caps = static_cast<uint8_t>(response[4]) | static_cast<uint8_t>(response[5]) << 8 |
                        static_cast<uint8_t>(response[6]) << 16 | static_cast<uint32_t>(static_cast<uint8_t>(response[7])) << 24;
  ASSERT_TRUE(caps & mysql::kClientConnectWithDb);
  response[5] = static_cast<char>(response[5] | 0x08);  // CLIENT_SSL
  std::string ssl = response.substr(4, 32);              // an SSLRequest: the response's first 32 bytes
  response[3] = 2;                                       // inside TLS it is the third packet

  DescribingSink sink;
  Feeder feeder(sink);
  feeder.server_port = 3306;
  feeder.Run({{false, greeting}, {true, Packet(1, ssl)}});
  EXPECT_TRUE(sink.records.empty());
  feeder.tls = true;
  feeder.same_connection = true;
  db_test::Conversation plaintext{{true, response}, {false, Ok(3)},
                                  {true, Query("UPDATE orders SET total = 1 WHERE id = 7")}, {false, Ok(1)}};
  feeder.Run(plaintext);
  ASSERT_EQ(sink.records.size(), 1u) << db_test::Summary(sink.records);
  EXPECT_EQ(sink.records[0].name, "UPDATE orders");
  EXPECT_EQ(sink.records[0].Attr("db.system.name"), "mariadb");
  EXPECT_EQ(sink.records[0].Attr("db.namespace"), "shop");
  EXPECT_FALSE(sink.records[0].error);
  EXPECT_EQ(feeder.metrics().CounterTotal("threadline_parse_failures_total"), 0u);

  // The same plaintext without its clear text (the agent started mid-handshake): still parsed,
  // the server unknown.
  DescribingSink alone;
  Feeder lone(alone);
  lone.tls = true;
  lone.Run(plaintext);
  ASSERT_EQ(alone.records.size(), 1u) << db_test::Summary(alone.records);
  EXPECT_EQ(alone.records[0].Attr("db.system.name"), "mysql");
  EXPECT_EQ(alone.records[0].Attr("db.namespace"), "shop");

  // Not TLS: such a packet starts nothing (the query joins the connection mid-stream, its
  // schema unknown).
  DescribingSink clear;
  Feeder(clear).Run(plaintext);
  ASSERT_EQ(clear.records.size(), 1u) << db_test::Summary(clear.records);
  EXPECT_FALSE(clear.records[0].Has("db.namespace"));
}

// COM_CHANGE_USER (connection pools re-using a connection): its schema is the namespace of what
// follows; a cut one leaves the namespace as it was.
TEST(MySqlProtocolTest, ChangeUserSwitchesTheNamespace) {
  auto cli = LoadRecording("mysql_mariadb_cli")[1];
  db_test::Conversation conv(cli.begin(), cli.begin() + 3);  // greeting, response (schema shop), OK
  const std::string auth(20, 'a');
  const std::string change = std::string("\x11root\0", 6) + static_cast<char>(auth.size()) + auth +
                             std::string("e2e_other\0\x21\0mysql_native_password\0", 34);
  conv.push_back({true, Query("SELECT 1")});
  conv.push_back({false, Packet(1, "\x01") + ColumnDef(2) + Eof(3) + Row(4, "1") + Eof(5)});
  conv.push_back({true, Packet(0, change)});
  conv.push_back({false, Ok(1)});
  conv.push_back({true, Query("SELECT 2")});
  conv.push_back({false, Packet(1, "\x01") + ColumnDef(2) + Eof(3) + Row(4, "2") + Eof(5)});
  conv.push_back({true, Packet(0, "\x11root")});  // cut: no schema read
  conv.push_back({false, Ok(1)});
  conv.push_back({true, Query("SELECT 3")});
  conv.push_back({false, Packet(1, "\x01") + ColumnDef(2) + Eof(3) + Row(4, "3") + Eof(5)});
  auto r = Spans(conv);
  ASSERT_EQ(r.size(), 3u) << db_test::Summary(r);
  EXPECT_EQ(r[0].Attr("db.namespace"), "shop");
  EXPECT_EQ(r[1].Attr("db.namespace"), "e2e_other");
  EXPECT_EQ(r[2].Attr("db.namespace"), "e2e_other");
  for (const auto& s : r) EXPECT_FALSE(s.error) << s.name;
}

TEST(MySqlProtocolTest, CompressionStopsParsing) {
  auto cli = LoadRecording("mysql_mariadb_cli")[1];
  db_test::Conversation conv(cli.begin(), cli.begin() + 3);
  // The same client asking for CLIENT_COMPRESS (the server offers it in this greeting).
  std::string response = conv[1].bytes;
  response[4] = static_cast<char>(response[4] | 0x20);
  conv[1].bytes = response;
  conv.push_back({true, std::string("\x10\x00\x00\x00\x00\x00\x00\x0c\x00\x00\x00\x03SELECT 1", 16)});
  conv.push_back({false, std::string("\x0b\x00\x00\x01\x00\x00\x00\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00", 18)});
  EXPECT_TRUE(Spans(conv).empty());
}

TEST(MySqlProtocolTest, DetectionIsStrict) {
  auto classify = [](std::string_view s) {
    return mysql::Classify({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  };
  auto cli = LoadRecording("mysql_mariadb_cli")[0];
  EXPECT_EQ(classify(cli[0].bytes), mysql::FirstBytes::kGreeting);
  EXPECT_EQ(classify(Query("SELECT 1")), mysql::FirstBytes::kCommand);
  EXPECT_EQ(classify(Packet(0, "\x0e")), mysql::FirstBytes::kCommand);
  EXPECT_EQ(classify(Query("SELECT 1") + "x"), mysql::FirstBytes::kUnknown);
  EXPECT_EQ(classify("GET / HTTP/1.1\r\n\r\n"), mysql::FirstBytes::kUnknown);
  EXPECT_EQ(classify(std::string("Q\0\0\0\x0dSELECT 1\0", 14)), mysql::FirstBytes::kUnknown);
  EXPECT_EQ(classify("*1\r\n$4\r\nPING\r\n"), mysql::FirstBytes::kUnknown);
  std::string tls_response = LoadRecording("mysql_mariadb_cli")[0][1].bytes;
  tls_response[3] = 2;
  EXPECT_EQ(classify(tls_response), mysql::FirstBytes::kUnknown);  // no CLIENT_SSL
  tls_response[5] = static_cast<char>(tls_response[5] | 0x08);
  EXPECT_EQ(classify(tls_response), mysql::FirstBytes::kTlsHandshakeResponse);
  EXPECT_EQ(classify(tls_response.substr(0, 40)), mysql::FirstBytes::kUnknown);  // cut short
}

TEST(MySqlProtocolTest, GarbageIsCountedNeverACrash) {
  std::mt19937 rng(5);
  auto cli = LoadRecording("mysql_mariadb_cli")[0];
  DescribingSink sink;
  Feeder feeder(sink);
  feeder.server_port = 3306;
  for (int round = 0; round < 300; ++round) {
    db_test::Conversation conv(cli.begin(), cli.begin() + 3);
    for (int i = 0; i < 6; ++i) {
      std::string junk(1 + rng() % 200, '\0');
      for (char& ch : junk) ch = static_cast<char>(rng() % 8 == 0 ? 0xfe : rng());
      if (i % 2 == 0) junk = Packet(0, "\x03" + junk);
      conv.push_back({i % 2 == 0, junk});
    }
    feeder.Run(conv);
  }
  // The server's junk reads as packets of the length its first bytes say (a length-prefixed
  // protocol has no invalid header): it swallows the rest, and every command written ends
  // unanswered at close, each one counted.
  EXPECT_EQ(sink.records.size(), 900u);
  EXPECT_EQ(feeder.Counter("threadline_db_operations_total", {{"protocol", "mysql"}, {"outcome", "closed_before_response"}}),
            900u);
}

}  // namespace
}  // namespace threadline
