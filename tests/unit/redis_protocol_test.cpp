// Redis on the neutral model, fed recorded conversations of real clients (redis-cli, redis-py
// against redis-server 7) through the dispatcher: commands, pipelines, transactions, errors,
// pub/sub messages and RESP3 pushes never taken for replies, at every split point; then gaps,
// nesting, garbage and detection.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "agent/protocols/redis/describe.h"
#include "agent/protocols/redis/parser.h"
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
  feeder.server_port = 6379;
  feeder.Run(conv, role);
  return sink.records;
}

TEST(RedisProtocolTest, RedisCliCommandsAndErrors) {
  auto convs = LoadRecording("redis_cli");
  ASSERT_EQ(convs.size(), 4u);
  auto set = Spans(convs[0]);
  ASSERT_EQ(set.size(), 1u);
  EXPECT_EQ(set[0].name, "SET");
  EXPECT_EQ(set[0].Attr("db.system.name"), "redis");
  EXPECT_EQ(set[0].Attr("db.operation.name"), "SET");
  EXPECT_EQ(set[0].Attr("db.query.text"), "SET user:1 ?");  // the value never leaves
  EXPECT_EQ(set[0].Attr("db.namespace"), "0");
  EXPECT_EQ(set[0].Attr("server.port"), "6379");
  EXPECT_FALSE(set[0].Has("db.query.summary"));
  auto get = Spans(convs[1]);
  ASSERT_EQ(get.size(), 1u);
  EXPECT_EQ(get[0].Attr("db.query.text"), "GET user:1");
  auto incr = Spans(convs[2]);
  ASSERT_EQ(incr.size(), 1u);
  EXPECT_TRUE(incr[0].error);
  EXPECT_EQ(incr[0].Attr("db.response.status_code"), "ERR");
  EXPECT_EQ(incr[0].Attr("error.type"), "ERR");
  auto resp3 = Spans(convs[3]);
  ASSERT_EQ(resp3.size(), 2u);
  EXPECT_EQ(resp3[0].name, "HELLO");
  EXPECT_EQ(resp3[0].Attr("db.query.text"), "HELLO ?");
  EXPECT_EQ(resp3[1].Attr("db.query.text"), "HSET h ? ? ? ?");
  EXPECT_FALSE(resp3[1].error);
}

TEST(RedisProtocolTest, TransactionIsOneOperation) {
  auto r = Spans(LoadRecording("redis_cli_interactive")[0]);
  ASSERT_EQ(r.size(), 1u) << db_test::Summary(r);
  EXPECT_EQ(r[0].name, "MULTI");  // SET and INCR: no common command
  EXPECT_EQ(r[0].Attr("db.operation.batch.size"), "2");
  EXPECT_EQ(r[0].Attr("db.query.text"), "MULTI; SET k1 ?; INCR counter; EXEC");
  EXPECT_FALSE(r[0].error);
}

TEST(RedisProtocolTest, RedisPyPipelinesTransactionsAndPubSub) {
  auto convs = LoadRecording("redis_py");
  ASSERT_EQ(convs.size(), 2u);
  auto first = Spans(convs[0]);
  ASSERT_EQ(first.size(), 3u) << db_test::Summary(first);
  EXPECT_EQ(first[0].Attr("db.query.text"), "SET views:1 ?");
  EXPECT_EQ(first[1].Attr("db.query.text"), "SELECT ?");
  EXPECT_EQ(first[1].Attr("db.namespace"), "0");
  EXPECT_EQ(first[2].Attr("db.namespace"), "2");  // after SELECT 2 answered +OK

  DescribingSink sink;
  Feeder feeder(sink);
  feeder.Run(convs[1]);
  auto& r = sink.records;
  ASSERT_EQ(r.size(), 4u) << db_test::Summary(r);
  EXPECT_EQ(r[0].name, "PIPELINE");
  EXPECT_EQ(r[0].Attr("db.operation.batch.size"), "4");
  EXPECT_EQ(r[0].Attr("db.query.text"), "GET views:1; INCRBY views:1 ?; HSET user:1 ? ? ? ?; LPUSH user:1 ?");
  EXPECT_TRUE(r[0].error);
  EXPECT_EQ(r[0].Attr("db.response.status_code"), "WRONGTYPE");
  EXPECT_EQ(r[1].name, "MULTI INCRBY");
  EXPECT_EQ(r[1].Attr("db.operation.batch.size"), "2");
  EXPECT_FALSE(r[1].error);
  EXPECT_EQ(r[2].name, "SUBSCRIBE");
  EXPECT_EQ(r[2].Attr("db.query.text"), "SUBSCRIBE news ?");
  EXPECT_EQ(r[3].name, "UNSUBSCRIBE");
  // The two messages were pushes, not replies.
  EXPECT_EQ(feeder.Counter("threadline_db_pushes_total", {{"protocol", "redis"}}), 2u);
  EXPECT_EQ(feeder.Counter("threadline_parse_failures_total", {{"protocol", "redis"}, {"reason", "unexpected_response"}}), 0u);
}

