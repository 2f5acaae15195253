// The WebSocket pieces of the Node inspector client (agent/runtimes/inspector_client.h): client
// frames masked as RFC 6455 says, server frames parsed whole or not at all, malformed ones refused.
// The whole exchange with a real Node runs in tests/e2e/test_parenting.py.
#include "agent/runtimes/inspector_client.h"

#include <gtest/gtest.h>

#include <string>

namespace threadline {
namespace {

using namespace inspector_internal;

std::string ServerFrame(uint8_t first, const std::string& payload) {
  std::string f(1, static_cast<char>(first));
  if (payload.size() < 126) {
    f += static_cast<char>(payload.size());
  } else {
    f += static_cast<char>(126);
    f += static_cast<char>(payload.size() >> 8);
    f += static_cast<char>(payload.size() & 0xff);
  }
  return f + payload;
}

TEST(InspectorClientTest, Base64OfTheRfcExamples) {
  auto b64 = [](const std::string& s) { return Base64(reinterpret_cast<const uint8_t*>(s.data()), s.size()); };
  EXPECT_EQ(b64(""), "");
  EXPECT_EQ(b64("f"), "Zg==");
  EXPECT_EQ(b64("fo"), "Zm8=");
  EXPECT_EQ(b64("foo"), "Zm9v");
  EXPECT_EQ(b64("foobar"), "Zm9vYmFy");
}

TEST(InspectorClientTest, ClientFramesAreMaskedWithTheirLengthForm) {
  const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  // RFC 6455 5.7: a masked "Hello".
  const std::string hello = EncodeFrame(0x1, "Hello", mask);
  EXPECT_EQ(hello, std::string("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11));
  const std::string mid = EncodeFrame(0x1, std::string(300, 'a'), mask);
  ASSERT_EQ(mid.size(), 2u + 2 + 4 + 300);
  EXPECT_EQ(static_cast<uint8_t>(mid[1]), 0x80 | 126);
  EXPECT_EQ((static_cast<uint8_t>(mid[2]) << 8) | static_cast<uint8_t>(mid[3]), 300);
  const std::string big = EncodeFrame(0x1, std::string(70000, 'a'), mask);
  ASSERT_EQ(big.size(), 2u + 8 + 4 + 70000);
  EXPECT_EQ(static_cast<uint8_t>(big[1]), 0x80 | 127);
}

TEST(InspectorClientTest, ServerFramesParseOnlyWhenWhole) {
  uint8_t opcode = 0;
  bool fin = false;
  std::string payload;
  const std::string text = ServerFrame(0x81, R"({"id":1,"result":{}})");
  for (size_t cut = 0; cut < text.size(); ++cut)
    EXPECT_EQ(DecodeFrame(text.substr(0, cut), opcode, fin, payload), 0) << cut;
  EXPECT_EQ(DecodeFrame(text + "next", opcode, fin, payload), static_cast<int64_t>(text.size()));
  EXPECT_EQ(opcode, 0x1);
  EXPECT_TRUE(fin);
  EXPECT_EQ(payload, R"({"id":1,"result":{}})");

  const std::string part = ServerFrame(0x01, std::string(200, 'x'));  // no FIN, 16-bit length
  EXPECT_EQ(DecodeFrame(part, opcode, fin, payload), static_cast<int64_t>(part.size()));
  EXPECT_FALSE(fin);
  EXPECT_EQ(payload.size(), 200u);
}

TEST(InspectorClientTest, MaskedOrHugeServerFramesAreRefused) {
  uint8_t opcode = 0;
  bool fin = false;
  std::string payload;
  EXPECT_EQ(DecodeFrame(std::string("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11), opcode, fin, payload), -1);
  std::string huge("\x81\x7f", 2);
  huge += std::string("\x00\x00\x00\x00\x7f\xff\xff\xff", 8);  // 2 GiB
  EXPECT_EQ(DecodeFrame(huge, opcode, fin, payload), -1);
}

}  // namespace
}  // namespace threadline
