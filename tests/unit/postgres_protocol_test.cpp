// PostgreSQL on the neutral model, fed recorded conversations of real clients (psql, pgbench,
// psycopg2 against PostgreSQL 15) through the dispatcher: the spans they become, at every split
// point of every chunk; then gaps, garbage, TLS and the server's side.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "agent/protocols/postgres/parser.h"
#include "tests/unit/db_test_util.h"

namespace threadline {
namespace {

using db_test::Described;
using db_test::DescribingSink;
using db_test::Feeder;
using db_test::LoadRecording;

std::vector<Described> Spans(const db_test::Conversation& conv, Role role = Role::kClient,
                           ProtocolOptions options = {}) {
  DescribingSink sink;
  Feeder feeder(sink, options);
  feeder.Run(conv, role);
  return sink.records;
}

TEST(PostgresProtocolTest, PsqlCopyAndMultiStatementQuery) {
  auto convs = LoadRecording("postgres_psql");
  ASSERT_EQ(convs.size(), 1u);
  auto r = Spans(convs[0]);
  ASSERT_EQ(r.size(), 3u) << db_test::Summary(r);
  EXPECT_EQ(r[0].name, "COPY orders");
  EXPECT_EQ(r[0].Attr("db.system.name"), "postgresql");
  EXPECT_EQ(r[0].Attr("db.namespace"), "postgres");
  EXPECT_EQ(r[0].Attr("db.operation.name"), "COPY");
  EXPECT_EQ(r[0].Attr("db.collection.name"), "orders");
  EXPECT_EQ(r[0].Attr("db.query.text"), "COPY orders FROM STDIN");
  EXPECT_EQ(r[0].Attr("server.address"), "127.0.0.2");
  EXPECT_EQ(r[0].Attr("server.port"), "5432");
  EXPECT_FALSE(r[0].error);
  EXPECT_EQ(r[1].name, "COPY orders");
  EXPECT_EQ(r[1].Attr("db.query.text"), "COPY orders TO STDOUT");
  EXPECT_EQ(r[2].name, "BEGIN DELETE orders COMMIT");
  EXPECT_EQ(r[2].Attr("db.query.summary"), "BEGIN DELETE orders COMMIT");
  EXPECT_FALSE(r[2].Has("db.operation.name"));  // three statements: no single operation
  EXPECT_EQ(r[2].Attr("db.query.text"), "BEGIN; DELETE FROM orders WHERE id > ?; COMMIT;");
  for (const Described& d : r) EXPECT_LT(d.start_ts, d.end_ts);
}

TEST(PostgresProtocolTest, ErrorResponseMakesAnErrorSpanWithSqlstate) {
  auto r = Spans(LoadRecording("postgres_psql_error")[0]);
  ASSERT_EQ(r.size(), 2u) << db_test::Summary(r);
  EXPECT_EQ(r[0].name, "SELECT orders");
  EXPECT_EQ(r[0].Attr("db.query.text"), "SELECT id, total FROM orders WHERE id = ?");
  EXPECT_FALSE(r[0].error);
  EXPECT_FALSE(r[0].Has("db.response.status_code"));
  EXPECT_EQ(r[1].name, "SELECT nope");
  EXPECT_TRUE(r[1].error);
  EXPECT_EQ(r[1].Attr("db.response.status_code"), "42P01");
  EXPECT_EQ(r[1].Attr("error.type"), "42P01");
}

TEST(PostgresProtocolTest, PreparedStatementsTakeTheirTextFromParse) {
  auto r = Spans(LoadRecording("postgres_pgbench_prepared")[0]);
  // Two prepares (Parse + Sync), then each statement executed twice by name.
  ASSERT_EQ(r.size(), 6u) << db_test::Summary(r);
  EXPECT_EQ(r[0].name, "PREPARE SELECT orders");
  EXPECT_EQ(r[0].Attr("db.operation.name"), "PREPARE");
  EXPECT_EQ(r[1].name, "SELECT orders");
  EXPECT_EQ(r[1].Attr("db.query.text"), "SELECT id, total FROM orders WHERE id = ?;");
  EXPECT_EQ(r[1].Attr("db.collection.name"), "orders");
  EXPECT_EQ(r[2].name, "PREPARE UPDATE orders");
  EXPECT_EQ(r[3].name, "UPDATE orders");
  EXPECT_EQ(r[4].name, "SELECT orders");
  EXPECT_EQ(r[5].name, "UPDATE orders");
  EXPECT_EQ(r[5].Attr("db.query.text"), "UPDATE orders SET total = total + ? WHERE id = ?;");
  for (const Described& d : r) EXPECT_FALSE(d.error);
}

TEST(PostgresProtocolTest, PipelineWithErrorSkipsTheRestOfItsSync) {
  DescribingSink sink;
  Feeder feeder(sink);
  feeder.Run(LoadRecording("postgres_pgbench_pipeline")[0]);
  auto& r = sink.records;
  ASSERT_EQ(r.size(), 3u) << db_test::Summary(r);
  EXPECT_EQ(r[0].name, "SELECT");
  EXPECT_EQ(r[0].Attr("db.query.text"), "SELECT ?;");
  EXPECT_EQ(r[1].name, "SELECT orders");
  EXPECT_EQ(r[2].name, "SELECT nope");
  EXPECT_TRUE(r[2].error);
  EXPECT_EQ(r[2].Attr("db.response.status_code"), "42P01");
  // All four went out in one write: the pipelined requests start at different positions.
  EXPECT_LT(r[0].request_first_pos, r[1].request_first_pos);
  EXPECT_LT(r[1].request_first_pos, r[2].request_first_pos);
  EXPECT_EQ(feeder.Counter("threadline_db_operations_not_executed_total", {{"protocol", "postgres"}}), 1u);
}

TEST(PostgresProtocolTest, TransactionStatementsAndCancelRequest) {
  auto convs = LoadRecording("postgres_psycopg2_cancel");
  ASSERT_EQ(convs.size(), 2u);
  auto r = Spans(convs[0]);
  ASSERT_EQ(r.size(), 6u) << db_test::Summary(r);
  EXPECT_EQ(r[0].name, "BEGIN");
  EXPECT_EQ(r[1].name, "SELECT orders");
  EXPECT_EQ(r[2].name, "COMMIT");
  EXPECT_EQ(r[4].name, "SELECT");
  EXPECT_TRUE(r[4].error);
  EXPECT_EQ(r[4].Attr("db.response.status_code"), "57014");  // canceled
  EXPECT_EQ(r[5].name, "ROLLBACK");
  auto cancel = Spans(convs[1]);
  ASSERT_EQ(cancel.size(), 1u);
  EXPECT_EQ(cancel[0].name, "CANCEL");
  EXPECT_FALSE(cancel[0].error);
  EXPECT_FALSE(cancel[0].Has("db.query.text"));
}

TEST(PostgresProtocolTest, EverySplitPointGivesTheSameSpans) {
  // The first chunk is cut only past the startup packet's 8 bytes.
  for (const char* name : {"postgres_psql", "postgres_psql_error", "postgres_pgbench_prepared",
                           "postgres_pgbench_pipeline", "postgres_psycopg2_cancel"})
    db_test::ExpectSameSpansAtEverySplit(name, 8);
}

TEST(PostgresProtocolTest, RoleUnknownIsLearnedFromTheStartupPacket) {
  auto r = Spans(LoadRecording("postgres_psql_error")[0], Role::kUnknown);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].role, Role::kClient);
}