TEST(RedisProtocolTest, Resp3PushesAreNotReplies) {
  DescribingSink sink;
  Feeder feeder(sink);
  feeder.Run(LoadRecording("redis_cli_resp3_pubsub")[0]);
  ASSERT_EQ(sink.records.size(), 2u) << db_test::Summary(sink.records);
  EXPECT_EQ(sink.records[0].name, "HELLO");
  EXPECT_EQ(sink.records[1].name, "SUBSCRIBE");
  EXPECT_EQ(feeder.Counter("threadline_db_pushes_total", {{"protocol", "redis"}}), 2u);
}

TEST(RedisProtocolTest, EverySplitPointGivesTheSameSpans) {
  // A command's first chunk is cut only past what detection needs (its name).
  for (const char* name : {"redis_cli", "redis_cli_interactive", "redis_py", "redis_cli_resp3_pubsub"})
    db_test::ExpectSameSpansAtEverySplit(name, 16);
}

TEST(RedisProtocolTest, ServerSideOnlyWithServerSpans) {
  const auto conv = LoadRecording("redis_cli")[0];
  EXPECT_TRUE(Spans(conv, Role::kServer).empty());
  DescribingSink sink;
  ProtocolOptions on;
  on.db_server_spans = true;
  Feeder(sink, on).Run(conv, Role::kServer);
  ASSERT_EQ(sink.records.size(), 1u);
  EXPECT_EQ(sink.records[0].role, Role::kServer);
}