TEST(PostgresProtocolTest, ServerSideOnlyWithServerSpans) {
  const auto conv = LoadRecording("postgres_psql_error")[0];
  DescribingSink sink;
  Feeder feeder(sink);
  feeder.Run(conv, Role::kServer);
  EXPECT_TRUE(sink.records.empty());
  EXPECT_EQ(feeder.Counter("threadline_db_server_connections_skipped_total", {{"protocol", "postgres"}}), 1u);
  EXPECT_EQ(feeder.Counter("threadline_protocol_connections_total", {{"protocol", "postgres"}}), 1u);

  ProtocolOptions on;
  on.db_server_spans = true;
  auto r = Spans(conv, Role::kServer, on);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].role, Role::kServer);
  EXPECT_EQ(r[1].Attr("server.port"), "5432");
  EXPECT_EQ(r[1].Attr("client.port"), "40000");
  EXPECT_TRUE(r[1].error);
}

TEST(PostgresProtocolTest, QueryTextSwitchedOff) {
  DescribingSink sink;
  sink.options.db.query_text = false;
  Feeder(sink).Run(LoadRecording("postgres_psql_error")[0]);
  ASSERT_EQ(sink.records.size(), 2u);
  EXPECT_FALSE(sink.records[0].Has("db.query.text"));
  EXPECT_EQ(sink.records[0].name, "SELECT orders");  // the summary has no values: still there
}

// A query whose result is much larger than what is captured: the rows are skipped by length,
// a gap inside them only marks the response incomplete, and the next query pairs as usual.
TEST(PostgresProtocolTest, HugeResultWithGapsIsSkippedNotBuffered) {
  auto base = LoadRecording("postgres_psql_error")[0];
  db_test::Conversation conv(base.begin(), base.begin() + 2);  // startup and its answer
  auto msg = [](char type, const std::string& body) {
    std::string m(1, type);
    const uint32_t len = static_cast<uint32_t>(body.size() + 4);
    m += static_cast<char>(len >> 24);
    m += static_cast<char>(len >> 16);
    m += static_cast<char>(len >> 8);
    m += static_cast<char>(len);
    return m + body;
  };
  conv.push_back({true, msg('Q', std::string("SELECT * FROM big", 17) + '\0')});
  std::string rows = msg('T', std::string("\0\1x\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\0\0", 22));
  for (int i = 0; i < 2000; ++i) rows += msg('D', std::string("\0\1\0\0\0\x0a", 6) + "0123456789");
  rows += msg('C', std::string("SELECT 2000", 11) + '\0') + msg('Z', "I");
  conv.push_back({false, rows});
  conv.push_back({true, msg('Q', std::string("SELECT 1", 8) + '\0')});
  conv.push_back({false, msg('C', std::string("SELECT 1", 8) + '\0') + msg('Z', "I")});

  DescribingSink sink;
  Feeder feeder(sink);
  feeder.Run(conv);
  ASSERT_EQ(sink.records.size(), 2u) << db_test::Summary(sink.records);
  EXPECT_EQ(sink.records[0].name, "SELECT big");
  EXPECT_EQ(sink.records[1].name, "SELECT");
}

TEST(PostgresProtocolTest, GapOverMessageBoundariesResynchronises) {
  // The same conversation as the previous test, but most of the rows never captured: the gap
  // swallows message headers, the reader resynchronises on CommandComplete + ReadyForQuery.
  DescribingSink sink;
  db_test::LiveConnection conn(sink);
  auto conv = LoadRecording("postgres_psql_error")[0];
  conn.Client(conv[0].bytes);
  conn.Server(conv[1].bytes);
  conn.Client(std::string("Q\0\0\0\x16SELECT * FROM big\0", 23));
  std::string rows = std::string("D\0\0\0\x10\0\1\0\0\0\x06", 11) + "abcdef";
  std::string head;
  for (int i = 0; i < 10; ++i) head += rows;
  conn.Server(head);
  conn.ServerGap(100000 + 7);
  // The captured prefix of the next read starts inside a row.
  conn.Server(std::string("xyz") + rows + std::string("C\0\0\0\x12SELECT 123456\0Z\0\0\0\x05I", 25));
  conn.Client(std::string("Q\0\0\0\x0dSELECT 2\0", 14));
  conn.Server(std::string("C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I", 20));
  ASSERT_EQ(sink.records.size(), 2u) << db_test::Summary(sink.records);
  EXPECT_EQ(sink.records[0].name, "SELECT big");
  EXPECT_EQ(sink.records[0].Attr("threadline.response.incomplete"), "true");
  EXPECT_EQ(sink.records[1].name, "SELECT");
  EXPECT_EQ(sink.records[1].Attr("db.query.text"), "SELECT ?");
  EXPECT_GE(conn.metrics().GetCounter("threadline_parse_failures_total", {{"protocol", "postgres"}, {"reason", "framing_lost"}}).Value(), 1u);
}