std::string Cmd(std::initializer_list<std::string> args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

// A reply far larger than what is captured: its bulk string is skipped by length; the gap only
// marks it incomplete. A gap over reply boundaries (a pipeline's replies) loses framing: what
// waited ends as lost, and pairing starts again with the reply to the next command.
TEST(RedisProtocolTest, GapsInsideAndAcrossReplies) {
  DescribingSink sink;
  db_test::LiveConnection conn(sink);
  conn.Client(Cmd({"GET", "blob"}));
  conn.Server("$1000000\r\n" + std::string(4000, 'x'));
  conn.ServerGap(1000000 - 4000 + 2);
  ASSERT_EQ(sink.records.size(), 1u);
  EXPECT_EQ(sink.records[0].Attr("threadline.response.incomplete"), "true");
  // A pipeline of 100 GETs whose replies' middle was never captured.
  std::string pipeline;
  for (int i = 0; i < 100; ++i) pipeline += Cmd({"GET", "k" + std::to_string(i)});
  conn.Client(pipeline);
  std::string replies;
  for (int i = 0; i < 10; ++i) replies += "$3\r\nabc\r\n";
  conn.Server(replies + "$3\r\na");
  conn.ServerGap(2000);
  conn.Server("bc\r\n$3\r\nabc\r\n");  // the tail of the pipeline's replies
  ASSERT_EQ(sink.records.size(), 2u) << db_test::Summary(sink.records);
  EXPECT_EQ(sink.records[1].name, "PIPELINE GET");
  EXPECT_EQ(sink.records[1].Attr("threadline.response.incomplete"), "true");
  // The next command pairs with its own reply.
  conn.Client(Cmd({"PING"}));
  conn.Server("+PONG\r\n");
  ASSERT_EQ(sink.records.size(), 3u);
  EXPECT_EQ(sink.records[2].name, "PING");
  EXPECT_FALSE(sink.records[2].error);
}

TEST(RedisProtocolTest, NestedAndHugeAggregatesAreCountedNotKept) {
  db_test::Conversation conv;
  conv.push_back({true, Cmd({"COMMAND", "DOCS"})});
  std::string reply = "*1000\r\n";
  for (int i = 0; i < 1000; ++i) reply += "*2\r\n%1\r\n$4\r\nname\r\n~2\r\n:1\r\n,1.5\r\n";
  conv.push_back({false, reply});
  conv.push_back({true, Cmd({"EXEC"})});
  conv.push_back({false, "*3\r\n+OK\r\n-ERR boom\r\n|1\r\n+key\r\n+val\r\n:3\r\n"});
  auto r = Spans(conv);
  ASSERT_EQ(r.size(), 2u) << db_test::Summary(r);
  EXPECT_EQ(r[0].Attr("db.query.text"), "COMMAND DOCS");
  EXPECT_FALSE(r[0].error);
  EXPECT_TRUE(r[1].error);  // an error among EXEC's results
  EXPECT_EQ(r[1].Attr("db.response.status_code"), "ERR");
}

TEST(RedisProtocolTest, SanitizedText) {
  redis::Command c;
  c.name = "AUTH";
  c.argc = 2;
  c.args = {"admin", "hunter2"};
  EXPECT_EQ(redis::SanitizedCommand(c), "AUTH ? ?");
  c.name = "CONFIG";
  c.args = {"SET", "requirepass"};
  c.argc = 3;
  EXPECT_EQ(redis::SanitizedCommand(c), "CONFIG SET ? ?");
  c.name = "MSET";
  c.args = {"a", "1"};
  c.argc = 40;
  EXPECT_EQ(redis::SanitizedCommand(c), "MSET a ? ? ? ? ? ? ? ? ...");
  c.name = "GET";
  c.args = {std::string("bad\x01key", 7), ""};
  c.argc = 1;
  EXPECT_EQ(redis::SanitizedCommand(c), "GET ?");
}

TEST(RedisProtocolTest, MonitorAndReplicationStopParsing) {
  db_test::Conversation conv;
  conv.push_back({true, Cmd({"MONITOR"})});
  conv.push_back({false, "+OK\r\n+1700000000.1 [0 127.0.0.1:1] \"GET\" \"x\"\r\n"});
  DescribingSink sink;
  Feeder feeder(sink);
  feeder.Run(conv);
  ASSERT_EQ(sink.records.size(), 1u);
  EXPECT_EQ(sink.records[0].name, "MONITOR");
  EXPECT_EQ(feeder.metrics().CounterTotal("threadline_parse_failures_total"), 0u);
}

TEST(RedisProtocolTest, DetectionNeedsACommand) {
  auto looks = [](std::string_view s) {
    return redis::LooksLikeCommand({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  };
  EXPECT_TRUE(looks(Cmd({"PING"})));
  EXPECT_TRUE(looks("*3\r\n$3\r\nSET\r\n$1"));
  EXPECT_TRUE(looks("*1\r\n$11\r\nUNSUB"));
  EXPECT_FALSE(looks("+OK\r\n"));
  EXPECT_FALSE(looks("GET / HTTP/1.1\r\n\r\n"));
  EXPECT_FALSE(looks("*3\r\n$3\r\n\x01\x02\x03\r\n"));
  EXPECT_FALSE(looks("*0\r\n"));
  EXPECT_FALSE(looks("*1\r\n:1\r\n"));
  EXPECT_FALSE(looks(std::string("\0\0\0\x08\x04\xd2\x16\x2f", 8)));
}

TEST(RedisProtocolTest, GarbageIsCountedNeverACrash) {
  std::mt19937 rng(11);
  DescribingSink sink;
  Feeder feeder(sink);
  for (int round = 0; round < 300; ++round) {
    db_test::Conversation conv;
    conv.push_back({true, Cmd({"GET", "k"})});
    for (int i = 0; i < 6; ++i) {
      std::string junk(1 + rng() % 200, '\0');
      for (char& ch : junk) ch = "*$+-:\r\n0123456789abc>%|~_,#!=("[rng() % 30];
      conv.push_back({i % 2 == 1, junk});
    }
    feeder.Run(conv);
  }
  EXPECT_GT(feeder.ParseFailures("redis"), 0u);
}

}  // namespace
}  // namespace threadline