// The usual shape of a large result under a 4 KiB capture: every read's tail is a gap, the last
// one swallowing CommandComplete and ReadyForQuery. The next query (written after the client read
// ReadyForQuery) ends the first and pairs with its own answer, whatever the reader resynchronised
// on meanwhile.
TEST(PostgresProtocolTest, GapSwallowingTheEndRealignsAtTheNextQuery) {
  DescribingSink sink;
  db_test::LiveConnection conn(sink);
  auto conv = LoadRecording("postgres_psql_error")[0];
  conn.Client(conv[0].bytes);
  conn.Server(conv[1].bytes);
  conn.Client(std::string("Q\0\0\0\x16SELECT * FROM big\0", 23));
  const std::string row = std::string("D\0\0\0\x10\0\1\0\0\0\x06", 11) + "abcdef";
  std::string rows;
  for (int i = 0; i < 10; ++i) rows += row;
  for (int read = 0; read < 3; ++read) {
    conn.Server(rows + "D\0\0");  // the captured prefix of a read ends inside a row...
    conn.ServerGap(5000 + read);               // ...the rest of the read (rows, and at last C and Z) is a gap
  }
  // The last read: the reader resynchronised on rows, and its captured prefix ends in the header
  // of a long row whose end the gap (with C and Z) does not reach.
  conn.Server(rows + std::string("D\0\x01\0\0", 5));
  conn.ServerGap(100);
  conn.Client(std::string("Q\0\0\0\x0dSELECT 2\0", 14));
  conn.Server(std::string("T\0\0\0\x06\0\0", 7) + std::string("C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I", 20));
  ASSERT_EQ(sink.records.size(), 2u) << db_test::Summary(sink.records);
  EXPECT_EQ(sink.records[0].name, "SELECT big");
  EXPECT_EQ(sink.records[0].Attr("threadline.response.incomplete"), "true");
  EXPECT_FALSE(sink.records[0].error);
  EXPECT_EQ(sink.records[1].name, "SELECT");
  EXPECT_FALSE(sink.records[1].error);
  EXPECT_FALSE(sink.records[1].Has("threadline.response.incomplete"));
  EXPECT_EQ(conn.metrics().GetCounter("threadline_db_operations_total", {{"protocol", "postgres"}, {"outcome", "closed_before_response"}}).Value(), 0u);
}

TEST(PostgresProtocolTest, SslAcceptedStopsParsingTheCiphertext) {
  db_test::Conversation conv;
  conv.push_back({true, std::string("\0\0\0\x08\x04\xd2\x16\x2f", 8)});
  conv.push_back({false, "S"});
  conv.push_back({true, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11)});  // ClientHello
  conv.push_back({false, std::string("\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03", 11)});
  DescribingSink sink;
  Feeder feeder(sink);
  feeder.Run(conv);
  EXPECT_TRUE(sink.records.empty());
  EXPECT_EQ(feeder.metrics().CounterTotal("threadline_parse_failures_total"), 0u);
}

TEST(PostgresProtocolTest, DetectionIsStrict) {
  auto classify = [](std::string_view s) {
    return postgres::Classify({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  };
  auto pg = LoadRecording("postgres_psql_error")[0];
  EXPECT_EQ(classify(pg[0].bytes), postgres::FirstBytes::kStartup);
  EXPECT_EQ(classify(pg[2].bytes), postgres::FirstBytes::kFrontend);  // a Query: joined mid-stream
  EXPECT_EQ(classify(pg[3].bytes), postgres::FirstBytes::kBackend);
  EXPECT_EQ(classify("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), postgres::FirstBytes::kUnknown);
  EXPECT_EQ(classify("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), postgres::FirstBytes::kUnknown);
  EXPECT_EQ(classify("*1\r\n$4\r\nPING\r\n"), postgres::FirstBytes::kUnknown);
  EXPECT_EQ(classify(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11)), postgres::FirstBytes::kUnknown);
  EXPECT_EQ(classify(std::string("\x21\0\0\0\x03SELECT 1", 13)), postgres::FirstBytes::kUnknown);  // MySQL
}

TEST(PostgresProtocolTest, GarbageIsCountedNeverACrash) {
  std::mt19937 rng(7);
  auto pg = LoadRecording("postgres_psql")[0];
  DescribingSink sink;
  Feeder feeder(sink);
  for (int round = 0; round < 200; ++round) {
    db_test::Conversation conv(pg.begin(), pg.begin() + 2);
    for (int i = 0; i < 6; ++i) {
      std::string junk(1 + rng() % 300, '\0');
      for (char& ch : junk) ch = static_cast<char>(rng());
      if (i % 2 == 0 && !junk.empty()) junk[0] = "QPBESDCdc"[rng() % 9];
      conv.push_back({i % 2 == 0, junk});
    }
    feeder.Run(conv);
  }
  EXPECT_GT(feeder.ParseFailures("postgres"), 0u);
}

// A typed message: type, 4-byte big-endian length (itself included), body.
std::string Message(char type, const std::string& body) {
  const uint32_t len = static_cast<uint32_t>(body.size() + 4);
  std::string m(1, type);
  for (int shift = 24; shift >= 0; shift -= 8) m += static_cast<char>((len >> shift) & 0xff);
  return m + body;
}

// 1000 named statements prepared on one connection: the table keeps the latest
// max_statements (128); an Execute of one forgotten has no text, of one kept has its own.
TEST(PostgresProtocolTest, StatementTableIsBounded) {
  auto pg = LoadRecording("postgres_psql_error")[0];
  db_test::Conversation conv(pg.begin(), pg.begin() + 2);
  std::string many;
  for (int i = 0; i < 1000; ++i)
    many += Message('P', "s" + std::to_string(i) + '\0' + "SELECT " + std::to_string(i) + " FROM t" + '\0' +
                             std::string("\0\0", 2));
  many += Message('S', "");
  conv.push_back({true, many});
  std::string answers;
  for (int i = 0; i < 1000; ++i) answers += Message('1', "");
  answers += Message('Z', "I");
  conv.push_back({false, answers});
  for (const char* statement : {"s0", "s999"}) {
    const std::string no_formats_or_params(6, '\0');
    conv.push_back({true, Message('B', std::string(1, '\0') + statement + '\0' + no_formats_or_params) +
                              Message('E', std::string(5, '\0')) + Message('S', "")});
    conv.push_back({false, Message('2', "") + Message('C', std::string("SELECT 1") + '\0') + Message('Z', "I")});
  }
  DescribingSink sink;
  Feeder(sink).Run(conv);
  // One prepare batch (Parses and no Execute before the Sync), then the two Executes.
  ASSERT_EQ(sink.records.size(), 3u) << db_test::Summary(sink.records);
  EXPECT_EQ(sink.records[0].Attr("db.operation.name"), "PREPARE");
  EXPECT_EQ(sink.records[1].Attr("db.operation.name"), "EXECUTE");  // s0 was forgotten
  EXPECT_FALSE(sink.records[1].Has("db.query.text"));
  EXPECT_EQ(sink.records[2].Attr("db.query.text"), "SELECT ? FROM t");  // s999 is remembered
}

}  // namespace
}  // namespace threadline
